"""Progressive backfill: re-embed the old index's documents into the new one, slice by slice.

The corpus is cut into id-range slices when the backfill starts. A replica works a slice only while it
holds that slice's lease, and checkpoints the slice's cursor after every batch, so a killed replica's
slice is resumed by whoever takes the lease next, from its last finished batch. Hot documents (touched by
queries) and writes that failed on one side (repairs) are drained ahead of the slices.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from proxy.core.binding import IndexBinding
from proxy.core.model import IndexRecord, StoredDocument, WriteResult
from proxy.migration.state import LAZY_QUEUE, repair_queue
from proxy.migration.throttle import AdaptiveThrottle
from proxy.ports import StateStore

SLICES_KEY = "backfill:slices"
PLAN_LEASE = "backfill:plan"
PROGRESS_KEY = "backfill:progress"


@dataclass(frozen=True)
class Slice:
    number: int
    after: str | None
    """Exclusive lower bound of the slice's id range (None: from the first id)."""
    until: str | None
    """Inclusive upper bound (None: to the last id)."""
    cursor: str | None
    done: int = 0
    finished: bool = False

    def lease_name(self) -> str:
        return f"backfill:slice:{self.number}"


@dataclass(frozen=True)
class StepResult:
    kind: str
    """"lazy", "repair", "slice" or "idle"."""
    processed: int
    written: int


def reembed(docs: Sequence[StoredDocument], target: IndexBinding) -> WriteResult:
    """Writes each document's current text, embedded in the target's model, at the document's own version.

    The index's version check makes this safe against races: if a client wrote or deleted the id since
    `docs` were read, the newer version wins and this write is reported stale.
    """
    if not docs:
        return WriteResult()
    vectors = target.embedder.embed([d.text for d in docs])
    records = [
        IndexRecord(d.id, d.version, d.text, d.metadata, v) for d, v in zip(docs, vectors, strict=True)
    ]
    return target.index.upsert(records)


def plan_slices(source: IndexBinding, slice_size: int) -> list[Slice]:
    """Cuts the source's id space into ranges of about `slice_size` documents; the last range is open."""
    bounds: list[str] = []
    after: str | None = None
    while True:
        page = source.index.scan(after, slice_size)
        if len(page) < slice_size:
            break
        after = page[-1].id
        bounds.append(after)
    lows: list[str | None] = [None, *bounds]
    highs: list[str | None] = [*bounds, None]
    return [Slice(n, lo, hi, lo) for n, (lo, hi) in enumerate(zip(lows, highs, strict=True))]


class Backfiller:
    """One replica's share of the backfill; `step()` does one batch of work and is safe to call from a loop."""

    def __init__(
        self,
        source: IndexBinding,
        target: IndexBinding,
        store: StateStore,
        owner: str,
        throttle: AdaptiveThrottle,
        *,
        batch_size: int = 64,
        slice_size: int = 2000,
        lease_ttl_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.target = target
        self.store = store
        self.owner = owner
        self.throttle = throttle
        self.batch_size = batch_size
        self.slice_size = slice_size
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._unthrottled_rate = 0.0
        self.local_reembedded = 0
        """Documents this replica wrote to the target (for proving replicas split the work)."""
        self.on_moved: Callable[[Sequence[StoredDocument]], None] | None = None
        """Called with each finished slice batch (the storage policy retires their old copies)."""

    # -- plan ------------------------------------------------------------------------------------------

    def ensure_plan(self) -> list[Slice]:
        slices = self.slices()
        if slices:
            return slices
        if not self.store.try_lease(PLAN_LEASE, self.owner, self.lease_ttl_s):
            return []  # another replica is planning; its slices appear shortly
        try:
            if not self.slices():
                planned = plan_slices(self.source, self.slice_size)
                self.store.set_fields(PROGRESS_KEY, {"total": str(self.source.index.count())})
                self.store.set_fields(SLICES_KEY, {str(s.number): _dump(s) for s in planned})
        finally:
            self.store.release_lease(PLAN_LEASE, self.owner)
        return self.slices()

    def slices(self) -> list[Slice]:
        raw = self.store.get_fields(SLICES_KEY)
        return sorted((_load(v) for v in raw.values()), key=lambda s: s.number)

    # -- work ------------------------------------------------------------------------------------------

    def step(self, include_slices: bool = True) -> StepResult:
        """Lazy ids first, then repairs, then the next batch of a slice this replica can lease."""
        for kind, result in (("lazy", self._drain_lazy), ("repair", self._drain_repairs)):
            processed, written = result()
            if processed:
                return StepResult(kind, processed, written)
        if include_slices:
            for slice_ in self.ensure_plan():
                if not slice_.finished and self.store.try_lease(
                    slice_.lease_name(), self.owner, self.lease_ttl_s
                ):
                    return self._slice_batch(slice_)
        return StepResult("idle", 0, 0)

    def complete(self) -> bool:
        slices = self.slices()
        return bool(slices) and all(s.finished for s in slices)

    def _drain_lazy(self) -> tuple[int, int]:
        ids = self.store.dequeue(LAZY_QUEUE, self.batch_size)
        if not ids:
            return 0, 0
        docs = self._needing_reembed(self.source.index.get(ids))
        # Hot documents go first, but within the same budget: a burst of queries must not turn into a burst
        # of embedding load on the serving path.
        self.throttle.wait_for(len(docs))
        written = self._write(docs)
        return len(ids), written

    def _drain_repairs(self) -> tuple[int, int]:
        ids = self.store.dequeue(repair_queue(self.target.name), self.batch_size)
        if not ids:
            return 0, 0
        written = self._write(self.source.index.get(ids))
        # Ids the source no longer holds were deleted there: carry the tombstone over so they stay gone.
        source_versions = self.source.index.versions(ids)
        live = {d.id for d in self.source.index.get(ids)}
        for doc_id in ids:
            if doc_id not in live and doc_id in source_versions:
                self.target.index.delete([doc_id], source_versions[doc_id])
        return len(ids), written

    def _slice_batch(self, slice_: Slice) -> StepResult:
        page = self.source.index.scan(slice_.cursor, self.batch_size)
        in_range = [d for d in page if slice_.until is None or d.id <= slice_.until]
        finished = len(in_range) < len(page) or len(page) < self.batch_size
        docs = self._needing_reembed(in_range)
        self.throttle.wait_for(len(docs))
        started = self._clock()
        written = self._write(docs)
        self._note_speed(len(docs), self._clock() - started)
        cursor = in_range[-1].id if in_range else slice_.cursor
        updated = Slice(
            slice_.number, slice_.after, slice_.until, cursor, slice_.done + len(in_range), finished
        )
        # Checkpoint only while still holding the lease: a replica that lost it must not move the cursor.
        if self.store.try_lease(slice_.lease_name(), self.owner, self.lease_ttl_s):
            self.store.set_fields(SLICES_KEY, {str(slice_.number): _dump(updated)})
        if finished:
            self.store.release_lease(slice_.lease_name(), self.owner)
        if self.on_moved is not None:
            self.on_moved(in_range)
        return StepResult("slice", len(in_range), written)

    def _needing_reembed(self, docs: Sequence[StoredDocument]) -> list[StoredDocument]:
        """Skips documents the target already holds at this version (dual-written or moved lazily)."""
        held = self.target.index.versions([d.id for d in docs])
        return [d for d in docs if held.get(d.id, -1) < d.version]

    def _write(self, docs: Sequence[StoredDocument]) -> int:
        result = reembed(docs, self.target)
        self.local_reembedded += len(result.written)
        return len(result.written)

    def _note_speed(self, docs: int, seconds: float) -> None:
        if docs and seconds > 0:
            current = docs / seconds
            self._unthrottled_rate = (
                current if not self._unthrottled_rate else 0.8 * self._unthrottled_rate + 0.2 * current
            )
        self.throttle.adjust(self._unthrottled_rate)

    # -- progress --------------------------------------------------------------------------------------

    def done_and_total(self) -> tuple[int, int]:
        slices = self.slices()
        done = sum(s.done for s in slices)
        total_field = self.store.get_fields(PROGRESS_KEY).get("total")
        total = int(total_field) if total_field else self.source.index.count()
        # Documents added after planning land in the open last slice; never report done > total.
        return done, max(total, done)


def _dump(slice_: Slice) -> str:
    return json.dumps(asdict(slice_))


def _load(raw: str) -> Slice:
    return Slice(**json.loads(raw))
