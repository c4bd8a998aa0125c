"""One index slow or failing, in process: answers keep their deadline, the backfill waits out the fault.

Queries run concurrently from several threads, as the gRPC servicer runs them; a slow leg must not hold up
the answers beyond the leg deadline (the other leg answers, flagged degraded), and a failing new index
pauses the backfill, queues the dual writes it missed, and both catch up once it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from proxy.app.assembly import App
from proxy.core.errors import Unavailable
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.service import QueryInput
from tests.migration_support import in_process_app, load_corpus, migration_config
from tests.reliability.support import percentile, record_result

LEG_TIMEOUT_MS = 200


class FlakyIndex:
    """Delegates to a real index; searches can be slowed or failed, writes failed, while the test says so."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.fail_searches = False
        self.fail_writes = False
        self.failed_writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def hold_graph(self, release: threading.Event) -> threading.Thread:
        """Slows searches as a real hnswlib index is slowed: a write holding its graph, here until `release`."""
        held = threading.Event()

        def writer() -> None:
            with self._inner._graph_lock.exclusive():
                held.set()
                release.wait(60)

        thread = threading.Thread(target=writer, name="graph-holder")
        thread.start()
        held.wait()
        return thread

    def search(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_searches:
            raise ConnectionError("index leg down")
        return self._inner.search(*args, **kwargs)

    def upsert(self, records: Any) -> Any:
        self._fail_write()
        return self._inner.upsert(records)

    def delete(self, ids: Any, version: int) -> Any:
        self._fail_write()
        return self._inner.delete(ids, version)

    def _fail_write(self) -> None:
        if self.fail_writes:
            self.failed_writes += 1
            raise ConnectionError("index down for writes")


def _flaky(app: App, name: str) -> FlakyIndex:
    """Wraps one index of the migration where queries and writes (the topology) and the backfill reach it."""
    controller = app.controller
    assert controller is not None
    binding = app.bindings[name]
    flaky = FlakyIndex(binding.index)
    wrapped = replace(binding, index=flaky)  # type: ignore[arg-type]
    if name == controller.new.name:
        controller.topology.new = controller.backfiller.target = wrapped
    else:
        controller.topology.old = controller.backfiller.source = wrapped
    return flaky


@pytest.fixture
def app(tmp_path: Path, shared_redis: str) -> Iterator[App]:
    config = migration_config(tmp_path / "data", rate_limit=400, lease_ttl_s=1.0)
    config["query"] = {"leg_timeout_ms": LEG_TIMEOUT_MS}
    application = in_process_app(config)
    yield application
    application.close()


@dataclass(frozen=True)
class _Answered:
    seconds: float
    failed_legs: tuple[str, ...]
    indexes: frozenset[str]
    error: str = ""


def _concurrent_queries(app: App, texts: list[str], threads: int, duration_s: float) -> list[_Answered]:
    """`threads` callers querying on the dual path for `duration_s`, as concurrent RPCs would."""
    answers: list[_Answered] = []
    stop = time.monotonic() + duration_s

    def caller(n: int) -> None:
        while time.monotonic() < stop:
            request = QueryInput(k=5, text=texts[n % len(texts)], override=RoutingMode.DUAL)
            started = time.monotonic()
            try:
                outcome = app.service.query(request)
            except Unavailable as exc:
                answers.append(_Answered(time.monotonic() - started, (), frozenset(), str(exc)))
                continue
            indexes = frozenset(h.index for h in outcome.hits)
            answers.append(_Answered(time.monotonic() - started, outcome.failed_legs, indexes))

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


@pytest.mark.parametrize(("leg", "fault"), [("idx-b", "slow"), ("idx-a", "slow"), ("idx-b", "failing")])
def test_a_slow_or_failing_leg_is_routed_around_within_the_deadline(app: App, leg: str, fault: str) -> None:
    assert app.controller is not None
    docs = load_corpus(app, 200)
    app.controller.start()
    flaky = _flaky(app, leg)
    # The backfill commits to the new index all along, as in production: a healthy leg that waits a moment
    # for a commit must still answer, even after the slow leg used up its own deadline.
    app.controller.set_rate(60)
    app.controller.start_worker()
    release, holder = threading.Event(), None
    if fault == "slow":
        holder = flaky.hold_graph(release)
    else:
        flaky.fail_searches = True
    try:
        answers = _concurrent_queries(app, [d.text for d in docs[:40]], threads=8, duration_s=3.0)
    finally:
        release.set()
        if holder is not None:
            holder.join()
    errors = [a.error for a in answers if a.error]
    slowest = max(a.seconds for a in answers)
    healthy = ({"idx-a", "idx-b"} - {leg}).pop()
    record_result(
        "leg_faults",
        f"{leg}-{fault}",
        {
            "queries": len(answers),
            "errors": len(errors),
            "degraded": sum(a.failed_legs == (leg,) for a in answers),
            "p99_ms": round(percentile([a.seconds for a in answers], 99) * 1000, 1),
            "max_ms": round(slowest * 1000, 1),
        },
    )
    assert not errors, errors[:3]
    assert all(a.failed_legs == (leg,) for a in answers), "every answer says which leg failed"
    assert all(a.indexes <= {healthy} for a in answers), "hits come from the healthy leg only"
    # The deadline plus scheduling slack on a busy 2-core machine; a leg waited for would take seconds.
    assert slowest < LEG_TIMEOUT_MS / 1000 + 0.6, f"an answer took {slowest:.2f}s"


def test_backfill_pauses_against_a_failing_target_and_completes_when_it_recovers(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    controller = app.controller
    assert controller is not None
    docs = load_corpus(app, 400)
    controller.start()
    flaky = _flaky(app, "idx-b")
    controller.start_worker()
    _wait_for(lambda: controller.backfiller.done_and_total()[0] >= 100)
    caplog.set_level(logging.WARNING, logger="proxy")
    flaky.fail_writes = True
    time.sleep(0.3)  # a batch already past its write may still finish
    done_at_fault = controller.backfiller.done_and_total()[0]
    refused = _write_during_fault(app)
    time.sleep(2.0)
    done_during_fault = controller.backfiller.done_and_total()[0]
    flaky.fail_writes = False
    _wait_for(lambda: controller.backfiller.complete() and controller.status().backfill.pending_repairs == 0)
    controller.stop_worker()

    ids = [d.id for d in docs] + [d.id for d in refused]
    old = {d.id: d.version for d in app.bindings["idx-a"].index.get(ids)}
    new = {d.id: d.version for d in app.bindings["idx-b"].index.get(ids)}
    retries = [r for r in caplog.records if "backfill step failed" in r.getMessage()]
    record_result(
        "leg_faults",
        "backfill-target-down",
        {
            "fault_s": 2.3,
            "failed_target_writes": flaky.failed_writes,
            "worker_retries_logged": len(retries),
            "dual_writes_refused": len(refused),
            "documents_checked": len(ids),
            "lost": len(set(old) - set(new)) + sum(new.get(i) != v for i, v in old.items()),
        },
    )
    assert done_during_fault == done_at_fault, "no progress is recorded while the target fails"
    assert retries, "the worker logs the failure and retries"
    assert set(old) == set(ids) and new == old, "every document, the refused dual writes too, is in both"


def _write_during_fault(app: App) -> list[DocumentInput]:
    """Dual writes while the new index is down: refused UNAVAILABLE, yet held by the old index."""
    refused = []
    for n in range(5):
        doc = DocumentInput(f"during-fault-{n}", f"written while the new index is down, number {n}")
        with pytest.raises(Unavailable, match="queued for repair"):
            app.service.upsert([doc])
        refused.append(doc)
    return refused


def _wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
