"""The pipelined backfill in process: hashing models, hnswlib indexes and a local state store in a tmp dir.

Each slice step writes the batch embedded by the step before while it embeds the next. These tests pin what the
overlap must not change: checkpoints exact after a failure in either stage, nothing embedded twice, a pause
between the stages stops the pipeline, a replica that lost its slice does not move its cursor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.hnsw import HnswIndex
from proxy.adapters.state.local_store import LocalStateStore
from proxy.core.binding import IndexBinding
from proxy.core.model import IndexRecord, Vector, WriteResult
from proxy.migration.backfill import Backfiller
from proxy.migration.retirement import StoragePolicy, StorageTracker
from proxy.migration.slices import SLICES_KEY, Slice, dump_slice, load_slice
from proxy.migration.state import LAZY_QUEUE
from proxy.migration.throttle import AdaptiveThrottle, LatencyWindow

DIM = 16
BATCH = 10


@dataclass
class _Stages:
    """What each stage did, in order, with a logical clock: an interval is (tick at entry, tick at exit)."""

    embeds: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)
    """(entered, left, texts) per embedding call."""
    writes: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)
    """(entered, left, ids) per upsert call."""
    _tick: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self) -> int:
        with self._lock:
            self._tick += 1
            return self._tick

    def embedded_texts(self) -> list[str]:
        return [text for _, _, texts in self.embeds for text in texts]


class _StageEmbedder:
    """The new model, taking `seconds` per batch; `fail_calls` (1-based) raise, `after_call` runs after each."""

    def __init__(self, inner: HashingEmbedder, stages: _Stages, seconds: float = 0.0) -> None:
        self._inner, self._stages, self._seconds = inner, stages, seconds
        self.model, self.dim, self.in_process = inner.model, inner.dim, True
        self.fail_calls: set[int] = set()
        self.after_call: list[object] = []
        self._calls = 0

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        self._calls += 1
        if self._calls in self.fail_calls:
            raise RuntimeError("model crashed")
        entered = self._stages.tick()
        time.sleep(self._seconds)
        vectors = self._inner.embed(texts)
        self._stages.embeds.append((entered, self._stages.tick(), tuple(texts)))
        for hook in self.after_call:
            hook()  # type: ignore[operator]
        return vectors

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        return self._inner.embed_query(texts)


class _StageIndex:
    """The new index, its upserts taking `seconds` each; `fail_calls` (1-based) raise ConnectionError."""

    def __init__(self, inner: HnswIndex, stages: _Stages, seconds: float = 0.0) -> None:
        self._inner, self._stages, self._seconds = inner, stages, seconds
        self.fail_calls: set[int] = set()
        self._calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        self._calls += 1
        entered = self._stages.tick()
        time.sleep(self._seconds)
        if self._calls in self.fail_calls:
            raise ConnectionError("index down")
        result = self._inner.upsert(records)
        self._stages.writes.append((entered, self._stages.tick(), tuple(r.id for r in records)))
        return result


class _CountingThrottle(AdaptiveThrottle):
    def __init__(self) -> None:
        super().__init__(0.0, None, LatencyWindow())
        self.batches: list[tuple[int, int, float]] = []

    def record_batch(self, scanned: int, embedded: int, work_s: float) -> None:
        self.batches.append((scanned, embedded, work_s))
        super().record_batch(scanned, embedded, work_s)


@dataclass
class _Rig:
    backfiller: Backfiller
    store: LocalStateStore
    embedder: _StageEmbedder
    index: _StageIndex
    stages: _Stages
    throttle: _CountingThrottle
    paused: threading.Event
    ids: list[str]

    def slice0(self) -> Slice:
        return load_slice(self.store.get_fields(SLICES_KEY)["0"])

    def in_target(self) -> list[str]:
        return sorted(self.index.versions(self.ids))

    def drain(self) -> int:
        """Steps until the backfill is complete; returns the steps taken."""
        for step in range(1, 100):
            self.backfiller.step()
            if self.backfiller.complete():
                return step
        raise AssertionError("backfill did not finish")


RigFactory = Callable[..., _Rig]


def _rig(cleanup: ExitStack, directory: Path, docs: int, embed_s: float = 0.0, write_s: float = 0.0) -> _Rig:
    source_model = HashingEmbedder("hash-a", DIM, 1)
    source = HnswIndex("idx-a", DIM, directory / "a", initial_capacity=docs + 8)
    cleanup.callback(source.close)
    ids = [f"doc-{n:04d}" for n in range(docs)]
    texts = [f"document {n} about topic {n % 7}" for n in range(docs)]
    vectors = source_model.embed(texts)
    source.upsert(
        [IndexRecord(i, n + 1, t, {}, v) for n, (i, t, v) in enumerate(zip(ids, texts, vectors, strict=True))]
    )
    stages = _Stages()
    embedder = _StageEmbedder(HashingEmbedder("hash-b", DIM, 2), stages, embed_s)
    target_index = HnswIndex("idx-b", DIM, directory / "b", initial_capacity=docs + 8)
    cleanup.callback(target_index.close)
    index = _StageIndex(target_index, stages, write_s)
    store = LocalStateStore(directory / "state.sqlite3", "test")
    cleanup.callback(store.close)
    throttle = _CountingThrottle()
    paused = threading.Event()
    backfiller = Backfiller(
        IndexBinding(source, source_model),
        IndexBinding(index, embedder),  # type: ignore[arg-type]
        store,
        "replica-1",
        throttle,
        batch_size=BATCH,
        slice_size=1000,
        may_continue=lambda: not paused.is_set(),
    )
    cleanup.callback(backfiller.close)
    return _Rig(backfiller, store, embedder, index, stages, throttle, paused, ids)


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[RigFactory]:
    """`make_rig(docs, embed_s=0, write_s=0)`: a backfill of `docs` documents, closed after the test."""
    with ExitStack() as cleanup:
        yield lambda docs, **stage_s: _rig(cleanup, tmp_path, docs, **stage_s)


@pytest.fixture
def rig(make_rig: RigFactory) -> _Rig:
    return make_rig(40)


def _overlap(a: tuple[int, int, object], b: tuple[int, int, object]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_the_next_batch_is_embedded_while_the_last_one_is_written(make_rig: RigFactory) -> None:
    # Stages that sleep (releasing the GIL, as hnswlib, PostgreSQL and the models do): one after the other,
    # N batches take N*(E+W); overlapped, N*max(E,W)+min(E,W). Shown by the stages' intervals, not the clock.
    rig = make_rig(8 * BATCH, embed_s=0.05, write_s=0.05)
    rig.drain()
    embeds, writes = rig.stages.embeds, rig.stages.writes
    assert len(embeds) == len(writes) == 8
    overlapping = [_overlap(embeds[n + 1], writes[n]) for n in range(7)]
    assert all(overlapping), f"embed n+1 overlaps write n: {overlapping}"
    assert [w[2] for w in writes] == [tuple(rig.ids[n : n + BATCH]) for n in range(0, 80, BATCH)]
    assert sorted(rig.stages.embedded_texts()) == sorted(set(rig.stages.embedded_texts()))
    assert len(rig.stages.embedded_texts()) == 80, "every document embedded once"
    assert (rig.slice0().done, rig.slice0().finished) == (80, True)


def test_each_step_writes_one_batch_and_checkpoints_only_what_it_wrote(rig: _Rig) -> None:
    result = rig.backfiller.step()
    assert (result.kind, result.processed, result.written) == ("slice", BATCH, BATCH)
    assert rig.in_target() == rig.ids[:BATCH], "the second batch is embedded, not written"
    assert len(rig.stages.embeds) == 2
    assert (rig.slice0().cursor, rig.slice0().done) == (rig.ids[BATCH - 1], BATCH)


def test_a_failed_write_leaves_the_checkpoint_before_it_and_the_next_step_redoes_exactly_it(
    rig: _Rig,
) -> None:
    rig.index.fail_calls = {2}
    rig.backfiller.step()
    with pytest.raises(ConnectionError, match="index down"):
        rig.backfiller.step()  # writes batch 2 (fails) while embedding batch 3
    assert (rig.slice0().cursor, rig.slice0().done) == (rig.ids[BATCH - 1], BATCH)
    assert rig.in_target() == rig.ids[:BATCH]
    embedded_before = len(rig.stages.embeds)
    result = rig.backfiller.step()
    assert rig.stages.writes[-1][2] == tuple(rig.ids[BATCH : 2 * BATCH]), "exactly the failed batch"
    assert len(rig.stages.embeds) == embedded_before, "with the vectors it had: nothing embedded meanwhile"
    assert (result.processed, rig.slice0().cursor) == (BATCH, rig.ids[2 * BATCH - 1])
    rig.drain()
    assert rig.in_target() == rig.ids
    assert sorted(rig.stages.embedded_texts()) == sorted(set(rig.stages.embedded_texts()))
    assert len(rig.stages.embedded_texts()) == len(rig.ids), "no document embedded twice"


def test_a_failed_embedding_surfaces_after_the_batch_written_meanwhile_is_checkpointed(rig: _Rig) -> None:
    rig.embedder.fail_calls = {2}
    with pytest.raises(RuntimeError, match="model crashed"):
        rig.backfiller.step()  # embeds batch 1, then writes it while batch 2's embedding fails
    assert rig.in_target() == rig.ids[:BATCH]
    assert (rig.slice0().cursor, rig.slice0().done) == (rig.ids[BATCH - 1], BATCH)
    rig.drain()
    assert rig.in_target() == rig.ids
    assert len(rig.stages.embedded_texts()) == len(rig.ids)


def test_a_pause_between_the_stages_stops_the_pipeline(rig: _Rig) -> None:
    rig.embedder.after_call = [rig.paused.set]  # paused while the first batch is embedded
    result = rig.backfiller.step()
    rig.embedder.after_call = []
    assert (result.processed, result.written) == (0, 0)
    assert rig.in_target() == [] and rig.slice0().done == 0, "the embedded batch is not written"
    assert rig.backfiller.step().kind == "idle", "nor is another stage started while paused"
    assert (len(rig.stages.embeds), len(rig.stages.writes)) == (1, 0)
    rig.paused.clear()
    rig.backfiller.step()
    assert rig.in_target() == rig.ids[:BATCH], "the resume writes the batch embedded before the pause"
    assert len(rig.stages.embeds) == 2, "without embedding it again"


def test_a_replica_that_lost_its_slice_neither_checkpoints_nor_reads_on_in_it(rig: _Rig) -> None:
    rig.backfiller.step()
    rig.store.release_lease(rig.slice0().lease_name(), "replica-1")
    assert rig.store.try_lease(rig.slice0().lease_name(), "replica-2", 60.0)
    assert rig.backfiller.step().written == BATCH  # the write is version-checked, so it may land
    assert (rig.slice0().cursor, rig.slice0().done) == (rig.ids[BATCH - 1], BATCH), "the cursor stays"
    embedded = len(rig.stages.embeds)
    assert rig.backfiller.step().kind == "idle"
    assert len(rig.stages.embeds) == embedded


def test_a_slice_moved_on_elsewhere_is_not_moved_back(rig: _Rig) -> None:
    rig.backfiller.step()
    # Another replica held the slice during a lapse of this one's lease and wrote up to doc 29.
    ahead = Slice(0, None, None, rig.ids[29], 30)
    rig.store.set_fields(SLICES_KEY, {"0": dump_slice(ahead)})
    rig.backfiller.step()
    assert rig.slice0() == ahead, "the late checkpoint of batch 2 does not move the cursor back"
    rig.drain()
    assert rig.stages.writes[-1][2] == tuple(rig.ids[30:40]), "the work goes on from the stored cursor"
    assert (rig.slice0().done, rig.slice0().finished) == (40, True)


def test_a_hot_document_waiting_in_the_pipeline_goes_first_and_is_not_embedded_again(rig: _Rig) -> None:
    rig.backfiller.step()  # batch 2 waits, embedded
    rig.store.enqueue(LAZY_QUEUE, [rig.ids[BATCH + 3], rig.ids[35]], 1.0)
    assert rig.backfiller.step().kind == "lazy"
    assert rig.in_target() == sorted([*rig.ids[:BATCH], rig.ids[BATCH + 3], rig.ids[35]])
    assert rig.stages.embeds[-1][2] == ("document 35 about topic 0",), "only the one not embedded yet"
    rig.drain()
    assert rig.in_target() == rig.ids
    assert len(rig.stages.embedded_texts()) == len(rig.ids)


def test_the_throttle_counts_every_embedded_document_once_and_each_step_once(rig: _Rig) -> None:
    steps = rig.drain()
    assert sum(embedded for _, embedded, _ in rig.throttle.batches) == len(rig.ids), "for the rate limit"
    assert len(rig.throttle.batches) == steps, "one record per step: the time its overlapping stages took"


def test_an_old_copy_handed_over_after_the_sweep_retired_it_counts_once(rig: _Rig) -> None:
    # Under retire_as_you_go a pipelined batch, read a step before it is written, may reach the storage policy
    # after the sweep already retired some of its documents' old copies.
    rig.drain()
    rig.store.advance_versions(len(rig.ids))  # the documents took versions 1..40 from the same counter
    source, target = rig.backfiller.source, rig.backfiller.target
    tracker = StorageTracker(
        source, target, rig.store, StoragePolicy.RETIRE_AS_YOU_GO, rig.store.next_versions
    )
    batch = source.index.get(rig.ids[:5])
    assert tracker.retire(batch[:3]) == 3  # the sweep
    assert tracker.retire(batch) == 2  # the batch, handed over afterwards
    assert tracker.retired_count() == 5 and source.index.count() == len(rig.ids) - 5


def test_closing_hands_back_the_slice_lease_so_a_restarted_replica_resumes_at_once(rig: _Rig) -> None:
    lease = Slice(0, None, None, None).lease_name()
    rig.backfiller.step()
    rig.backfiller.step()
    assert rig.store.lease_owner(lease) == "replica-1"
    written = rig.in_target()
    rig.backfiller.close()
    assert rig.store.lease_owner(lease) is None
    # A new owner id, as a restarted sidecar has: it takes the slice now, not after the lease's TTL.
    assert rig.store.try_lease(lease, "replica-2", 60.0)
    assert rig.slice0().cursor == written[-1]
