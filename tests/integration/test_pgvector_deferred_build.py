"""A migration into a pgvector table whose HNSW index is built at the end (`build_index: deferred`).

Needs PostgreSQL with pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh) and Redis at REDIS_URL. A build is
held at a known point, not raced: CREATE INDEX CONCURRENTLY waits for every transaction that holds a write lock
on the table, so a test that keeps one open (`_writer_lock`) finds the build waiting, its INVALID index already
in the catalog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from proxy.adapters.pgvector import PgVectorIndex
from proxy.adapters.pgvector.deferred import hnsw_state, search_index_state
from proxy.adapters.pgvector.schema import IndexTable
from proxy.app.assembly import App
from proxy.cli.progress import status_report
from proxy.core.errors import FailedPrecondition
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.service import QueryInput
from proxy.transport.admin_service import status_to_pb
from tests.contract.conftest import PGVECTOR_DSN
from tests.migration_support import drain, in_process_app, load_corpus, migration_config

CORPUS = 1_500
BUILT_WITHIN = 60


def _config(data_dir: Path, table: str, build_index: str) -> dict[str, Any]:
    config = migration_config(data_dir, batch_size=100, slice_size=500)
    config["indexes"]["idx-b"] = {
        "model": "hash-b",
        "backend": "pgvector",
        "pgvector": {"dsn": PGVECTOR_DSN, "table": table, "build_index": build_index},
    }
    return config


def _state(table: str) -> str:
    with psycopg.connect(PGVECTOR_DSN) as conn:
        return hnsw_state(conn, IndexTable(index="idx-b", name=table, dim=32, space="cosine"))


def _rows(table: str) -> list[tuple[Any, ...]]:
    """Every row, tombstones included, with its vector as text: what two backfills must agree on."""
    with psycopg.connect(PGVECTOR_DSN) as conn:
        query = sql.SQL(
            "SELECT id, version, deleted, text, metadata, embedding::text FROM {} ORDER BY id"
        ).format(sql.Identifier(table))
        return list(conn.execute(query))


def _build(app: App) -> None:
    """Runs the worker until the deferred index is built (the build runs on a thread of its own)."""
    assert app.controller is not None
    for _ in range(BUILT_WITHIN):
        app.controller.run_once()
        app.controller.index_build.join(1.0)
        if app.controller.index_build.pending() is None:
            return
    raise AssertionError(f"not built: {app.controller.index_build.describe()}")


@contextmanager
def _writer_lock(table: str) -> Iterator[None]:
    """An open transaction holding a write lock on the table: a CONCURRENTLY build waits for it to end."""
    with psycopg.connect(PGVECTOR_DSN) as conn:
        conn.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(sql.Identifier(table)))
        yield
        conn.rollback()


def _run_migration(app: App) -> list[DocumentInput]:
    """A backfill with client writes between its batches: updates of ids it has and has not reached yet, a new
    id, and deletes; the same sequence in every app it runs in, so the versions match too."""
    assert app.controller is not None
    docs = load_corpus(app, CORPUS)
    app.controller.start()
    for step in range(6):
        app.controller.run_once()
        touched = [docs[(step * 97 + n * 13) % CORPUS] for n in range(5)]
        app.service.upsert([DocumentInput(d.id, f"{d.text} edit {step}", d.metadata) for d in touched])
        app.service.upsert([DocumentInput(f"new-{step}", f"written during the backfill {step}", {})])
        app.service.delete([docs[(step * 211 + 5) % CORPUS].id, f"new-{max(0, step - 1)}"])
    drain(app)
    return docs


def test_deferred_backfill_leaves_the_same_rows_and_versions_as_the_live_one(
    tmp_path: Path, tables: Callable[[], str], start_app: Callable[[dict[str, Any]], App]
) -> None:
    live_table, deferred_table = tables(), tables()
    live = start_app(_config(tmp_path / "live", live_table, "live"))
    deferred = start_app(_config(tmp_path / "deferred", deferred_table, "deferred"))
    assert _state(deferred_table) == "absent" and _state(live_table) == "valid"
    for app in (live, deferred):
        _run_migration(app)
    _build(deferred)
    assert _rows(deferred_table) == _rows(live_table)
    assert len(_rows(deferred_table)) > CORPUS  # tombstones and ids written during the backfill are there
    assert _state(deferred_table) == "valid"
    assert deferred.controller is not None
    assert deferred.controller.status().search_index == "built"


def test_searches_scan_the_table_until_the_build_then_use_the_hnsw_index(
    tmp_path: Path, tables: Callable[[], str], start_app: Callable[[dict[str, Any]], App]
) -> None:
    table = tables()
    app = start_app(_config(tmp_path / "data", table, "deferred"))
    assert app.controller is not None
    load_corpus(app, CORPUS)
    app.controller.start()
    for _ in range(4):
        app.controller.run_once()
    assert not app.controller.backfiller.complete()
    assert app.controller.status().search_index == "not built (searches scan the table)"
    # Mid-backfill, without the graph: a search of the new leg answers exactly, from a scan of the table.
    moved = app.bindings["idx-b"].index.scan(None, 50)[-1]
    outcome = app.service.query(QueryInput(k=5, text=moved.text, override=RoutingMode.NEW))
    assert outcome.hits[0].id == moved.id and outcome.hits[0].index == "idx-b"
    assert "embedding_hnsw" not in _explain(table)
    drain(app)
    _build(app)
    assert "embedding_hnsw" in _explain(table)
    outcome = app.service.query(QueryInput(k=5, text=moved.text, override=RoutingMode.NEW))
    assert outcome.hits[0].id == moved.id


def _explain(table: str) -> str:
    # Autocommit: a transaction left open would hold a snapshot that a CONCURRENTLY build waits for.
    with psycopg.connect(PGVECTOR_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        literal = "[" + ",".join(["0.1"] * 32) + "]"
        query = sql.SQL("EXPLAIN SELECT id FROM {} ORDER BY embedding <=> %s::vector LIMIT 10").format(
            sql.Identifier(table)
        )
        return "\n".join(row[0] for row in conn.execute(query, (literal,)))


def test_validated_waits_for_the_build_and_a_restart_mid_build_rebuilds_it(
    tmp_path: Path, tables: Callable[[], str], start_app: Callable[[dict[str, Any]], App]
) -> None:
    table = tables()
    config = _config(tmp_path / "data", table, "deferred")
    first = in_process_app(config)
    with _writer_lock(table):
        try:
            assert first.controller is not None
            _run_migration(first)  # its last rounds start the build, which waits for the open transaction
            _wait_until_building(first)
            assert first.controller.status().search_index.startswith("building (")
            # What `switchyard migrate status` prints, from the Admin service's answer.
            answer = status_to_pb(first.controller.status(), first.controller.promoter, "default")
            assert "HNSW index     building (" in status_report(answer)
            with pytest.raises(FailedPrecondition, match="HNSW index"):
                first.controller.transition("validated")
            with pytest.raises(FailedPrecondition, match="validate once it is built"):
                first.controller.promoter.validate()
            # Another replica's worker finds the build held by this one and leaves it alone.
            other = PgVectorIndex("idx-b", 32, PGVECTOR_DSN, table=table, build_index="deferred")
            try:
                assert other.build_search_index() is False
            finally:
                other.close()
        finally:
            first.close()  # the sidecar stops mid-build: its build is cancelled
    assert _state(table) == "invalid"  # what a cancelled CONCURRENTLY build leaves behind
    again = start_app(config)
    assert again.controller is not None
    with pytest.raises(FailedPrecondition, match="HNSW index"):
        again.controller.transition("validated")
    _build(again)
    assert _state(table) == "valid"
    assert "embedding_hnsw" in _explain(table)
    again.controller.promoter.validate()  # runs now, on the graph
    assert again.controller.transition("validated").phase.value == "validated"


def _wait_until_building(app: App) -> None:
    assert app.controller is not None
    for _ in range(BUILT_WITHIN):
        app.controller.run_once()
        app.controller.index_build.join(0.5)
        pending = app.controller.index_build.pending()
        if pending is not None and pending.building:
            return
    raise AssertionError(f"the build did not start: {app.controller.index_build.describe()}")


def test_build_index_at_builds_the_graph_mid_backfill_and_the_rest_is_written_into_it(
    tmp_path: Path, tables: Callable[[], str], start_app: Callable[[dict[str, Any]], App]
) -> None:
    table = tables()
    config = _config(tmp_path / "data", table, "deferred")
    config["indexes"]["idx-b"]["pgvector"]["build_index_at"] = 0.3
    app = start_app(config)
    assert app.controller is not None
    docs = load_corpus(app, CORPUS)
    app.controller.start()
    for _ in range(BUILT_WITHIN):
        app.controller.run_once()
        app.controller.index_build.join(BUILT_WITHIN)  # a build this step started is waited for
        if app.controller.index_build.pending() is None:
            break
    done, total = app.controller.backfiller.done_and_total()
    assert 0.3 <= done / total < 1 and _state(table) == "valid"
    drain(app)
    old, new = app.bindings["idx-a"].index, app.bindings["idx-b"].index
    ids = [d.id for d in docs]
    assert {d.id: d.version for d in new.get(ids)} == {d.id: d.version for d in old.get(ids)}
    assert "embedding_hnsw" in _explain(table)


def test_a_live_index_opened_on_an_invalid_hnsw_index_reports_it_and_rebuilds_it(
    tables: Callable[[], str],
) -> None:
    table = tables()
    PgVectorIndex("idx-b", 32, PGVECTOR_DSN, table=table, build_index="deferred").close()
    # A CONCURRENTLY build cut short while it waits for a writer: its catalog entry stays, INVALID.
    with _writer_lock(table), psycopg.connect(PGVECTOR_DSN, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(
                sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} USING hnsw (embedding vector_cosine_ops)").format(
                    sql.Identifier(f"{table}_embedding_hnsw"), sql.Identifier(table)
                )
            )
    assert _state(table) == "invalid"
    index = PgVectorIndex("idx-b", 32, PGVECTOR_DSN, table=table)  # live, as a config switched back would be
    try:
        assert not index.search_index_state().built and index.build_at == 0.0
        assert index.build_search_index() is True
        assert index.search_index_state().built and _state(table) == "valid"
    finally:
        index.close()


def test_a_build_left_running_by_a_dead_sidecar_is_waited_for_not_duplicated(
    tmp_path: Path, tables: Callable[[], str], start_app: Callable[[dict[str, Any]], App]
) -> None:
    table = tables()
    app = start_app(_config(tmp_path / "data", table, "deferred"))
    assert app.controller is not None
    load_corpus(app, 300)
    # A build that outlives its sidecar: PostgreSQL goes on building, its backend holding the builder's lock.
    orphan = PgVectorIndex("idx-b", 32, PGVECTOR_DSN, table=table, build_index="deferred")
    outcome: list[bool] = []
    with _writer_lock(table):
        builder = threading.Thread(target=lambda: outcome.append(orphan.build_search_index()))
        builder.start()
        _wait_for_build_to_start(table)
        app.controller.start()
        drain(app)  # complete: the worker would build now, but finds the build running
        pending = app.controller.index_build.pending()
        assert pending is not None and pending.building
        with pytest.raises(FailedPrecondition, match="HNSW index"):
            app.controller.transition("validated")
    builder.join(BUILT_WITHIN)
    orphan.close()
    assert outcome == [True]
    _build(app)
    assert app.controller.transition("validated").phase.value == "validated"


def _wait_for_build_to_start(table: str) -> None:
    with psycopg.connect(PGVECTOR_DSN, autocommit=True) as conn:
        for _ in range(10 * BUILT_WITHIN):
            if search_index_state(
                conn, IndexTable(index="idx-b", name=table, dim=32, space="cosine")
            ).building:
                return
            time.sleep(0.1)
    raise AssertionError("the build did not start")
