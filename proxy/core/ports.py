"""The interfaces the core depends on; adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from proxy.core.model import EmbedderLoad, Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one model's space."""

    @property
    def model(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def in_process(self) -> bool:
        """True when calls do their work in this process and never wait on a server or the network.

        A query leg over an in-process embedder and index runs on the query's own thread unless a core is
        idle: the index gives up on a busy graph at the leg's deadline, a local model waits only for the other
        calls on the serving instance (queries, dual writes; the backfill has its own), and a hop to a pool
        costs more CPU than it saves on a busy machine, since under the GIL two Python legs overlap little.
        """
        ...

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """One L2-normalized float32 vector per document text, in order."""
        ...

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        """Like `embed`, for search queries: asymmetric models (e5: "query:" vs "passage:") embed them apart."""
        ...


@runtime_checkable
class ReportsLoad(Protocol):
    """An embedder that calls a remote API and can say how loaded it is (None: it cannot, e.g. a wrapper
    around a local model)."""

    def load(self) -> EmbedderLoad | None: ...


@runtime_checkable
class VectorIndex(Protocol):
    """A vector index that also keeps each document's text, metadata and version.

    Writes are version-checked (compare-and-set): a record is written only when the index holds
    no newer version of its id, live or deleted, so a late re-embed can never overwrite a newer
    client write or resurrect a deleted document. Implementations are thread-safe.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def in_process(self) -> bool:
        """True for an index kept in this process, which honours `search(timeout_s=...)` (see
        `Embedder.in_process`)."""
        ...

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        """Writes each record whose version is newer than what the index holds for its id."""
        ...

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        """Deletes ids, leaving a tombstone at `version` that blocks older writes."""
        ...

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        """Live documents among `ids`, in the order of `ids`; missing and deleted ids are left out."""
        ...

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        """Latest version per id, live or tombstoned; ids never seen are absent.

        `for_query`: a query is waiting, on the ids of its hits. An index may then keep what it reads for the
        next query (hnswlib's row cache), which lookups over whole batches must not sweep.
        """
        ...

    def search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None = None,
        *,
        include_text: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        """Approximate top-k live documents by similarity, best first, matching every `where` pair.

        With `timeout_s`, an index that runs in this process raises TimeoutError rather than wait longer than
        that for other work (a write holding its graph): such a leg runs on the query's thread, where nothing
        else could cut it. The fan-out cuts legs over a server in its pools; such an index should still stop the
        server's work then (pgvector sets `statement_timeout`), or may ignore the timeout.

        Hits carry the document text only with `include_text`; without it `text` is empty, which spares the
        index reading texts nobody asked for.
        """
        ...

    def exact_search(
        self, vector: Vector, k: int, where: Metadata | None = None, *, include_text: bool = False
    ) -> list[Hit]:
        """Exact (brute-force) top-k, for validating the approximate search."""
        ...

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        """Live documents with id > after_id in ascending id order (the backfill's cursor)."""
        ...

    def count(self) -> int:
        """Number of live documents."""
        ...

    def max_version(self) -> int:
        """Highest version the index holds, live or tombstoned (0 when empty)."""
        ...

    def storage_bytes(self) -> int: ...

    def compact(self) -> int:
        """Gives the space of deleted documents back to the storage; returns storage_bytes before minus after.

        Every live document, version and tombstone is kept: an older write is still rejected afterwards.
        Searches and writes keep working while it runs, but it costs about one write of the live data, so
        callers run it when `dead_fraction()` is large. Backends without compaction return 0.
        """
        ...

    def dead_fraction(self) -> float:
        """Share (0.0 to 1.0) of the index's stored entries that belong to deleted documents; cheap to call.

        What `compact()` would reclaim, so a caller can decide when to run it. Backends without compaction
        return 0.0.
        """
        ...

    def flush(self) -> None:
        """Makes every acknowledged write durable on disk."""
        ...

    def close(self) -> None: ...


def iter_all(index: VectorIndex, batch: int = 512) -> Iterator[StoredDocument]:
    """Every live document of `index` in id order."""
    after: str | None = None
    while True:
        page = index.scan(after, batch)
        if not page:
            return
        yield from page
        after = page[-1].id


@runtime_checkable
class StateStore(Protocol):
    """State shared by every replica of one deployment: Redis in production, a local file for one replica.

    All keys live under the namespace the store was opened with. Every method is atomic on its own.
    """

    def next_versions(self, count: int) -> int:
        """Reserves `count` consecutive document versions and returns the first; never reused, always increasing."""
        ...

    def advance_versions(self, floor: int) -> None:
        """Makes every later `next_versions` return more than `floor` (after a state store lost its counter)."""
        ...

    def get_fields(self, key: str) -> dict[str, str]:
        """All fields of a hash (empty when absent)."""
        ...

    def set_fields(self, key: str, values: Mapping[str, str]) -> None: ...

    def compare_and_set_field(self, key: str, field: str, expected: str | None, new: str) -> bool:
        """Sets `field` to `new` only when it currently equals `expected` (None: absent)."""
        ...

    def append_event(self, key: str, event: str) -> None:
        """Appends to an ordered log (phase history, promotion decisions)."""
        ...

    def events(self, key: str) -> list[str]: ...

    def enqueue(self, queue: str, ids: Sequence[str], priority: float) -> int:
        """Adds ids to a de-duplicated priority queue (an id already queued keeps the higher priority).

        Returns how many ids were not queued before."""
        ...

    def dequeue(self, queue: str, count: int) -> list[str]:
        """Removes and returns up to `count` ids, highest priority first (ties: first queued first)."""
        ...

    def queue_size(self, queue: str) -> int: ...

    def try_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Takes the lease if it is free or expired, or renews it if `owner` holds it."""
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Frees the lease if `owner` holds it."""
        ...

    def lease_owner(self, name: str) -> str | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Change:
    """A row an application wrote directly to a table served in place, recorded by the table's trigger."""

    id: str
    version: int
    """The row's version after the write (the trigger takes it from a sequence: later writes, higher ones)."""
    deleted: bool


@runtime_checkable
class ChangeFeed(Protocol):
    """An index over an application's own table, which the application keeps writing directly.

    Its writes bypass the proxy, so nothing dual-writes them: the feed lists every row inserted, deleted or
    whose text changed, until the migration settles it (its new-model vector written at that version, or its
    tombstone). Such an index refuses `upsert` and `delete`: the application owns the rows.
    """

    def pending_changes(self, limit: int) -> list[Change]:
        """Up to `limit` unsettled changes, oldest first."""
        ...

    def settle(self, changes: Sequence[Change]) -> None:
        """Marks changes done, each only while its row has not changed again since (its version still holds)."""
        ...

    def pending_count(self) -> int: ...

    def retire_vectors(self) -> bool:
        """Drops the old model's vectors (column and index) from the table, once traffic no longer needs them;
        False when there was nothing left to drop."""
        ...


@runtime_checkable
class RetiresInPlace(Protocol):
    """An index over an application's own table or collection: retiring it drops at most the old model's
    vectors, never the application's rows (every `ChangeFeed` is one)."""

    def retire_vectors(self) -> bool:
        """Drops what of the old model's vectors the backend can drop; False when nothing (more) can go."""
        ...


@runtime_checkable
class CatchUp(Protocol):
    """An index of new-model vectors beside an application's table, which can tell how far behind it is."""

    def rows_behind(self) -> int:
        """Rows of the table without a vector at their current version, plus vectors of rows since deleted."""
        ...


@runtime_checkable
class KeyOrder(Protocol):
    """An index whose `scan` orders ids other than as Python strings (an application's bigint key, say)."""

    def id_key(self, doc_id: str) -> tuple[int, str]:
        """The sort key of `doc_id` in the order of `scan`."""
        ...


@dataclass(frozen=True)
class SearchIndexState:
    """Where an index's search structure (pgvector's HNSW graph) stands when it is built after a bulk load."""

    built: bool
    building: bool = False
    """A build runs now, in this process or another (a replica, or a server still finishing a dead client's)."""
    phase: str = ""
    """What the build does now, as the database reports it (pg_stat_progress_create_index's phase)."""
    done: int = 0
    total: int = 0
    """Progress of that phase in its own unit (blocks or tuples); total 0 when it reports none."""

    def describe(self) -> str:
        if self.built:
            return "built"
        if not self.building:
            return "not built (searches scan the table)"
        progress = f", {self.done}/{self.total}" if self.total else ""
        return f"building ({self.phase or 'starting'}{progress})"


@runtime_checkable
class DeferredSearchIndex(Protocol):
    """An index that a backfill fills before its search structure exists, built once at the end: pgvector
    without its HNSW index, whose graph maintenance otherwise sets the pace of every write.

    Until it is built, searches are exact and slow (a scan of the whole table)."""

    @property
    def build_at(self) -> float:
        """Backfill progress (0 to 1] at which the build starts; 1.0: when the backfill completes."""
        ...

    def search_index_state(self) -> SearchIndexState: ...

    def build_search_index(self) -> bool:
        """Builds the search structure unless it exists; blocks until it is built. False when another session
        holds the build (it is running elsewhere); call again later."""
        ...


def id_order(index: VectorIndex) -> Callable[[str], tuple[int, str]]:
    """The sort key of `index`'s scan order: Python's string order unless the index says otherwise."""
    return index.id_key if isinstance(index, KeyOrder) else (lambda doc_id: (0, doc_id))
