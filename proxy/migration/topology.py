"""The core's Topology during a migration: which index serves and takes writes in the current phase."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import suppress

from proxy.core.binding import IndexBinding
from proxy.core.errors import Unavailable
from proxy.core.model import IndexRecord, RoutingMode
from proxy.core.ports import StateStore
from proxy.core.topology import Layout
from proxy.migration.backfill import reembed
from proxy.migration.coverage import CoverageGauge
from proxy.migration.phases import DUAL_WRITE_PHASES, Phase
from proxy.migration.settings import LazySettings
from proxy.migration.snapshot import SharedState
from proxy.migration.state import LAZY_QUEUE, REPAIR_PRIORITY, PendingWrite, repair_queue


class MigrationTopology:
    def __init__(
        self,
        old: IndexBinding,
        new: IndexBinding,
        shared: SharedState,
        coverage: CoverageGauge,
        store: StateStore,
        lazy: LazySettings,
        default_traffic_percent: float,
        new_path: RoutingMode,
    ) -> None:
        self.old = old
        self.new = new
        self._shared = shared
        self._coverage = coverage
        self._store = store
        self._lazy = lazy
        self._default_percent = default_traffic_percent
        self._new_path = new_path

    def layout(self) -> Layout:
        known = self._shared.read()
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
        return self._coverage.value()

    def record_uncovered(self, ids: Sequence[str]) -> None:
        if not self._lazy.enabled or self._shared.phase() not in DUAL_WRITE_PHASES:
            return
        # Lazy moves only speed the migration up: a query must not fail because the queue is unreachable.
        with suppress(Unavailable):
            # Most recently touched first: the documents queries hit now are the ones worth moving now.
            self._store.enqueue(LAZY_QUEUE, ids, time.time())

    def record_pending(self, index: str, versions: Mapping[str, int]) -> None:
        members = PendingWrite.members(versions, time.time())
        self._store.enqueue(repair_queue(index), members, REPAIR_PRIORITY)

    def reembed_now(self, ids: Sequence[str]) -> int:
        if self._shared.phase() not in DUAL_WRITE_PHASES:
            return 0
        return len(reembed(self.old.index.get(ids), self.new).written)

    def write_moved(self, records: Sequence[IndexRecord]) -> int:
        """Writes documents embedded at query time (candidate re-ranking) to the new index; returns how many.

        Each record carries the version it was read at, so the index's version check lets a newer client
        write or a delete win over it.
        """
        if not records or self._shared.phase() not in DUAL_WRITE_PHASES:
            return 0
        return len(self.new.index.upsert(records).written)
