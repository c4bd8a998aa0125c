"""The query path in process: routing modes, coverage-aware merge, degraded legs, split and hot reload."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.app.assembly import App
from proxy.app.config import load_config
from proxy.app.config_watch import ConfigWatcher
from proxy.app.reload import apply_reload
from proxy.core.errors import InvalidArgument, Unavailable
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.service import QueryInput
from tests.migration_support import drain, in_process_app, load_corpus, migration_config


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    application = in_process_app(migration_config(tmp_path / "data"))
    yield application
    application.close()


def _half_migrated(app: App, size: int = 200) -> list[DocumentInput]:
    """Loads a corpus, starts the migration and backfills about half of it."""
    assert app.controller is not None
    docs = load_corpus(app, size)
    app.controller.start()
    while app.controller.status().coverage < 0.5:
        app.controller.backfiller.step(include_slices=True)
    return docs


def _query(app: App, text: str, mode: RoutingMode | None = None, k: int = 10, key: str = "") -> object:
    return app.service.query(QueryInput(k=k, text=text, override=mode, routing_key=key or uuid.uuid4().hex))


def test_old_mode_searches_only_the_old_index(app: App) -> None:
    docs = _half_migrated(app)
    outcome = _query(app, docs[150].text, RoutingMode.OLD)
    assert outcome.served_by is RoutingMode.OLD  # type: ignore[attr-defined]
    assert {h.index for h in outcome.hits} == {"idx-a"}  # type: ignore[attr-defined]
    assert [leg.index for leg in outcome.legs] == ["idx-a"]  # type: ignore[attr-defined]


def test_shadow_mode_serves_old_and_records_the_new_leg_in_the_background(app: App) -> None:
    docs = _half_migrated(app)
    outcome = _query(app, docs[10].text, RoutingMode.SHADOW)
    assert {h.index for h in outcome.hits} == {"idx-a"}  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while app.shadow.summary().samples == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    summary = app.shadow.summary()
    assert summary.samples == 1 and summary.new_error_rate == 0.0
    assert 0.0 < summary.overlap <= 1.0  # doc 10 is covered, so both answers share at least it


def test_dual_mode_merges_both_and_answers_uncovered_documents_from_old(app: App) -> None:
    docs = _half_migrated(app)
    covered = set(app.bindings["idx-b"].index.versions([d.id for d in docs]))
    uncovered_doc = next(d for d in reversed(docs) if d.id not in covered)
    outcome = _query(app, uncovered_doc.text, RoutingMode.DUAL)
    assert (uncovered_doc.id, "idx-a") in {(h.id, h.index) for h in outcome.hits[:3]}  # type: ignore[attr-defined]
    for hit in outcome.hits:  # type: ignore[attr-defined]
        assert (hit.index == "idx-b") == (hit.id in covered), "covered docs come from B, the rest from A"
    assert outcome.merge_strategy == "calibrated" and 0.4 < outcome.coverage < 0.7  # type: ignore[attr-defined]


def test_new_mode_with_partial_coverage_still_finds_uncovered_documents(app: App) -> None:
    docs = _half_migrated(app)
    covered = set(app.bindings["idx-b"].index.versions([d.id for d in docs]))
    uncovered_doc = next(d for d in reversed(docs) if d.id not in covered)
    outcome = _query(app, uncovered_doc.text, RoutingMode.NEW)
    assert uncovered_doc.id in {h.id for h in outcome.hits[:3]}  # type: ignore[attr-defined]
    assert [leg.index for leg in outcome.legs] == ["idx-a", "idx-b"]  # type: ignore[attr-defined]


def test_new_mode_with_full_coverage_searches_only_the_new_index(app: App) -> None:
    docs = load_corpus(app, 100)
    assert app.controller is not None
    app.controller.start()
    drain(app)
    assert app.controller.status().coverage == 1.0  # status re-reads coverage (queries reuse it for 0.5 s)
    outcome = _query(app, docs[3].text, RoutingMode.NEW)
    assert [leg.index for leg in outcome.legs] == ["idx-b"]  # type: ignore[attr-defined]
    assert outcome.hits[0].id == docs[3].id and outcome.merge_strategy == "none"  # type: ignore[attr-defined]


def test_caller_vector_is_searched_only_in_its_models_index(app: App) -> None:
    docs = _half_migrated(app)
    vector = app.bindings["idx-a"].embedder.embed([docs[120].text])[0]
    request = QueryInput(k=5, vector=vector, vector_model="hash-a", override=RoutingMode.DUAL)
    outcome = app.service.query(request)
    assert [leg.index for leg in outcome.legs] == ["idx-a"] and outcome.hits[0].id == docs[120].id


class _FailingIndex:
    """An index behind a network (as pgvector is): its slowness is a wait a deadline can cut."""

    in_process = False

    def __init__(self, inner: object, delay_s: float = 0.0, error: bool = True) -> None:
        self._inner, self._delay_s, self._error = inner, delay_s, error

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def search(self, *args: object, **kwargs: object) -> object:
        time.sleep(self._delay_s)
        if self._error:
            raise ConnectionError("leg down")
        return self._inner.search(*args, **kwargs)  # type: ignore[attr-defined]


class _ThreadRecordingIndex:
    def __init__(self, inner: object, threads: list[threading.Thread]) -> None:
        self._inner, self._threads = inner, threads

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def search(self, *args: object, **kwargs: object) -> object:
        self._threads.append(threading.current_thread())
        return self._inner.search(*args, **kwargs)  # type: ignore[attr-defined]


def _break_leg(app: App, name: str, **how: object) -> None:
    _swap_index(app, name, _FailingIndex(app.bindings[name].index, **how))


def _swap_index(app: App, name: str, index: object) -> None:
    assert app.controller is not None
    swapped = replace(app.bindings[name], index=index)  # type: ignore[arg-type]
    if name == "idx-b":
        app.controller.topology.new = swapped
    else:
        app.controller.topology.old = swapped


@pytest.mark.parametrize(("cores", "on_caller"), [(1, (2, 1)), (2, (1, 0))])
def test_in_process_legs_run_on_the_query_thread_unless_cores_are_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int, on_caller: tuple[int, int]
) -> None:
    # One query in flight: on one core nothing is idle, on two the second hnswlib leg may overlap the first.
    monkeypatch.setattr("proxy.app.assembly.available_cores", lambda: cores)
    app = in_process_app(migration_config(tmp_path / "data"))
    try:
        docs = _half_migrated(app)
        with pytest.raises(InvalidArgument):
            _query(app, docs[30].text, RoutingMode.DUAL, k=0)  # must not stay counted as in flight
        threads: list[threading.Thread] = []
        _swap_index(app, "idx-a", _ThreadRecordingIndex(app.bindings["idx-a"].index, threads))
        _swap_index(app, "idx-b", _ThreadRecordingIndex(app.bindings["idx-b"].index, threads))
        outcome = _query(app, docs[30].text, RoutingMode.DUAL)
        assert {h.index for h in outcome.hits} == {"idx-a", "idx-b"}  # type: ignore[attr-defined]
        assert sum(t is threading.current_thread() for t in threads) == on_caller[0]

        threads.clear()
        _break_leg(app, "idx-a", delay_s=0.0, error=False)  # now behind a "network": always in its pool
        _swap_index(app, "idx-a", _ThreadRecordingIndex(app.controller.topology.old.index, threads))  # type: ignore[union-attr]
        _query(app, docs[30].text, RoutingMode.DUAL)
        assert len(threads) == 2 and sum(t is threading.current_thread() for t in threads) == on_caller[1]
    finally:
        app.close()


def test_a_failing_leg_degrades_the_answer_instead_of_failing_it(app: App) -> None:
    docs = _half_migrated(app)
    _break_leg(app, "idx-b")
    outcome = _query(app, docs[30].text, RoutingMode.DUAL)
    assert outcome.degraded and outcome.failed_legs == ("idx-b",)  # type: ignore[attr-defined]
    assert outcome.hits and {h.index for h in outcome.hits} == {"idx-a"}  # type: ignore[attr-defined]


def test_a_slow_leg_is_cut_at_its_deadline(tmp_path: Path) -> None:
    config = migration_config(tmp_path / "data")
    config["query"] = {"leg_timeout_ms": 200}
    app = in_process_app(config)
    try:
        docs = _half_migrated(app)
        _break_leg(app, "idx-a", delay_s=2.0, error=False)
        started = time.monotonic()
        outcome = _query(app, docs[30].text, RoutingMode.DUAL)
        waited = time.monotonic() - started
        assert outcome.failed_legs == ("idx-a",)  # type: ignore[attr-defined]
        assert waited < 1.5, f"answer waited {waited:.2f}s for a leg with a 0.2s deadline"
        assert {h.index for h in outcome.hits} == {"idx-b"}  # type: ignore[attr-defined]
    finally:
        app.close()


def _hold_graph(app: App, name: str, release: threading.Event) -> threading.Thread:
    """A write holding an hnswlib index's graph until `release`: the one thing its searches wait for."""
    held = threading.Event()

    def writer() -> None:
        with app.bindings[name].index._graph_lock.exclusive():  # type: ignore[attr-defined]
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait()
    return thread


def test_each_in_process_leg_waits_for_its_index_within_its_own_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "proxy.app.assembly.available_cores", lambda: 1
    )  # no idle core: both legs on this thread
    config = migration_config(tmp_path / "data")
    config["query"] = {"leg_timeout_ms": 300}
    app = in_process_app(config)
    stuck, brief = threading.Event(), threading.Event()
    try:
        docs = _half_migrated(app)
        holders = [_hold_graph(app, "idx-a", stuck), _hold_graph(app, "idx-b", brief)]
        # idx-b's write ends 0.15 s after idx-a's leg gave up: within idx-b's own 0.3 s, not within what
        # would be left of one deadline shared by both legs.
        threading.Timer(0.45, brief.set).start()
        started = time.monotonic()
        outcome = _query(app, docs[30].text, RoutingMode.DUAL)
        waited = time.monotonic() - started
        assert outcome.failed_legs == ("idx-a",)  # type: ignore[attr-defined]
        assert {h.index for h in outcome.hits} == {"idx-b"}  # type: ignore[attr-defined]
        assert waited < 2.0, f"answer waited {waited:.2f}s with a 0.3 s deadline per leg"
    finally:
        stuck.set()
        brief.set()
        for holder in holders:
            holder.join()
        app.close()


def test_when_every_leg_fails_the_query_is_unavailable(app: App) -> None:
    docs = _half_migrated(app)
    _break_leg(app, "idx-a")
    _break_leg(app, "idx-b")
    with pytest.raises(Unavailable, match="every index leg failed"):
        _query(app, docs[0].text, RoutingMode.DUAL)


def test_split_is_sticky_per_key_and_close_to_the_configured_share(app: App) -> None:
    _half_migrated(app, 50)
    assert app.controller is not None
    app.controller.set_traffic_percent(30)
    paths = {f"user-{n}": _query(app, "garlic", key=f"user-{n}", k=1).served_by for n in range(1500)}  # type: ignore[attr-defined]
    share = sum(mode is RoutingMode.DUAL for mode in paths.values()) / len(paths)
    assert abs(share - 0.30) < 0.04
    for key in list(paths)[:50]:
        assert _query(app, "comet", key=key, k=1).served_by is paths[key]  # type: ignore[attr-defined]


def _watched_config(app: App, tmp_path: Path) -> tuple[Path, dict[str, Any], ConfigWatcher]:
    """A config file for the app's migration, its content as a dict, and a watcher that applies edits."""
    path = tmp_path / "switchyard.yaml"
    raw = migration_config(tmp_path / "data")
    raw["state"] = {**app.config.state.model_dump()}
    path.write_text(yaml.safe_dump(raw))
    return path, raw, ConfigWatcher(path, load_config(path), lambda old, new: apply_reload(app, old, new))


def test_config_file_change_moves_the_split_and_a_bad_file_is_ignored(app: App, tmp_path: Path) -> None:
    assert app.controller is not None
    path, raw, watcher = _watched_config(app, tmp_path)
    raw["query"] = {"traffic_percent": 40}
    path.write_text(yaml.safe_dump(raw))
    assert watcher.check()
    assert app.controller.traffic_percent() == 40
    path.write_text("query: {traffic_percent: 400}\n")
    assert not watcher.check()
    assert app.controller.traffic_percent() == 40


def _reload_backfill(path: Path, raw: dict[str, Any], watcher: ConfigWatcher, **values: Any) -> None:
    raw["migration"]["backfill"] = {**raw["migration"].get("backfill", {}), **values}
    path.write_text(yaml.safe_dump(raw))
    assert watcher.check()


def test_config_file_change_sets_the_backfill_latency_budget(app: App, tmp_path: Path) -> None:
    assert app.controller is not None
    path, raw, watcher = _watched_config(app, tmp_path)
    _reload_backfill(path, raw, watcher, latency_budget_ms=7.5)
    assert app.controller.throttle.latency_budget_s == pytest.approx(0.0075)
    del raw["migration"]["backfill"]["latency_budget_ms"]
    _reload_backfill(path, raw, watcher)
    assert app.controller.throttle.latency_budget_s is None


def test_config_file_change_sets_the_backfill_batch_time(app: App, tmp_path: Path) -> None:
    assert app.controller is not None
    path, raw, watcher = _watched_config(app, tmp_path)
    _reload_backfill(path, raw, watcher, batch_time_ms=250)
    assert app.controller.throttle.batch_time_s == pytest.approx(0.25)


def test_config_file_change_turns_reranking_on(app: App, tmp_path: Path) -> None:
    docs = _half_migrated(app)
    path, raw, watcher = _watched_config(app, tmp_path)
    assert _query(app, docs[3].text, RoutingMode.DUAL).rerank.candidates == 0  # type: ignore[attr-defined]
    raw["query"] = {"rerank": {"candidates": 25, "budget_ms": 5000}}
    path.write_text(yaml.safe_dump(raw))
    assert watcher.check()
    outcome = _query(app, docs[3].text, RoutingMode.DUAL)
    assert outcome.rerank.candidates == 25 and not outcome.rerank.fallback  # type: ignore[attr-defined]


def test_admin_split_is_shared_by_replicas_through_redis(app: App, tmp_path: Path) -> None:
    other = in_process_app({**migration_config(tmp_path / "other"), "state": app.config.state.model_dump()})
    try:
        assert app.controller is not None and other.controller is not None
        app.controller.set_traffic_percent(65)
        assert other.controller.traffic_percent() == 65
    finally:
        other.close()


def test_status_reports_the_p99_the_throttle_sees_and_its_budget(app: App) -> None:
    assert app.controller is not None
    assert app.controller.status().backfill.query_p99_ms == 0.0, "too few queries to tell"
    for _ in range(30):
        app.latencies.record(0.004)
    app.controller.set_latency_budget(7.5)
    backfill = app.controller.status().backfill
    assert backfill.query_p99_ms == pytest.approx(4.0)
    assert backfill.latency_budget_ms == pytest.approx(7.5)
    app.controller.set_latency_budget(None)
    assert app.controller.status().backfill.latency_budget_ms == 0.0
