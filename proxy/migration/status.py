"""Where the migration stands, for operators and metrics: phase, backfill progress, rate and ETA, storage."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from proxy.core.binding import IndexBinding
from proxy.core.model import EmbedderLoad
from proxy.core.ports import ReportsLoad, StateStore
from proxy.migration.backfill import Backfiller
from proxy.migration.coverage import CoverageGauge
from proxy.migration.phases import MigrationState, Phase
from proxy.migration.retirement import StorageStatus, StorageTracker
from proxy.migration.snapshot import SharedState
from proxy.migration.state import LAZY_QUEUE, repair_queue
from proxy.migration.throttle import AdaptiveThrottle, LatencyWindow

RATE_WINDOW_S = 15.0


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
    direct_writes_pending: int = 0
    """An adopted table's direct writes not yet carried into the new index."""
    """Share of the time the latency throttle lets the backfill work."""


@dataclass(frozen=True)
class MigrationStatus:
    old_index: str
    new_index: str
    state: MigrationState
    backfill: BackfillStatus
    coverage: float
    traffic_percent: float
    storage: StorageStatus
    new_model_load: EmbedderLoad | None = None
    """The new index's embedder against its limits, when it calls a remote API."""
    new_model: str = ""
    search_index: str = "built"
    """The new index's deferred HNSW index (pgvector `build_index: deferred`): "built", "not built (...)", or
    "building (phase, done/total)"; "built" for every other index."""


class ProgressRate:
    """Backfill documents per second over the last RATE_WINDOW_S, from the done counts observed."""

    def __init__(self) -> None:
        self._progress: deque[tuple[float, int]] = deque(maxlen=30)

    def observe(self, done: int) -> float:
        now = time.monotonic()
        self._progress.append((now, done))
        while len(self._progress) > 2 and now - self._progress[0][0] > RATE_WINDOW_S:
            self._progress.popleft()
        (t0, d0), (t1, d1) = self._progress[0], self._progress[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


class StatusReader:
    """Builds a MigrationStatus from the store's own answer (never the cached one queries use)."""

    def __init__(
        self,
        old: IndexBinding,
        new: IndexBinding,
        shared: SharedState,
        store: StateStore,
        coverage: CoverageGauge,
        backfiller: Backfiller,
        throttle: AdaptiveThrottle,
        latencies: LatencyWindow,
        storage: StorageTracker,
        progress: ProgressRate,
        traffic_percent: Callable[[], float],
        search_index: Callable[[], str],
    ) -> None:
        self._old = old
        self._new = new
        self._shared = shared
        self._store = store
        self._coverage = coverage
        self._backfiller = backfiller
        self._throttle = throttle
        self._latencies = latencies
        self._storage = storage
        self._progress = progress
        self._traffic_percent = traffic_percent
        self._search_index = search_index

    def status(self) -> MigrationStatus:
        self._coverage.invalidate()
        state = self._shared.read(fresh=True).state
        return MigrationStatus(
            self._old.name,
            self._new.name,
            state,
            self._backfill(state),
            self._coverage.value(),
            self._traffic_percent(),
            self._storage.sample(),
            self._new.embedder.load() if isinstance(self._new.embedder, ReportsLoad) else None,
            self._new.embedder.model,
            self._search_index(),
        )

    def _backfill(self, state: MigrationState) -> BackfillStatus:
        done, total = self._backfiller.done_and_total()
        rate = self._progress.observe(done)
        remaining = max(0, total - done)
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else -1.0)
        throttle = self._throttle.state()
        store = self._store
        return BackfillStatus(
            done=done,
            total=total,
            rate=rate,
            eta_s=eta,
            paused=state.phase is Phase.PAUSED,
            throttle_reason=throttle.reason,
            rate_limit=self._throttle.rate_limit,
            lazy_queue=store.queue_size(LAZY_QUEUE),
            pending_repairs=store.queue_size(repair_queue(self._new.name))
            + store.queue_size(repair_queue(self._old.name)),
            complete=self._backfiller.complete(),
            query_p99_ms=(self._latencies.p99() or 0.0) * 1000,
            latency_budget_ms=(self._throttle.latency_budget_s or 0.0) * 1000,
            throttle_duty=throttle.duty,
            direct_writes_pending=self._backfiller.pending_changes(),
        )
