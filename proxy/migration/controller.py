"""One configured migration on this replica, assembled from its parts.

The parts each do one thing and get what they use through their constructors: the shared state as last read
(snapshot), the coverage gauge, the serving topology the core's VectorService reads, the operator commands,
the status, the automatic promoter and the backfill worker that runs it between batches. This object builds
them in the order they depend on each other and is the one handle the app and the Admin service hold.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from proxy.core.binding import IndexBinding
from proxy.core.model import RoutingMode
from proxy.core.ports import ChangeFeed, StateStore
from proxy.migration.backfill import Backfiller
from proxy.migration.changes import ChangeFollower
from proxy.migration.commands import MigrationCommands
from proxy.migration.coverage import CoverageGauge
from proxy.migration.index_build import SearchIndexBuild
from proxy.migration.phases import MigrationState
from proxy.migration.priority import BackfillEmbedder
from proxy.migration.promoter import Promoter
from proxy.migration.query_stats import QueryStats
from proxy.migration.retirement import OldCopyRetirer, StorageTracker
from proxy.migration.settings import MigrationSettings
from proxy.migration.shadow import ShadowRecorder
from proxy.migration.snapshot import SharedState
from proxy.migration.state import MigrationRecord
from proxy.migration.status import MigrationStatus, ProgressRate, StatusReader
from proxy.migration.throttle import AdaptiveThrottle, LatencyWindow
from proxy.migration.topology import MigrationTopology
from proxy.migration.validation import GoldenQuery
from proxy.migration.worker import BackfillWorker, may_backfill


class MigrationController:
    def __init__(
        self,
        settings: MigrationSettings,
        old: IndexBinding,
        new: IndexBinding,
        store: StateStore,
        owner: str,
        latencies: LatencyWindow,
        shadow: ShadowRecorder,
        *,
        default_traffic_percent: float,
        new_path: RoutingMode,
        golden: Sequence[GoldenQuery] = (),
        backfill_embedder: BackfillEmbedder | None = None,
    ) -> None:
        """`latencies`: the query latencies the backfill throttle reads; `shadow`: the shadow comparisons a
        validation report quotes; `backfill_embedder`: the backfill's own instance of the new model, if any."""
        b = settings.backfill
        self._old = old
        self._new = new
        self.owner = owner
        self.record = MigrationRecord(store)
        self.throttle = AdaptiveThrottle(
            b.rate_limit,
            b.latency_budget_ms / 1000 if b.latency_budget_ms else None,
            latencies,
            batch_time_s=b.batch_time_ms / 1000,
        )
        storage = StorageTracker(old, new, store, settings.storage_policy, store.next_versions)
        shared = SharedState(self.record, store, storage, old, new, self.throttle.set_rate_limit)
        coverage = CoverageGauge(old, new, storage)
        stop = threading.Event()
        retirer = OldCopyRetirer(
            storage,
            store,
            owner,
            shared.phase,
            # What the commands' traffic_percent() reads; they are built after the backfill, which needs this.
            partial(self.record.get_float, "traffic_percent", default_traffic_percent),
            batch_size=b.batch_size,
            lease_ttl_s=b.lease_ttl_s,
            on_retired=coverage.invalidate,
        )
        target = new if backfill_embedder is None else replace(new, embedder=backfill_embedder)
        self.backfiller = Backfiller(
            old,
            target,
            store,
            owner,
            self.throttle,
            batch_size=b.batch_size,
            slice_size=b.slice_size,
            lease_ttl_s=b.lease_ttl_s,
            sleep=stop.wait,
            may_continue=may_backfill(stop, shared),
            on_moved=retirer.retire_moved,
            changes=ChangeFollower(old.index, old, target) if isinstance(old.index, ChangeFeed) else None,
        )
        self.topology = MigrationTopology(
            old, new, shared, coverage, store, settings.lazy, default_traffic_percent, new_path
        )
        """The core's Topology: what the VectorService serves from in the current phase."""
        self.index_build = SearchIndexBuild(
            new.index, self.backfiller.done_and_total, self.backfiller.complete
        )
        """The new index's deferred HNSW build (pgvector `build_index: deferred`); a no-op otherwise."""
        self._commands = MigrationCommands(
            self.record,
            shared,
            storage,
            coverage,
            self.throttle,
            old,
            self.backfiller.complete,
            default_traffic_percent,
            self.index_build.pending,
        )
        progress = ProgressRate()
        self._status = StatusReader(
            old,
            new,
            shared,
            store,
            coverage,
            self.backfiller,
            self.throttle,
            latencies,
            storage,
            progress,
            self._commands.traffic_percent,
            self.index_build.describe,
        )
        self.promoter = Promoter(
            self._commands,
            self.record,
            store,
            owner,
            old,
            new,
            coverage.fresh,
            settings.validation,
            settings.promotion,
            QueryStats(new.name),
            shadow,
            golden,
        )
        self._worker = BackfillWorker(
            shared,
            self.backfiller,
            self.throttle,
            storage,
            retirer,
            progress,
            self.index_build,
            old,
            new,
            batch_size=b.batch_size,
            stop=stop,
            periodic=(self.promoter.tick,),
        )
        self._backfill_embedder = backfill_embedder

    # Read-only: each part holds the bindings it was built with, so replacing one here would change nothing.
    @property
    def old(self) -> IndexBinding:
        return self._old

    @property
    def new(self) -> IndexBinding:
        return self._new

    # -- operator commands ---------------------------------------------------------------------------

    def start(self) -> MigrationState:
        return self._commands.start()

    def pause(self) -> MigrationState:
        return self._commands.pause()

    def resume(self) -> MigrationState:
        return self._commands.resume()

    def transition(self, to_phase: str, force: bool = False, reason: str = "") -> MigrationState:
        return self._commands.transition(to_phase, force, reason)

    def set_rate(self, docs_per_second: float) -> float:
        return self._commands.set_rate(docs_per_second)

    def set_latency_budget(self, budget_ms: float | None) -> None:
        self._commands.set_latency_budget(budget_ms)

    def set_batch_time(self, batch_time_ms: float) -> None:
        self._commands.set_batch_time(batch_time_ms)

    def set_traffic_percent(self, percent: float) -> float:
        return self._commands.set_traffic_percent(percent)

    def traffic_percent(self) -> float:
        return self._commands.traffic_percent()

    def report_passed(self) -> bool:
        return self._commands.report_passed()

    def status(self) -> MigrationStatus:
        return self._status.status()

    # -- backfill worker -----------------------------------------------------------------------------

    def run_once(self) -> int:
        """One unit of backfill work if the phase allows it; returns the documents processed."""
        return self._worker.run_once()

    def start_worker(self) -> None:
        self._worker.start()

    def stop_worker(self, timeout_s: float = 10.0) -> None:
        self._worker.stop(timeout_s)
        self.backfiller.close()
        if self._backfill_embedder is not None:
            self._backfill_embedder.close()
