"""The migration's shared state as this replica last read it.

Queries read the phase and the split on every request: they get a copy at most STATE_CACHE_S old, the last
one read while the state store is unreachable, and a store that came back without the migration gets it
written back from this copy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from proxy.core.binding import IndexBinding
from proxy.core.errors import Unavailable
from proxy.core.ports import StateStore
from proxy.migration.phases import MigrationState, Phase
from proxy.migration.retirement import StorageTracker
from proxy.migration.state import MigrationRecord

log = logging.getLogger(__name__)

STATE_CACHE_S = 0.5
STALE_WARNING_INTERVAL_S = 10.0


@dataclass(frozen=True)
class StateSnapshot:
    at: float
    """time.monotonic() of the read."""
    state: MigrationState
    fields: Mapping[str, str]
    """The shared migration fields as read (traffic_percent, rate_limit, ...)."""
    retired: int

    def number(self, name: str, default: float) -> float:
        value = self.fields.get(name)
        return float(value) if value not in (None, "") else default


class SharedState:
    """Reads the shared migration state through a short cache that outlives an unreachable store."""

    def __init__(
        self,
        record: MigrationRecord,
        store: StateStore,
        storage: StorageTracker,
        old: IndexBinding,
        new: IndexBinding,
        on_shared_rate: Callable[[float], None],
    ) -> None:
        """`on_shared_rate` gets the backfill rate limit an operator set, whenever a read finds one."""
        self._record = record
        self._store = store
        self._storage = storage
        self._old = old
        self._new = new
        self._on_shared_rate = on_shared_rate
        self._known: StateSnapshot | None = None
        """The shared state as last read: served for STATE_CACHE_S, and while the state store is down."""
        self._last_stale_warning = 0.0

    def state(self) -> MigrationState:
        return self.read().state

    def phase(self) -> Phase:
        return self.read().state.phase

    def read(self, fresh: bool = False) -> StateSnapshot:
        """The shared state, read at most every STATE_CACHE_S; while the store is unreachable, the last
        one read (queries keep their layout and split), unless `fresh` asks for the store's own answer."""
        now = time.monotonic()
        known = self._known
        if known is not None and not fresh and now - known.at <= STATE_CACHE_S:
            return known
        try:
            snapshot = self._read(now, known)
        except Unavailable as exc:
            if known is None or fresh:
                raise
            self._warn_stale(now, exc)
            self._known = replace(known, at=now)  # retried after another STATE_CACHE_S, not per query
            return self._known
        self._known = snapshot
        shared_rate = snapshot.number("rate_limit", -1.0)
        if shared_rate >= 0:
            self._on_shared_rate(shared_rate)
        return snapshot

    def expire(self) -> None:
        """The next read goes to the store (this replica just changed the state there)."""
        if self._known is not None:
            self._known = replace(self._known, at=float("-inf"))

    def _read(self, now: float, known: StateSnapshot | None) -> StateSnapshot:
        state, fields = self._record.snapshot()
        if "phase" not in fields and known is not None and known.state.phase is not Phase.PLANNED:
            self._restore(known)
            state, fields = self._record.snapshot()
        return StateSnapshot(now, state, fields, self._storage.retired_count())

    def _restore(self, known: StateSnapshot) -> None:
        """The store came back without the migration (Redis restarted without persistence): without its
        phase every replica would fall back to `planned` and stop dual writes, so the phase, split and rate
        this replica last saw are written back. Slices and leases are gone too: the backfill plans again,
        and its scan skips what the new index already holds."""
        values = {k: v for k, v in known.fields.items() if k in ("traffic_percent", "rate_limit")}
        reason = "state store lost the migration state; restored from a replica's memory"
        if self._record.restore(known.state, values, reason):
            log.warning("%s: phase %s, %s", reason, known.state.phase.value, values or "default split")
            self._storage.restore_retired_count(max(known.retired, self._storage.retired_count()))
        # The version counter is gone as well: new versions must stay above every one the indexes hold.
        self._store.advance_versions(max(self._old.index.max_version(), self._new.index.max_version()))

    def _warn_stale(self, now: float, error: Exception) -> None:
        if now - self._last_stale_warning > STALE_WARNING_INTERVAL_S:
            self._last_stale_warning = now
            log.warning("state store unreachable; serving the last known migration state: %s", error)
