"""Migrations onto pgvector: hnswlib -> pgvector and pgvector -> pgvector, in process, with real Redis state.

Needs PostgreSQL with pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh) and Redis at REDIS_URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.adapters.pgvector import PgVectorIndex
from proxy.app.assembly import App
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.service import QueryInput
from tests.contract.conftest import PGVECTOR_DSN
from tests.migration_support import AppFactory, drain, in_process_app, load_corpus, migration_config


def _pgvector_index(model: str, table: str, **pgvector: Any) -> dict[str, Any]:
    return {
        "model": model,
        "backend": "pgvector",
        "pgvector": {"dsn": PGVECTOR_DSN, "table": table, **pgvector},
    }


def _hnsw_to_pgvector(data_dir: Path, table: str) -> dict[str, Any]:
    config = migration_config(data_dir)
    config["indexes"]["idx-b"] = _pgvector_index("hash-b", table)
    return config


def _pgvector_to_pgvector(data_dir: Path, old_table: str, new_table: str) -> dict[str, Any]:
    config = migration_config(data_dir)
    # The new model has another dimension: each index keeps its own table, sized for its model.
    config["models"]["hash-c"] = {"kind": "hashing", "dim": 48, "seed": 3}
    config["indexes"] = {
        "idx-a": _pgvector_index("hash-a", old_table),
        "idx-b": _pgvector_index("hash-c", new_table, m=8, ef_construction=32, ef_search=64),
    }
    return config


def _assert_new_index_mirrors_old(app: App, ids: list[str]) -> None:
    old, new = app.bindings["idx-a"].index, app.bindings["idx-b"].index
    old_docs = {d.id: (d.version, d.text, d.metadata) for d in old.get(ids)}
    new_docs = {d.id: (d.version, d.text, d.metadata) for d in new.get(ids)}
    assert new_docs == old_docs
    assert new.count() == old.count()


def _migrate(app: App, size: int) -> list[DocumentInput]:
    assert app.controller is not None
    docs = load_corpus(app, size)
    app.controller.start()
    drain(app)
    return docs


def test_backfill_from_hnsw_moves_every_document_into_pgvector_at_its_version(
    tmp_path: Path, tables: Callable[[], str], start_app: AppFactory
) -> None:
    app = start_app(_hnsw_to_pgvector(tmp_path / "data", tables()))
    assert isinstance(app.bindings["idx-b"].index, PgVectorIndex)
    docs = _migrate(app, 430)
    _assert_new_index_mirrors_old(app, [d.id for d in docs])
    assert app.controller is not None
    status = app.controller.status()
    assert (status.backfill.done, status.backfill.total, status.coverage) == (430, 430, 1.0)


def test_backfill_between_two_pgvector_tables_of_different_dimensions(
    tmp_path: Path, tables: Callable[[], str], start_app: AppFactory
) -> None:
    app = start_app(_pgvector_to_pgvector(tmp_path / "data", tables(), tables()))
    assert app.bindings["idx-b"].index.dim == 48
    docs = _migrate(app, 300)
    _assert_new_index_mirrors_old(app, [d.id for d in docs])
    hot = docs[123]
    outcome = app.service.query(QueryInput(k=5, text=hot.text, override=RoutingMode.NEW))
    assert outcome.hits[0].id == hot.id and outcome.hits[0].index == "idx-b"


def test_writes_during_a_pgvector_backfill_end_with_the_newest_versions(
    tmp_path: Path, tables: Callable[[], str], start_app: AppFactory
) -> None:
    app = start_app(_hnsw_to_pgvector(tmp_path / "data", tables()))
    assert app.controller is not None
    docs = load_corpus(app, 300)
    app.controller.start()
    stop = threading.Event()

    def writer() -> None:
        for n in range(10_000):
            if stop.is_set():
                return
            doc = docs[(n * 7) % len(docs)]
            app.service.upsert([DocumentInput(doc.id, f"{doc.text} edit {n}", doc.metadata)])
            if n % 25 == 0:
                app.service.delete([docs[(n * 11) % len(docs)].id])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        drain(app)
    finally:
        stop.set()
        thread.join()
    _assert_new_index_mirrors_old(app, [d.id for d in docs])


def test_pgvector_state_survives_a_restart_and_cutover_serves_from_it(
    tmp_path: Path, tables: Callable[[], str], start_app: AppFactory
) -> None:
    config = _hnsw_to_pgvector(tmp_path / "data", tables())
    first = in_process_app(config)
    try:
        docs = _migrate(first, 120)
    finally:
        first.close()
    again = start_app(config)
    assert again.controller is not None
    _assert_new_index_mirrors_old(again, [d.id for d in docs])
    for phase in ("validated", "shifting"):
        again.controller.transition(phase)
    # Forced: the gate's validation report is the promotion tests' subject, not this one's.
    again.controller.transition("cut_over", force=True, reason="pgvector test")
    outcome = again.service.query(QueryInput(k=3, text=docs[7].text))
    assert outcome.hits[0].id == docs[7].id and outcome.hits[0].index == "idx-b"
