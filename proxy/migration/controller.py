"""Drives one configured migration: serving layout per phase, operator commands, the backfill loop."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

from proxy.app.config import MigrationConfig
from proxy.core.binding import IndexBinding
from proxy.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from proxy.core.model import RoutingMode, StoredDocument
from proxy.core.topology import Layout
from proxy.migration.backfill import Backfiller, reembed
from proxy.migration.phases import (
    DUAL_WRITE_PHASES,
    MigrationState,
    Phase,
    parse_phase,
    pause,
    resume,
    transition,
)
from proxy.migration.priority import BackfillEmbedder
from proxy.migration.retirement import STORAGE_KEY, StoragePolicy, StorageStatus, StorageTracker
from proxy.migration.state import LAZY_QUEUE, REPAIR_PRIORITY, MigrationRecord, PendingWrite, repair_queue
from proxy.migration.throttle import AdaptiveThrottle, LatencyWindow

log = logging.getLogger(__name__)

# Phases in which the backfill scans slices; in the others only lazy and repair work runs.
_SLICE_PHASES = frozenset({Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING})
_STATE_CACHE_S = 0.5
RETIRE_LEASE = "retire"
FLUSH_INTERVAL_S = 30.0
VALIDATION_KEY = "validation"


@dataclass(frozen=True)
class BackfillStatus:
    done: int
    total: int
    rate: float
    eta_s: float
    paused: bool
    throttle_reason: str
    rate_limit: float
    lazy_queue: int
    pending_repairs: int
    complete: bool
    query_p99_ms: float = 0.0
    """0 with too few recent queries to tell."""
    latency_budget_ms: float = 0.0
    """0: no latency budget."""
    throttle_duty: float = 1.0
    """Share of the time the latency throttle lets the backfill work."""


@dataclass(frozen=True)
class _Snapshot:
    at: float
    """time.monotonic() of the read."""
    state: MigrationState
    fields: Mapping[str, str]
    """The shared migration fields as read (traffic_percent, rate_limit, ...)."""
    retired: int

    def number(self, name: str, default: float) -> float:
        value = self.fields.get(name)
        return float(value) if value not in (None, "") else default


@dataclass(frozen=True)
class MigrationStatus:
    old_index: str
    new_index: str
    state: MigrationState
    backfill: BackfillStatus
    coverage: float
    traffic_percent: float
    storage: StorageStatus


class MigrationController:
    """Implements the core's Topology for a migration and runs this replica's backfill worker."""

    def __init__(
        self,
        config: MigrationConfig,
        old: IndexBinding,
        new: IndexBinding,
        record: MigrationRecord,
        owner: str,
        default_traffic_percent: float,
        new_path: RoutingMode,
        latencies: LatencyWindow,
        backfill_embedder: BackfillEmbedder | None = None,
    ) -> None:
        self.storage = StorageTracker(
            old, new, record.store, config.storage_policy, record.store.next_versions
        )
        self.periodic: list[Callable[[], None]] = []
        """Extra work the worker loop runs between batches (promotion checks)."""
        self.config = config
        self.old = old
        self.new = new
        self.record = record
        self.owner = owner
        self.latencies = latencies
        self._default_percent = default_traffic_percent
        self._new_path = new_path
        budget = config.backfill.latency_budget_ms
        self.throttle = AdaptiveThrottle(
            config.backfill.rate_limit,
            budget / 1000 if budget else None,
            latencies,
            batch_time_s=config.backfill.batch_time_ms / 1000,
        )
        self._backfill_embedder = backfill_embedder
        self._known: _Snapshot | None = None
        """The shared state as last read: served for _STATE_CACHE_S, and while the state store is down."""
        self._last_stale_warning = 0.0
        self._coverage: tuple[float, float] | None = None
        self._progress: deque[tuple[float, int]] = deque(maxlen=30)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resting = True
        """Not started yet, or paused: the next working round resumes the throttle (a slow start)."""
        self.backfiller = Backfiller(
            old,
            new if backfill_embedder is None else replace(new, embedder=backfill_embedder),
            record.store,
            owner,
            self.throttle,
            batch_size=config.backfill.batch_size,
            slice_size=config.backfill.slice_size,
            lease_ttl_s=config.backfill.lease_ttl_s,
            sleep=self._stop.wait,
        )
        self.backfiller.on_moved = self._retire_moved
        self.backfiller.may_continue = self._may_backfill

    # -- Topology ------------------------------------------------------------------------------------

    def layout(self) -> Layout:
        known = self._snapshot()
        phase = known.state.phase
        if phase is Phase.PLANNED:
            return Layout(primary=self.old)
        if phase is Phase.OLD_RETIRED:
            return Layout(primary=self.new)
        if phase is Phase.CUT_OVER:
            # The old index stays in step so a rollback is instant.
            return Layout(self.new, self.old, self.old, self.new, 100.0, RoutingMode.NEW, RoutingMode.NEW)
        # Documents retired from the old index exist only in the new one: a coverage-aware dual answer is
        # the only one that still finds them.
        rollback_mode = RoutingMode.DUAL if known.retired else RoutingMode.OLD
        forced = rollback_mode if phase is Phase.ROLLED_BACK else None
        split = known.number("traffic_percent", self._default_percent)
        return Layout(self.old, self.new, self.old, self.new, split, self._new_path, forced)

    def coverage(self) -> float:
        now = time.monotonic()
        if self._coverage is None or now - self._coverage[0] > _STATE_CACHE_S:
            self._coverage = (now, self._measure_coverage())
        return self._coverage[1]

    def _measure_coverage(self) -> float:
        try:
            retired = self.storage.retired_count()
        except Unavailable:
            if self._coverage is None:
                raise
            return self._coverage[1]  # the state store is down: the last measurement stands
        # Retired documents left the old index but are part of the corpus (the new index holds them).
        corpus = self.old.index.count() + retired
        return 1.0 if corpus == 0 else min(1.0, self.new.index.count() / corpus)

    def record_uncovered(self, ids: Sequence[str]) -> None:
        if not self.config.lazy.enabled or self._state().phase not in DUAL_WRITE_PHASES:
            return
        # Lazy moves only speed the migration up: a query must not fail because the queue is unreachable.
        with suppress(Unavailable):
            # Most recently touched first: the documents queries hit now are the ones worth moving now.
            self.record.store.enqueue(LAZY_QUEUE, ids, time.time())

    def record_pending(self, index: str, versions: Mapping[str, int]) -> None:
        members = PendingWrite.members(versions, time.time())
        self.record.store.enqueue(repair_queue(index), members, REPAIR_PRIORITY)

    def reembed_now(self, ids: Sequence[str]) -> int:
        if self._state().phase not in DUAL_WRITE_PHASES:
            return 0
        return len(reembed(self.old.index.get(ids), self.new).written)

    # -- operator commands ---------------------------------------------------------------------------

    def start(self) -> MigrationState:
        state = self._snapshot(fresh=True).state
        if state.phase is Phase.PAUSED:
            return self.resume()
        if state.phase in (Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING):
            return state
        self.storage.start()
        return self._change(Phase.BACKFILLING, "started by operator")

    def pause(self) -> MigrationState:
        return self._apply(lambda s, at: pause(s, at=at))

    def resume(self) -> MigrationState:
        return self._apply(lambda s, at: resume(s, at=at))

    def transition(self, to_phase: str, force: bool = False, reason: str = "") -> MigrationState:
        return self._change(parse_phase(to_phase), reason, force)

    def set_rate(self, docs_per_second: float) -> float:
        if docs_per_second < 0:
            raise InvalidArgument(f"docs_per_second must be >= 0 (0 = unlimited), got {docs_per_second}")
        self.record.set_float("rate_limit", docs_per_second)
        self.throttle.rate_limit = docs_per_second
        return docs_per_second

    def set_latency_budget(self, budget_ms: float | None) -> None:
        """This replica's query p99 budget for the backfill (None: no latency throttling).

        Not shared through the state store like the rate limit: each replica throttles on its own latency.
        """
        if budget_ms is not None and not budget_ms > 0:
            raise InvalidArgument(f"latency budget must be > 0 ms, got {budget_ms}")
        self.throttle.latency_budget_s = None if budget_ms is None else budget_ms / 1000

    def set_traffic_percent(self, percent: float) -> float:
        if not 0.0 <= percent <= 100.0:
            raise InvalidArgument(f"percent must be between 0 and 100, got {percent}")
        self.record.set_float("traffic_percent", percent)
        self._expire()
        return percent

    def traffic_percent(self) -> float:
        return self.record.get_float("traffic_percent", self._default_percent)

    def report_passed(self) -> bool:
        return self.record.store.get_fields(VALIDATION_KEY).get("passed") == "1"

    def _change(self, to: Phase, reason: str, force: bool = False) -> MigrationState:
        if to is Phase.ROLLED_BACK and not force and self.storage.retired_count():
            raise FailedPrecondition(
                f"{self.storage.retired_count()} documents were retired from {self.old.name} "
                "(storage_policy retire_as_you_go): the old index alone would miss them; force to roll back anyway"
            )
        coverage = self._exact_coverage()
        passed = self.report_passed()
        return self._apply(
            lambda s, at: transition(
                s, to, coverage=coverage, at=at, reason=reason, force=force, report_passed=passed
            )
        )

    def _apply(self, step) -> MigrationState:  # type: ignore[no-untyped-def]
        self._snapshot(fresh=True)  # a store that lost its state gets it back before it is changed
        state = self.record.change(step)
        self._expire()
        log.info("migration phase -> %s", state.phase.value)
        return state

    def _exact_coverage(self) -> float:
        self._coverage = None
        if self.backfiller.complete() or self.old.index.count() == 0:
            return self.coverage()
        return min(self.coverage(), 0.999999)

    def _state(self) -> MigrationState:
        return self._snapshot().state

    def _snapshot(self, fresh: bool = False) -> _Snapshot:
        """The shared state, read at most every _STATE_CACHE_S; while the store is unreachable, the last
        one read (queries keep their layout and split), unless `fresh` asks for the store's own answer."""
        now = time.monotonic()
        known = self._known
        if known is not None and not fresh and now - known.at <= _STATE_CACHE_S:
            return known
        try:
            snapshot = self._read_snapshot(now, known)
        except Unavailable as exc:
            if known is None or fresh:
                raise
            self._warn_stale(now, exc)
            self._known = replace(known, at=now)  # retried after another _STATE_CACHE_S, not per query
            return self._known
        self._known = snapshot
        shared_rate = snapshot.number("rate_limit", -1.0)
        if shared_rate >= 0:
            self.throttle.rate_limit = shared_rate
        return snapshot

    def _read_snapshot(self, now: float, known: _Snapshot | None) -> _Snapshot:
        state, fields = self.record.snapshot()
        if "phase" not in fields and known is not None and known.state.phase is not Phase.PLANNED:
            self._restore(known)
            state, fields = self.record.snapshot()
        return _Snapshot(now, state, fields, self.storage.retired_count())

    def _restore(self, known: _Snapshot) -> None:
        """The store came back without the migration (Redis restarted without persistence): without its
        phase every replica would fall back to `planned` and stop dual writes, so the phase, split and rate
        this replica last saw are written back. Slices and leases are gone too: the backfill plans again,
        and its scan skips what the new index already holds."""
        values = {k: v for k, v in known.fields.items() if k in ("traffic_percent", "rate_limit")}
        reason = "state store lost the migration state; restored from a replica's memory"
        if self.record.restore(known.state, values, reason):
            log.warning("%s: phase %s, %s", reason, known.state.phase.value, values or "default split")
            retired = max(known.retired, self.storage.retired_count())
            self.record.store.set_fields(STORAGE_KEY, {"retired": str(retired)})
        # The version counter is gone as well: new versions must stay above every one the indexes hold.
        self.record.store.advance_versions(max(self.old.index.max_version(), self.new.index.max_version()))

    def _warn_stale(self, now: float, error: Exception) -> None:
        if now - self._last_stale_warning > 10.0:
            self._last_stale_warning = now
            log.warning("state store unreachable; serving the last known migration state: %s", error)

    def _expire(self) -> None:
        if self._known is not None:
            self._known = replace(self._known, at=float("-inf"))

    # -- status --------------------------------------------------------------------------------------

    def status(self) -> MigrationStatus:
        self._coverage = None
        state = self._snapshot(fresh=True).state
        done, total = self.backfiller.done_and_total()
        rate = self._observed_rate(done)
        remaining = max(0, total - done)
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else -1.0)
        throttle = self.throttle.state()
        store = self.record.store
        backfill = BackfillStatus(
            done=done,
            total=total,
            rate=rate,
            eta_s=eta,
            paused=state.phase is Phase.PAUSED,
            throttle_reason=throttle.reason,
            rate_limit=self.throttle.rate_limit,
            lazy_queue=store.queue_size(LAZY_QUEUE),
            pending_repairs=store.queue_size(repair_queue(self.new.name))
            + store.queue_size(repair_queue(self.old.name)),
            complete=self.backfiller.complete(),
            query_p99_ms=(self.latencies.p99() or 0.0) * 1000,
            latency_budget_ms=(self.throttle.latency_budget_s or 0.0) * 1000,
            throttle_duty=throttle.duty,
        )
        return MigrationStatus(
            self.old.name,
            self.new.name,
            state,
            backfill,
            self.coverage(),
            self.traffic_percent(),
            self.storage.sample(),
        )

    def _observed_rate(self, done: int) -> float:
        now = time.monotonic()
        self._progress.append((now, done))
        while len(self._progress) > 2 and now - self._progress[0][0] > 15.0:
            self._progress.popleft()
        (t0, d0), (t1, d1) = self._progress[0], self._progress[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    # -- worker --------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """One unit of backfill work if the phase allows it; returns the documents processed."""
        phase = self._state().phase
        if phase in (Phase.PLANNED, Phase.PAUSED):
            self._resting = True
            self.throttle.pause()
            # Dual writes go on while paused; their repair entries must not pile up until the resume.
            return self.backfiller.drain_repairs()[0] if phase is Phase.PAUSED else 0
        if self._resting:
            self._resting = False
            self.throttle.resume()
        if phase is Phase.OLD_RETIRED:
            return self.storage.drop_batch(self.config.backfill.batch_size * 8)
        result = self.backfiller.step(include_slices=phase in _SLICE_PHASES)
        retired = self._retire() if self._traffic_on_new(phase) else 0
        return result.processed + retired

    def _may_backfill(self) -> bool:
        return not self._stop.is_set() and self._state().phase not in (Phase.PLANNED, Phase.PAUSED)

    def _traffic_on_new(self, phase: Phase) -> bool:
        if self.storage.policy is not StoragePolicy.RETIRE_AS_YOU_GO:
            return False
        return phase is Phase.CUT_OVER or (phase in _SLICE_PHASES and self.traffic_percent() >= 100.0)

    def _retire_moved(self, docs: Sequence[StoredDocument]) -> None:
        if self._traffic_on_new(self._state().phase):
            self.storage.retire(docs)

    def _retire(self) -> int:
        if not self.record.store.try_lease(RETIRE_LEASE, self.owner, self.config.backfill.lease_ttl_s):
            return 0
        retired = self.storage.retire_batch(self.config.backfill.batch_size)
        self._coverage = None
        return retired

    def start_worker(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="switchyard-backfill", daemon=True)
        self._thread.start()

    def stop_worker(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._backfill_embedder is not None:
            self._backfill_embedder.close()

    def _flush_now_and_then(self) -> None:
        """Saves both graphs every FLUSH_INTERVAL_S: restarts replay less, and storage counts the whole graph."""
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_INTERVAL_S:
            self._last_flush = now
            self.old.index.flush()
            self.new.index.flush()

    def _loop(self) -> None:
        self._last_flush = time.monotonic()
        while not self._stop.is_set():
            try:
                processed = self.run_once()
                self._observed_rate(self.backfiller.done_and_total()[0])
                self._flush_now_and_then()
                self.storage.sample()
                for job in self.periodic:
                    job()
            except Unavailable as exc:
                # The state store or an index is down: known, and the message says which; no traceback.
                log.warning("backfill step failed: %s; retrying in 1s", exc)
                processed = 0
                self._stop.wait(1.0)
            except Exception:
                # A failing target pauses the work, not the sidecar; the next round retries.
                log.exception("backfill step failed; retrying in 1s")
                processed = 0
                self._stop.wait(1.0)
            if processed == 0:
                self._stop.wait(0.2)
