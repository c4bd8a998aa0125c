"""Storage during a migration: retire old copies as the new index takes them over, and track the peak.

Under `retire_as_you_go`, once traffic is on the new path (every query is answered from the new index for
the documents it holds), a document's old copy serves nobody: it is deleted from the old index and the
index is compacted from time to time, so old + new stays near one copy of the corpus plus a margin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from proxy.core.binding import IndexBinding
from proxy.core.model import StoredDocument
from proxy.core.ports import RetiresInPlace, StateStore
from proxy.migration.phases import SLICE_PHASES, Phase


class StoragePolicy(StrEnum):
    """What happens to a document's old copy once the new index holds it (config, planner and tracker)."""

    KEEP_OLD = "keep_old"
    """Both copies stay until the old index is retired after cut-over: instant rollback, two copies."""
    RETIRE_AS_YOU_GO = "retire_as_you_go"
    """The old copy is deleted once traffic is on the new path: storage stays near one copy."""


STORAGE_KEY = "storage"
RETIRE_CURSOR = "retire_cursor"
RETIRE_LEASE = "retire"
# Compact once this share of the old graph is dead: often enough to bound the peak, rarely enough that the
# rebuild cost stays a small fraction of the backfill.
COMPACT_AT_DEAD_FRACTION = 0.1


@dataclass(frozen=True)
class StorageStatus:
    policy: StoragePolicy
    old_bytes: int
    new_bytes: int
    baseline_bytes: int
    """The old index's size when the migration started: one copy of the corpus."""
    peak_ratio: float
    """Highest (old + new) / baseline seen so far."""
    retired: int


class StorageTracker:
    def __init__(
        self,
        old: IndexBinding,
        new: IndexBinding,
        store: StateStore,
        policy: StoragePolicy,
        next_versions: Callable[[int], int],
    ) -> None:
        self.old = old
        self.new = new
        self.store = store
        self.policy = policy
        self._next_versions = next_versions

    def start(self) -> None:
        """Records one copy's size at the start, the base of the peak ratio."""
        fields = self.store.get_fields(STORAGE_KEY)
        if "baseline_bytes" not in fields:
            self.old.index.flush()  # a settled copy: no journal still waiting to be checkpointed
            self.store.set_fields(STORAGE_KEY, {"baseline_bytes": str(self.old.index.storage_bytes())})

    def sample(self) -> StorageStatus:
        fields = self.store.get_fields(STORAGE_KEY)
        baseline = int(fields.get("baseline_bytes", "0")) or max(1, self.old.index.storage_bytes())
        old_bytes, new_bytes = self.old.index.storage_bytes(), self.new.index.storage_bytes()
        ratio = (old_bytes + new_bytes) / baseline
        peak = max(ratio, float(fields.get("peak_ratio", "0")))
        if peak > float(fields.get("peak_ratio", "0")):
            self.store.set_fields(STORAGE_KEY, {"peak_ratio": repr(peak)})
        retired = int(fields.get("retired", "0"))
        return StorageStatus(self.policy, old_bytes, new_bytes, baseline, peak, retired)

    def retired_count(self) -> int:
        return int(self.store.get_fields(STORAGE_KEY).get("retired", "0"))

    def restore_retired_count(self, retired: int) -> None:
        """Writes back the count a replica remembers, into a state store that lost it."""
        self.store.set_fields(STORAGE_KEY, {"retired": str(retired)})

    def retire_batch(self, batch: int) -> int:
        """Sweeps the old index for copies the new index already holds (dual-written or lazily moved ones).

        Walks with a cursor kept in shared state and starts over at the end, so documents rewritten (dual
        write brings the old copy back) are retired again on a later pass.
        """
        cursor = self.store.get_fields(STORAGE_KEY).get(RETIRE_CURSOR) or None
        page = self.old.index.scan(cursor, batch)
        self.store.set_fields(STORAGE_KEY, {RETIRE_CURSOR: page[-1].id if page else ""})
        return self.retire(page)

    def retire(self, docs: Sequence[StoredDocument]) -> int:
        """Deletes the old copies of `docs` that the new index holds at the same or a newer version."""
        held = self.new.index.versions([d.id for d in docs])
        moved = [d.id for d in docs if held.get(d.id, -1) >= d.version]
        # Only copies still there count: the backfill hands over batches it read a step earlier (its stages
        # overlap), which the sweep may have retired meanwhile, and a copy retired twice must not count twice.
        movable = [d.id for d in self.old.index.get(moved)] if moved else []
        if movable:
            # A fresh version: the tombstone must be newer than the copy it removes (version compare-and-set).
            self.old.index.delete(movable, self._next_versions(1))
            retired = self.retired_count() + len(movable)
            self.store.set_fields(STORAGE_KEY, {"retired": str(retired)})
        if self.old.index.dead_fraction() >= COMPACT_AT_DEAD_FRACTION:
            self.old.index.compact()
        return len(movable)

    def drop_batch(self, batch: int) -> int:
        """After `old_retired`: deletes what is left of the old index, then compacts it to give the space back.

        An application's table served in place keeps its rows (they are the application's): only the old
        model's vectors go, column and index, once."""
        if isinstance(self.old.index, RetiresInPlace):
            return int(self.old.index.retire_vectors())
        page = self.old.index.scan(None, batch)
        if page:
            self.old.index.delete([d.id for d in page], self._next_versions(1))
        elif self.old.index.dead_fraction() > 0:
            self.old.index.compact()
        return len(page)


class OldCopyRetirer:
    """When old copies go: under retire_as_you_go, once traffic is on the new path, both the copies each
    backfill batch moved and, under a lease one replica at a time, a sweep of the rest."""

    def __init__(
        self,
        storage: StorageTracker,
        store: StateStore,
        owner: str,
        phase: Callable[[], Phase],
        traffic_percent: Callable[[], float],
        *,
        batch_size: int,
        lease_ttl_s: float,
        on_retired: Callable[[], None],
    ) -> None:
        """`on_retired` is called after each sweep batch (the retired documents change the coverage)."""
        self._storage = storage
        self._store = store
        self._owner = owner
        self._phase = phase
        self._traffic_percent = traffic_percent
        self._batch_size = batch_size
        self._lease_ttl_s = lease_ttl_s
        self._on_retired = on_retired

    def traffic_on_new(self, phase: Phase) -> bool:
        if self._storage.policy is not StoragePolicy.RETIRE_AS_YOU_GO:
            return False
        return phase is Phase.CUT_OVER or (phase in SLICE_PHASES and self._traffic_percent() >= 100.0)

    def retire_moved(self, docs: Sequence[StoredDocument]) -> None:
        """The backfill's `on_moved`: the old copies of a batch it just moved."""
        if self.traffic_on_new(self._phase()):
            self._storage.retire(docs)

    def sweep(self) -> int:
        """One batch of the sweep, if this replica holds the lease; returns the copies retired."""
        if not self._store.try_lease(RETIRE_LEASE, self._owner, self._lease_ttl_s):
            return 0
        retired = self._storage.retire_batch(self._batch_size)
        self._on_retired()
        return retired
