"""Storage during a migration: retire-as-you-go keeps old + new near one copy, and no query goes unanswered."""

from __future__ import annotations

import random
from pathlib import Path

from proxy.app.assembly import App
from proxy.core.model import DocumentInput
from proxy.core.service import QueryInput
from tests.migration_support import in_process_app, load_corpus, migration_config


def _run(app: App, docs: list[DocumentInput]) -> tuple[float, int]:
    """Backfills with all traffic on the new path, querying as it goes; returns (peak ratio, misses)."""
    assert app.controller is not None
    app.controller.start()
    app.controller.set_traffic_percent(100)
    rng = random.Random(5)
    misses = 0
    for _ in range(10_000):
        processed = app.controller.run_once()
        # The new index's graph reaches the disk at a flush; flushing before each sample counts all of it.
        app.bindings["idx-b"].index.flush()
        app.controller.status()  # samples storage, as the worker loop does
        probe = rng.choice(docs)
        hits = app.service.query(QueryInput(k=3, text=probe.text, routing_key=probe.id)).hits
        misses += probe.id not in {h.id for h in hits}
        if processed == 0 and app.controller.backfiller.complete():
            break
    return app.controller.status().storage.peak_ratio, misses


def _app(tmp_path: Path, policy: str) -> App:
    config = migration_config(tmp_path / policy, batch_size=100, slice_size=1000)
    config["migration"]["storage_policy"] = policy
    # A realistic dimension: with tiny vectors, SQLite's page and journal overheads would dominate the sizes.
    for model in config["models"].values():
        model["dim"] = 384
    for index in config["indexes"].values():
        index["hnsw"] = {"ef_construction": 40}  # compaction rebuilds graphs: keep the test quick
    return in_process_app(config)


def test_retire_as_you_go_keeps_peak_storage_near_one_copy(tmp_path: Path) -> None:
    app = _app(tmp_path, "retire_as_you_go")
    try:
        docs = load_corpus(app, 3000)
        app.bindings["idx-a"].index.flush()
        peak, misses = _run(app, docs)
        status = app.controller.status()  # type: ignore[union-attr]
        assert misses == 0, "every probed document was answered during the whole run"
        assert peak < 1.3, f"peak storage {peak:.2f}x one copy"
        assert status.coverage == 1.0 and status.storage.retired == len(docs)
        assert app.bindings["idx-a"].index.count() == 0
        found = app.service.get([d.id for d in docs[:200]])[0]
        assert len(found) == 200 and {tuple(r.indexes) for r in found} == {("idx-b",)}
    finally:
        app.close()


def test_keep_old_doubles_storage_but_keeps_the_old_index_whole(tmp_path: Path) -> None:
    app = _app(tmp_path, "keep_old")
    try:
        docs = load_corpus(app, 3000)
        app.bindings["idx-a"].index.flush()
        peak, misses = _run(app, docs)
        assert misses == 0
        assert peak > 1.6, f"peak storage {peak:.2f}x: both copies are kept"
        assert app.bindings["idx-a"].index.count() == len(docs)
    finally:
        app.close()
