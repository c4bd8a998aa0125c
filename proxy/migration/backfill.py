"""Progressive backfill: re-embed the old index's documents into the new one, slice by slice.

The corpus is cut into id-range slices when the backfill starts. A replica works a slice only while it
holds that slice's lease, and checkpoints the slice's cursor after every batch, so a killed replica's
slice is resumed by whoever takes the lease next, from its last finished batch. Hot documents (touched by
queries) and dual writes not yet confirmed on their secondary index (repairs) are drained ahead of the slices.

Slice batches are pipelined (`pipeline.WriteBehind`): each step writes the batch embedded by the step before
while it embeds the next, and checkpoints only what it wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

from proxy.core.binding import IndexBinding
from proxy.core.errors import Unavailable
from proxy.core.model import StoredDocument, WriteResult
from proxy.core.ports import StateStore, id_order
from proxy.migration.changes import ChangeFollower
from proxy.migration.pipeline import WriteBehind
from proxy.migration.records import embed_records, needing_reembed
from proxy.migration.slices import SLICES_KEY, Slice, SliceBatch, dump_slice, load_slice, plan_slices
from proxy.migration.state import LAZY_QUEUE, REPAIR_PRIORITY, PendingWrite, repair_queue
from proxy.migration.throttle import AdaptiveThrottle

PLAN_LEASE = "backfill:plan"
PROGRESS_KEY = "backfill:progress"
# A pending write the primary does not hold yet is looked at again until it is this old; then its write is
# known to have failed before reaching the primary. Far longer than any primary write takes.
PENDING_SETTLE_S = 30.0
REPAIR_ROUNDS = 16


@dataclass(frozen=True)
class _SliceWrite:
    result: WriteResult
    checkpointed: bool
    """False: the slice is no longer this replica's to move on (lease lost, or moved on elsewhere)."""


@dataclass(frozen=True)
class StepResult:
    kind: str
    """"lazy", "repair", "changes", "slice" or "idle"."""
    processed: int
    written: int


def reembed(docs: Sequence[StoredDocument], target: IndexBinding) -> WriteResult:
    """Writes each document's current text, embedded in the target's model, at the document's own version.

    The index's version check makes this safe against races: if a client wrote or deleted the id since
    `docs` were read, the newer version wins and this write is reported stale.
    """
    if not docs:
        return WriteResult()
    return target.index.upsert(embed_records(docs, target.embedder))


class Backfiller:
    """One replica's share of the backfill; `step()` does one batch of work and is safe to call from a loop.

    Not for several threads at once: one worker steps it (its write stage has a thread of its own inside).
    """

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
        sleep: Callable[[float], object] = time.sleep,
        may_continue: Callable[[], bool] = lambda: True,
        on_moved: Callable[[Sequence[StoredDocument]], None] = lambda docs: None,
        changes: ChangeFollower | None = None,
    ) -> None:
        """`may_continue` is asked while waiting for the throttle and between a slice batch's two stages:
        False (paused, stopping) ends the step without starting another stage. `on_moved` is called with each
        written slice batch (the storage policy retires their old copies). `changes`: the direct writes to an
        application's table served in place, which are followed like lazy moves, within the throttle."""
        self.source = source
        self.target = target
        self.store = store
        self.owner = owner
        self.throttle = throttle
        self.batch_size = batch_size
        self.slice_size = slice_size
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._sleep = sleep
        self._may_continue = may_continue
        self._on_moved = on_moved
        self._changes = changes
        self.local_reembedded = 0
        """Documents this replica wrote to the target (for proving replicas split the work)."""
        self._id_key = id_order(source.index)
        """The source's scan order (an adopted table's bigint key is not in string order)."""
        self._ahead: WriteBehind[SliceBatch, _SliceWrite] = WriteBehind()
        self._reading: Slice | None = None
        """The slice being read ahead of its checkpoint, as it stands once every embedded batch is written
        (None: pick the next slice to lease)."""

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
                self.store.set_fields(SLICES_KEY, {s.field(): dump_slice(s) for s in planned})
        finally:
            self.store.release_lease(PLAN_LEASE, self.owner)
        return self.slices()

    def slices(self) -> list[Slice]:
        raw = self.store.get_fields(SLICES_KEY)
        return sorted((load_slice(v) for v in raw.values()), key=lambda s: s.number)

    # -- work ------------------------------------------------------------------------------------------

    def step(self, include_slices: bool = True) -> StepResult:
        """Repairs first, then lazy ids, then the next batch of a slice this replica can lease."""
        # Repairs go first, unthrottled: a secondary missing a write is a consistency gap, and nearly every entry
        # only confirms a dual write that landed, so they are cheap. Such confirmations must not hold up the
        # rest of the step, or a steady stream of writes would starve the backfill.
        checked, repaired = self.drain_repairs()
        if repaired:
            return StepResult("repair", checked, repaired)
        turn, rest_checked, repaired = self._await_turn()
        checked += rest_checked
        if repaired:
            return StepResult("repair", checked, repaired)
        if not turn:
            return StepResult("repair", checked, 0) if checked else StepResult("idle", 0, 0)
        processed, written = self._drain_lazy()
        if processed:
            return StepResult("lazy", processed + checked, written)
        processed, written = self.follow_changes()
        if processed:
            return StepResult("changes", processed + checked, written)
        if include_slices and (result := self._slice_step()) is not None:
            return replace(result, processed=result.processed + checked)
        return StepResult("repair", checked, 0) if checked else StepResult("idle", 0, 0)

    def complete(self) -> bool:
        slices = self.slices()
        return bool(slices) and all(s.finished for s in slices)

    def close(self) -> None:
        """Ends the write stage's thread once the worker has stopped stepping, and hands back the slice leases
        this replica holds: a restarted sidecar has a new owner id and would otherwise wait out the lease
        before it resumes those slices from their checkpoints."""
        self._ahead.close()
        held = [b.checkpoint for b in self._ahead.waiting()]
        if self._reading is not None:
            held.append(self._reading)
        with suppress(Unavailable):  # a store that is down lets the leases expire on their own
            for slice_ in held:
                self.store.release_lease(slice_.lease_name(), self.owner)

    def _await_turn(self) -> tuple[bool, int, int]:
        """Waits until the throttle lets the next batch start, draining repairs meanwhile.

        Returns (whether the batch may start, repair entries settled, documents repaired); the wait ends early
        when `may_continue` says stop or a repair wrote documents (the step reports that instead).
        """
        checked = 0
        while (delay := self.throttle.delay()) > 0:
            if not self._may_continue():
                return False, checked, 0
            # In short steps: a pause must not wait out a long rest, a rising duty shortens the rest, and
            # confirmations of dual writes must not wait for the backfill's turn.
            self._sleep(min(delay, 0.25))
            settled, repaired = self.drain_repairs()
            checked += settled
            if repaired:
                return False, checked, repaired
        return self._may_continue(), checked, 0

    def _batch_size(self) -> int:
        # Sized to the throttle's batch time only where embedding competes with queries for this machine's
        # cores: a remote embedder's batch is mostly a round trip, and cutting it would only multiply them.
        if self.target.embedder.in_process:
            return self.throttle.batch_size(self.batch_size)
        return self.batch_size

    def _drain_lazy(self) -> tuple[int, int]:
        # Hot documents go first, but within the same throttle: a burst of queries must not turn into a burst
        # of embedding load on the serving path.
        started = self._clock()
        ids = self.store.dequeue(LAZY_QUEUE, self._batch_size())
        if not ids:
            return 0, 0
        docs = needing_reembed(self.source.index.get(ids), self.target.index)
        # A document embedded and waiting in the pipeline at this version goes now with the vector it has: hot
        # documents must not wait for the slice step (queries would keep asking for them), nor be embedded twice.
        ready = {(r.id, r.version): r for b in self._ahead.waiting() for r in b.records}
        to_embed = [d for d in docs if (d.id, d.version) not in ready]
        records = [ready[d.id, d.version] for d in docs if (d.id, d.version) in ready]
        records += embed_records(to_embed, self.target.embedder)
        written = len(self.target.index.upsert(records).written) if records else 0
        self.local_reembedded += written
        self.throttle.record_batch(len(ids), len(to_embed), self._clock() - started)
        return len(ids), written

    def follow_changes(self) -> tuple[int, int]:
        """Carries the application's direct writes into the target (see `ChangeFollower`); (settled, written)."""
        if self._changes is None:
            return 0, 0
        started = self._clock()
        processed, written = self._changes.step(self._batch_size())
        if processed:
            self.throttle.record_batch(processed, written, self._clock() - started)
        return processed, written

    def pending_changes(self) -> int:
        return 0 if self._changes is None else self._changes.pending()

    def drain_repairs(self) -> tuple[int, int]:
        """Checks pending dual writes in both directions (the new index from the old one, the old from the new
        after cut-over); returns (entries settled, documents written).

        Several batches at a time: the queue takes an entry per written document, and nearly every entry only
        confirms a write that landed (two version lookups), so one batch per throttled slice batch would fall
        behind a steady stream of writes.
        """
        checked = written = 0
        for _ in range(REPAIR_ROUNDS):
            forward, forward_written = self._repair(self.source, self.target)
            back, back_written = self._repair(self.target, self.source)
            checked, written = checked + forward + back, written + forward_written + back_written
            if forward < self.batch_size and back < self.batch_size:
                break
        return checked, written

    def _repair(self, primary: IndexBinding, secondary: IndexBinding) -> tuple[int, int]:
        queue = repair_queue(secondary.name)
        members = self.store.dequeue(queue, self.batch_size)
        if not members:
            return 0, 0
        try:
            waiting, written = self._carry_over(primary, secondary, [PendingWrite.parse(m) for m in members])
        except Exception:
            # A failing index must not cost the repairs: they go back to the queue for the next round.
            self.store.enqueue(queue, members, REPAIR_PRIORITY)
            raise
        if waiting:
            self.store.enqueue(queue, waiting, REPAIR_PRIORITY)
        return len(members) - len(waiting), written

    def _carry_over(
        self, primary: IndexBinding, secondary: IndexBinding, pending: Sequence[PendingWrite]
    ) -> tuple[list[str], int]:
        """Copies each pending write the primary holds, at its version, to a secondary that lacks it.

        Returns (entries to look at again, documents written).
        """
        ids = list(dict.fromkeys(p.id for p in pending))
        in_primary, in_secondary = primary.index.versions(ids), secondary.index.versions(ids)
        live = {d.id: d for d in primary.index.get(ids)}
        copies: dict[str, StoredDocument] = {}
        tombstones: dict[int, list[str]] = {}
        waiting: list[str] = []
        now = time.time()
        for entry in pending:
            held = in_primary.get(entry.id, -1)
            if held < entry.version:
                # Not in the primary (yet): still being written, or failed before it got there.
                if now - entry.at < PENDING_SETTLE_S:
                    waiting.append(entry.member())
            elif held == entry.version and in_secondary.get(entry.id, -1) < held:
                if entry.id in live:
                    copies[entry.id] = live[entry.id]
                else:
                    tombstones.setdefault(held, []).append(entry.id)
            # held > entry.version: a later write superseded it, and that write has its own entry.
        written = self._write(list(copies.values()), secondary)
        for version, deleted in tombstones.items():
            secondary.index.delete(deleted, version)
        return waiting, written

    # -- slices, pipelined ----------------------------------------------------------------------------

    def _slice_step(self) -> StepResult | None:
        """Writes the oldest embedded slice batch while embedding the next; None when no slice has work here.

        With nothing embedded yet (the first batch, after a failed embedding, or once a lost slice's batches
        were dropped) it embeds one first, so every step writes a batch as before the stages overlapped.
        """
        started = self._clock()
        embedded: list[SliceBatch] = []
        if not self._ahead.waiting():
            first = self._embed_next()
            if first is None:
                return None
            self._ahead.push(first)
            embedded.append(first)
            if not self._may_continue():
                # Paused or stopping between the stages: the batch waits, embedded, for the next step.
                self._record(embedded, None, started)
                return StepResult("slice", 0, 0)
        beat = self._ahead.beat(self._write_batch, self._embed_next)
        if beat.embedded is not None:
            embedded.append(beat.embedded)
        written = 0
        if beat.written is not None and beat.result is not None:
            written = len(beat.result.result.written)
            self.local_reembedded += written
            if not beat.result.checkpointed:
                self._forget_slice(beat.written.checkpoint.number)
            # Here rather than on the write thread: a failure retiring old copies must not send back a batch
            # that is written and checkpointed.
            self._on_moved(beat.written.docs)
        if beat.error is not None:
            raise beat.error
        self._record(embedded, beat.written, started)
        return StepResult("slice", len(beat.written.docs) if beat.written else 0, written)

    def _record(self, embedded: Sequence[SliceBatch], written: SliceBatch | None, started: float) -> None:
        # The step's wall time, from its first stage's start to its last one's end, with the overlap counted
        # once: the duty is a share of time, and what the queries meet is a burst of backfill work that long
        # (its batch time too). Summing the stages would rest the pipeline as if they ran one after the other;
        # if the heavier burst costs the queries more, their p99 lowers the duty. The rate limit counts every
        # document embedded in the step, from the step's start.
        last = embedded[-1] if embedded else written
        scanned = last.scanned if last is not None else 0
        self.throttle.record_batch(scanned, sum(len(b.records) for b in embedded), self._clock() - started)

    def _embed_next(self) -> SliceBatch | None:
        """Reads and embeds the next page of the slice being read, or of the next slice this replica can lease.

        The embedding stage: runs on the step's thread while the write thread writes the batch before.
        """
        slice_ = self._slice_to_read()
        if slice_ is None:
            return None
        size = self._batch_size()
        page = self.source.index.scan(slice_.cursor, size)
        key = self._id_key
        in_range = [d for d in page if slice_.until is None or key(d.id) <= key(slice_.until)]
        finished = len(in_range) < len(page) or len(page) < size
        records = embed_records(needing_reembed(in_range, self.target.index), self.target.embedder)
        checkpoint = slice_.advanced(in_range, finished)
        self._reading = None if finished else checkpoint
        return SliceBatch(slice_, checkpoint, tuple(in_range), tuple(records), len(page))

    def _slice_to_read(self) -> Slice | None:
        """The slice being read, its lease renewed, else the first unfinished one not yet read out here."""
        if self._reading is not None:
            if self.store.try_lease(self._reading.lease_name(), self.owner, self.lease_ttl_s):
                return self._reading
            # Another replica took it over. What waits of it is dropped when its checkpoint is refused (not
            # here: this runs during a beat, whose batches are the write thread's until it ends).
            self._reading = None
        read_out = {b.checkpoint.number for b in self._ahead.waiting()}
        for slice_ in self.ensure_plan():
            if (
                not slice_.finished
                and slice_.number not in read_out
                and self.store.try_lease(slice_.lease_name(), self.owner, self.lease_ttl_s)
            ):
                return slice_
        return None

    def _write_batch(self, batch: SliceBatch) -> _SliceWrite:
        """Writes an embedded batch and checkpoints its slice: the write stage, on the write thread."""
        result = self.target.index.upsert(batch.records) if batch.records else WriteResult()
        slice_ = batch.checkpoint
        # Checkpoint only while holding the lease, and only from the cursor this batch was read after: a
        # replica that lost the slice, even for a while (a throttle rest longer than the lease), must not move
        # its cursor, least of all back over what another replica did meanwhile.
        checkpointed = self.store.try_lease(
            slice_.lease_name(), self.owner, self.lease_ttl_s
        ) and self.store.compare_and_set_field(
            SLICES_KEY, slice_.field(), dump_slice(batch.base), dump_slice(slice_)
        )
        if slice_.finished:
            self.store.release_lease(slice_.lease_name(), self.owner)
        return _SliceWrite(result, checkpointed)

    def _forget_slice(self, number: int) -> None:
        """Drops what was read ahead in a slice this replica no longer works: it goes on from its checkpoint."""
        self._ahead.forget(lambda batch: batch.checkpoint.number == number)
        if self._reading is not None and self._reading.number == number:
            self._reading = None

    def _write(self, docs: Sequence[StoredDocument], target: IndexBinding | None = None) -> int:
        result = reembed(docs, target or self.target)
        self.local_reembedded += len(result.written)
        return len(result.written)

    # -- progress --------------------------------------------------------------------------------------

    def done_and_total(self) -> tuple[int, int]:
        slices = self.slices()
        done = sum(s.done for s in slices)
        total_field = self.store.get_fields(PROGRESS_KEY).get("total")
        total = int(total_field) if total_field else self.source.index.count()
        # Documents added after planning land in the open last slice; never report done > total.
        return done, max(total, done)
