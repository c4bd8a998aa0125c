"""The migration engine in process: real Redis for shared state, real hnswlib indexes on disk."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.app.assembly import App
from proxy.core.errors import FailedPrecondition, Unavailable
from proxy.core.model import DocumentInput, RoutingMode, Vector
from proxy.core.ports import Embedder
from proxy.core.service import QueryInput
from proxy.migration.phases import Phase
from tests.migration_support import drain, in_process_app, load_corpus, migration_config, writes_applied


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    application = in_process_app(migration_config(tmp_path / "data"))
    yield application
    application.close()


def _b_versions(app: App, ids: Sequence[str]) -> dict[str, int]:
    return app.bindings["idx-b"].index.versions(ids)


def test_before_start_writes_go_to_the_old_index_only(app: App) -> None:
    app.service.upsert([DocumentInput("d1", "garlic broth")])
    assert app.bindings["idx-a"].index.versions(["d1"]) and not _b_versions(app, ["d1"])


def test_dual_write_lands_in_both_indexes_at_one_version(app: App) -> None:
    assert app.controller is not None
    app.controller.start()
    versions = app.service.upsert([DocumentInput("d1", "garlic broth"), DocumentInput("d2", "comet tails")])
    assert app.bindings["idx-a"].index.versions(["d1", "d2"]) == versions
    assert _b_versions(app, ["d1", "d2"]) == versions
    deleted, _ = app.service.delete(["d1"])
    assert _b_versions(app, ["d1"])["d1"] == deleted["d1"]
    assert app.bindings["idx-b"].index.get(["d1"]) == []


def test_backfill_moves_every_document_once_at_its_version(app: App, tmp_path: Path) -> None:
    assert app.controller is not None
    docs = load_corpus(app, 430)
    app.controller.start()
    drain(app)
    ids = [d.id for d in docs]
    assert _b_versions(app, ids) == app.bindings["idx-a"].index.versions(ids)
    assert writes_applied(tmp_path / "data" / "indexes" / "idx-b") == len(docs)
    status = app.controller.status()
    assert (status.backfill.done, status.backfill.total, status.coverage) == (430, 430, 1.0)


def test_pause_stops_the_backfill_and_resume_continues_it(app: App) -> None:
    assert app.controller is not None
    load_corpus(app, 200)
    app.controller.start()
    app.controller.run_once()
    app.controller.pause()
    assert app.controller.run_once() == 0
    assert app.controller.status().backfill.paused
    app.controller.resume()
    drain(app)
    assert app.controller.status().coverage == 1.0


@pytest.fixture
def resting_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[App, threading.Event]]:
    """A started migration whose worker owes a long rest; the event is set once it waits in that rest."""
    application = in_process_app(migration_config(tmp_path / "data", latency_budget_ms=50.0))
    controller = application.controller
    assert controller is not None
    load_corpus(application, 200)
    controller.start()
    controller.run_once()
    controller.throttle.record_batch(1, 1, 30.0)  # at a duty of 1/16 or less: a rest of minutes
    for _ in range(30):
        application.latencies.record(0.5)  # queries far over the budget: the duty cannot grow back meanwhile
    resting = threading.Event()
    wait = controller.backfiller._sleep

    def sleep(seconds: float) -> object:
        resting.set()
        return wait(seconds)

    monkeypatch.setattr(controller.backfiller, "_sleep", sleep)
    yield application, resting
    application.close()


def test_a_pause_during_the_throttle_rest_starts_no_further_batch(
    resting_app: tuple[App, threading.Event],
) -> None:
    application, resting = resting_app
    controller = application.controller
    assert controller is not None
    ids = [f"doc-{n:07d}" for n in range(200)]
    before = _b_versions(application, ids)
    worker = threading.Thread(target=controller.run_once, name="resting-worker")
    worker.start()
    assert resting.wait(10.0), "the worker waits out the rest"
    controller.pause()
    worker.join(timeout=5.0)
    assert not worker.is_alive(), "the pause ended the rest early"
    assert _b_versions(application, ids) == before, "no batch started after the pause"


def test_dual_writes_are_confirmed_while_the_backfill_rests(resting_app: tuple[App, threading.Event]) -> None:
    application, resting = resting_app
    controller = application.controller
    assert controller is not None
    worker = threading.Thread(target=controller.run_once, name="resting-worker")
    worker.start()
    try:
        assert resting.wait(10.0)
        application.service.upsert([DocumentInput("written-during-rest", "tea and biscuits")])
        deadline = time.monotonic() + 10.0
        while controller.status().backfill.pending_repairs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert controller.status().backfill.pending_repairs == 0, "confirmed without waiting out the rest"
        assert worker.is_alive(), "and the worker is still resting"
    finally:
        controller.pause()
        worker.join(timeout=5.0)


def test_with_a_latency_budget_the_first_batch_takes_one_document(tmp_path: Path) -> None:
    application = in_process_app(migration_config(tmp_path / "data", latency_budget_ms=50.0))
    try:
        assert application.controller is not None
        load_corpus(application, 100)
        application.controller.start()
        application.controller.run_once()
        assert application.controller.status().backfill.done == 1, "speed unknown: one document measures it"
        drain(application)
        assert application.controller.status().coverage == 1.0
    finally:
        application.close()


class _RemoteLike:
    """An embedder that reports a server behind it (as the HTTP embedder does); embeds with the one it wraps."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.model, self.dim, self.in_process = inner.model, inner.dim, False

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        return self._inner.embed(texts)

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        return self._inner.embed_query(texts)


def test_with_a_latency_budget_a_remote_embedder_keeps_whole_batches(tmp_path: Path) -> None:
    application = in_process_app(migration_config(tmp_path / "data", latency_budget_ms=50.0))
    try:
        controller = application.controller
        assert controller is not None
        target = controller.backfiller.target
        controller.backfiller.target = replace(target, embedder=_RemoteLike(target.embedder))
        load_corpus(application, 100)
        controller.start()
        controller.run_once()
        # Cutting a remote embedder's batch to fit 100 ms would only multiply its round trips.
        assert controller.status().backfill.done == 25
    finally:
        application.close()


def test_cutover_is_refused_until_the_new_index_covers_the_corpus(app: App) -> None:
    assert app.controller is not None
    load_corpus(app, 120)
    app.controller.start()
    app.controller.run_once()
    with pytest.raises(FailedPrecondition, match="coverage is"):
        app.controller.transition("cut_over")
    forced = app.controller.transition("cut_over", force=True, reason="drill")
    assert forced.phase is Phase.CUT_OVER and forced.history[-1].reason == "drill"


def test_phase_history_is_recorded_with_times(app: App) -> None:
    assert app.controller is not None
    load_corpus(app, 50)
    app.controller.start()
    drain(app)
    assert app.promoter is not None
    for phase in ("validated", "shifting", "cut_over", "old_retired"):
        if phase == "cut_over":
            assert app.promoter.validate().passed
        app.controller.transition(phase)
    history = app.controller.status().state.history
    assert [c.to_phase.value for c in history] == [
        "backfilling",
        "validated",
        "shifting",
        "cut_over",
        "old_retired",
    ]
    assert all(later.at >= earlier.at for earlier, later in itertools.pairwise(history))


def test_lazy_reembed_moves_queried_documents_before_the_backfill(app: App) -> None:
    assert app.controller is not None
    docs = load_corpus(app, 400)
    app.controller.start()
    hot = docs[371]  # deep in the last slice: the backfill would reach it last
    outcome = app.service.query(QueryInput(k=5, text=hot.text, override=RoutingMode.DUAL))
    assert outcome.hits[0].id == hot.id and outcome.hits[0].index == "idx-a"
    touched = [h.id for h in outcome.hits]
    assert app.controller.status().backfill.lazy_queue == len(touched)
    app.controller.run_once()
    assert set(_b_versions(app, touched)) == set(touched)
    assert len(_b_versions(app, [d.id for d in docs])) == len(touched)  # nothing else moved yet
    again = app.service.query(QueryInput(k=5, text=hot.text, override=RoutingMode.DUAL))
    assert again.hits[0].id == hot.id and again.hits[0].index == "idx-b"


def test_sync_lazy_budget_answers_from_the_new_index_at_once(tmp_path: Path) -> None:
    config = migration_config(tmp_path / "data")
    config["migration"]["lazy"] = {"sync_budget": 3}
    app = in_process_app(config)
    try:
        assert app.controller is not None
        docs = load_corpus(app, 100)
        app.controller.start()
        outcome = app.service.query(QueryInput(k=5, text=docs[40].text, override=RoutingMode.DUAL))
        assert outcome.hits[0].id == docs[40].id and outcome.hits[0].index == "idx-b"
        assert 3 <= len(_b_versions(app, [d.id for d in docs])) <= 5
    finally:
        app.close()


class _HookedEmbedder:
    """Wraps the new model's embedder to run `hook` in the middle of the backfill's embedding call."""

    def __init__(self, inner: object, hook: object) -> None:
        self.inner = inner
        self.hook = hook
        self.model = inner.model  # type: ignore[attr-defined]
        self.dim = inner.dim  # type: ignore[attr-defined]
        self.in_process = True

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        vectors = self.inner.embed(texts)  # type: ignore[attr-defined]
        # Only the batch `_race` runs embeds with this wrapper.
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()  # type: ignore[operator]
        return vectors

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        return self.inner.embed_query(texts)  # type: ignore[attr-defined, no-any-return]


def _race(app: App, during_batch: object) -> None:
    """Runs one backfill batch on a named thread, with `during_batch` between its read and its write."""
    from dataclasses import replace

    assert app.controller is not None
    new = app.bindings["idx-b"]
    hooked = replace(new, embedder=_HookedEmbedder(new.embedder, during_batch))
    app.controller.backfiller.target = hooked
    worker = threading.Thread(target=app.controller.run_once, name="backfill-under-test")
    worker.start()
    worker.join()


def test_client_update_during_a_backfill_batch_wins(app: App) -> None:
    assert app.controller is not None
    docs = load_corpus(app, 10)
    app.controller.start()
    newer: dict[str, int] = {}
    _race(app, lambda: newer.update(app.service.upsert([DocumentInput(docs[3].id, "rewritten text")])))
    stored = app.bindings["idx-b"].index.get([docs[3].id])[0]
    assert stored.text == "rewritten text" and stored.version == newer[docs[3].id]
    assert app.bindings["idx-a"].index.get([docs[3].id])[0].version == stored.version


def test_delete_during_a_backfill_batch_is_not_resurrected(app: App) -> None:
    assert app.controller is not None
    docs = load_corpus(app, 10)
    app.controller.start()
    _race(app, lambda: app.service.delete([docs[5].id]))
    drain(app)
    assert app.bindings["idx-b"].index.get([docs[5].id]) == []
    assert docs[5].id not in {h.id for h in app.service.query(QueryInput(k=10, text=docs[5].text)).hits}


def test_concurrent_updates_and_backfill_end_with_the_newest_versions(app: App) -> None:
    assert app.controller is not None
    docs = load_corpus(app, 300)
    app.controller.start()
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            doc = docs[(n * 7) % len(docs)]
            app.service.upsert([DocumentInput(doc.id, f"{doc.text} edit {n}")])
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    drain(app)
    stop.set()
    thread.join()
    ids = [d.id for d in docs]
    old_docs = {d.id: d for d in app.bindings["idx-a"].index.get(ids)}
    new_docs = {d.id: d for d in app.bindings["idx-b"].index.get(ids)}
    assert {i: (d.version, d.text) for i, d in new_docs.items()} == {
        i: (d.version, d.text) for i, d in old_docs.items()
    }


class _BrokenIndex:
    """Delegates to a real index but fails every write: a secondary that is down."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def upsert(self, records: object) -> object:
        raise ConnectionError("index down")


def test_failed_secondary_write_is_reported_and_repaired(app: App) -> None:
    from dataclasses import replace

    assert app.controller is not None
    app.controller.start()
    healthy = app.bindings["idx-b"]
    broken = replace(healthy, index=_BrokenIndex(healthy.index))
    app.controller.topology.new = broken
    with pytest.raises(Unavailable, match="queued for repair"):
        app.service.upsert([DocumentInput("r1", "repair me please")])
    assert app.controller.status().backfill.pending_repairs == 1
    app.controller.topology.new = healthy
    drain(app)
    assert app.bindings["idx-b"].index.get(["r1"])[0].text == "repair me please"
    assert app.controller.status().backfill.pending_repairs == 0
