"""Adopting an application's own pgvector table in place: reads match the application's direct SQL, the new
model's vectors land in a side table, and direct writes during the backfill all converge.

Needs PostgreSQL with pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh) and Redis at REDIS_URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.pgvector.adopted_index import AdoptedTableIndex
from proxy.adapters.pgvector.side_index import SideVectorIndex
from proxy.app.assembly import App
from proxy.core.errors import FailedPrecondition
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.service import QueryInput
from tests.adopt_support import App as Application
from tests.contract.conftest import PGVECTOR_DSN
from tests.migration_support import drain, in_process_app, migration_config

ROWS = 400


@pytest.fixture
def application() -> Iterator[Application]:
    app = Application(HashingEmbedder("hash-a", 32, 1))
    app.insert(range(1, ROWS + 1))
    yield app
    app.drop()


@pytest.fixture
def sidecar(tmp_path: Path, application: Application) -> Iterator[App]:
    application.adopt()
    started = in_process_app(_config(tmp_path, application))
    yield started
    started.close()


def _config(tmp_path: Path, application: Application) -> dict[str, Any]:
    config = migration_config(tmp_path / "data")
    config["indexes"] = {
        "idx-a": _adopted("hash-a", application.adopt_section("embedding")),
        "idx-b": _adopted("hash-b", application.adopt_section(None)),
    }
    return config


def _adopted(model: str, adopt: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "backend": "pgvector", "pgvector": {"dsn": PGVECTOR_DSN, "adopt": adopt}}


def _side_rows(application: Application) -> dict[str, tuple[int, bool]]:
    side = sql.Identifier(f"switchyard_{application.table}_idx_b")
    rows = application.conn.execute(sql.SQL("SELECT id::text, version, deleted FROM {}").format(side))
    return {r[0]: (int(r[1]), bool(r[2])) for r in rows}


def test_reads_of_an_adopted_table_match_the_applications_direct_queries(
    sidecar: App, application: Application
) -> None:
    old = sidecar.bindings["idx-a"].index
    assert isinstance(old, AdoptedTableIndex)
    for n, text in enumerate(["item 7 rev 0", "topic 3", "body of 250", "something else"]):
        vector = application.embedder.embed_query([text])[0]
        category = "news" if n % 2 else None
        direct = application.nearest(vector, 10, category)
        hits = old.search(vector, 10, {"category": category} if category else None)
        assert [h.id for h in hits] == direct
        outcome = sidecar.service.query(
            QueryInput(
                k=10, text=text, where={"category": category} if category else {}, override=RoutingMode.OLD
            )
        )
        assert [h.id for h in outcome.hits] == direct
    [doc] = old.get(["42"])
    assert (doc.text, doc.metadata, doc.version) == (
        "item 42 rev 0\nbody of 42 about topic 8 r0",
        {"category": "news"},
        1,
    )
    assert old.get(["not-a-number", "99999"]) == [] and old.count() == ROWS


def test_writes_through_the_proxy_are_refused_and_change_nothing(
    sidecar: App, application: Application
) -> None:
    with pytest.raises(FailedPrecondition, match="writes it directly"):
        sidecar.service.upsert([DocumentInput("5", "new text", {})])
    assert application.conn.execute(
        sql.SQL("SELECT title FROM {} WHERE item_id = 5").format(application.ident)
    ).fetchone() == ("item 5 rev 0",)


def test_direct_writes_during_the_backfill_all_converge_before_cut_over(
    sidecar: App, application: Application
) -> None:
    controller = sidecar.controller
    assert controller is not None
    new = sidecar.bindings["idx-b"].index
    assert isinstance(new, SideVectorIndex)
    controller.start()
    stop = threading.Event()
    deleted: set[int] = set()
    writer_conn = application.writer()

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 600:
            n += 1
            item = 1 + (n * 37) % ROWS
            if n % 9 == 0 and item not in deleted:
                writer_conn.delete(item)
                deleted.add(item)
            elif n % 5 == 0:
                writer_conn.insert([ROWS + n])
            elif item not in deleted:
                writer_conn.update_text(item, n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(40):
            controller.run_once()
    finally:
        thread.join()
        writer_conn.conn.close()
    drain(sidecar)
    while controller.run_once():
        pass
    assert controller.backfiller.pending_changes() == 0
    assert new.rows_behind() == 0
    # Every row has a vector at its current version; every deleted row is a tombstone, never served again.
    side = _side_rows(application)
    live = {
        str(r[0])
        for r in application.conn.execute(sql.SQL("SELECT item_id FROM {}").format(application.ident))
    }
    assert {i for i, (_, gone) in side.items() if not gone} == live
    assert all(side[str(d)][1] for d in deleted)
    old = sidecar.bindings["idx-a"].index
    current = old.versions(sorted(live))
    assert all(side[i][0] == current[i] for i in live)
    # The rows' texts were embedded as they are now: a query for an edited text finds that row first.
    doc = old.get([sorted(live)[3]])[0]
    hit = new.search(sidecar.bindings["idx-b"].embedder.embed_query([doc.text])[0], 1)[0]
    assert hit.id == doc.id and hit.text == ""
    assert controller.transition("validated").phase.value == "validated"


def test_a_row_written_directly_after_the_backfill_blocks_cut_over_until_followed(
    sidecar: App, application: Application
) -> None:
    controller = sidecar.controller
    assert controller is not None
    controller.start()
    drain(sidecar)
    application.update_text(10, 99)
    application.insert([ROWS + 1])
    new = sidecar.bindings["idx-b"].index
    assert isinstance(new, SideVectorIndex)
    assert new.rows_behind() == 2
    assert controller.status().backfill.direct_writes_pending == 2
    with pytest.raises(FailedPrecondition, match="2 rows"):
        controller.transition("cut_over")
    while controller.run_once():
        pass
    assert new.rows_behind() == 0
    hit = new.search(sidecar.bindings["idx-b"].embedder.embed_query(["item 10 rev 99"])[0], 1)[0]
    assert hit.id == "10"


def test_the_whole_road_cut_over_retire_and_the_application_keeps_writing(
    tmp_path: Path, application: Application
) -> None:
    application.adopt()
    config = _config(tmp_path, application)
    sidecar = in_process_app(config)
    try:
        _cut_over_and_retire(sidecar, application)
    finally:
        sidecar.close()
    # A restart opens the old leg without its column: its rows still feed the new model.
    again = in_process_app(config)
    try:
        assert again.service.query(QueryInput(k=1, text="late arrival\nx")).hits[0].id == "9001"
    finally:
        again.close()


def _cut_over_and_retire(sidecar: App, application: Application) -> None:
    controller = sidecar.controller
    assert controller is not None
    controller.start()
    drain(sidecar)
    report = controller.promoter.validate()
    assert report.passed, report
    controller.transition("cut_over")
    outcome = sidecar.service.query(QueryInput(k=3, text="item 77 rev 0\nbody of 77 about topic 9 r0"))
    assert outcome.hits[0].id == "77" and outcome.hits[0].index == "idx-b"
    before = application.conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'"
        " AND NOT attisdropped",
        (application.table,),
    ).fetchone()
    assert before == (1,)
    controller.transition("old_retired")
    controller.run_once()
    columns = {
        r[0]
        for r in application.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (application.table,),
        )
    }
    assert "embedding" not in columns and {"item_id", "title", "body", "category"} <= columns
    assert application.conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(application.ident)
    ).fetchone() == (ROWS,)
    # The application goes on writing rows (now without the old vectors); the worker embeds them.
    application.conn.execute(
        sql.SQL(
            "INSERT INTO {} (item_id, title, body, category) VALUES (9001, 'late arrival', 'x', 'news')"
        ).format(application.ident)
    )
    while controller.run_once():
        pass
    hits = sidecar.service.query(QueryInput(k=1, text="late arrival\nx")).hits
    assert hits[0].id == "9001"
