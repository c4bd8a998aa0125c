"""The embedded default `VectorIndex`: SQLite is the source of truth, an hnswlib graph is a rebuildable cache.

Files in the index directory:
  index.sqlite3 (+ -wal, -shm)  every document row, tombstones included, with its vector and a write sequence
                                (store.py)
  graph.bin, graph.json         the hnswlib graph as of the last flush, and the write sequence it includes
                                (graph.py)

A write is acknowledged once its SQLite transaction commits, so it survives a SIGKILL before any flush: on
open the graph file is loaded and the rows written after its sequence are replayed into it, or, when the file
is missing, corrupt or does not hold every live row, the graph is rebuilt from SQLite. SQLite runs in WAL mode
with synchronous=NORMAL: a commit survives a process crash, and `flush()` checkpoints to survive power loss.

Concurrency: hnswlib allows concurrent searches, but no search during an insert, delete-mark or resize
(nmslib/hnswlib#29, #562: searches take no locks, for speed). Searches hold the graph lock shared and run in
parallel (hnswlib releases the GIL inside knn_query); a write commits to SQLite and changes the graph while
holding it exclusively, so a search always sees rows and graph in the same state. Writers take turns.

Reclaiming space (`compact()`, see compaction.py) rewrites the graph and the SQLite rows beside searches and
writes.

One process opens a directory at a time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import hnswlib
import numpy as np

from proxy.adapters.hnsw import compaction
from proxy.adapters.hnsw.exact import exact_top_k
from proxy.adapters.hnsw.graph import (
    GraphSettings,
    Space,
    add_to_graph,
    build_graph,
    has_saved_graph,
    open_graph,
    replay,
    save_graph,
)
from proxy.adapters.hnsw.locks import SharedExclusiveLock
from proxy.adapters.hnsw.row_cache import DEFAULT_ROW_CACHE, CachedRow, RowCache
from proxy.adapters.hnsw.store import DocumentStore
from proxy.adapters.hnsw.writes import PendingWrite, WriteCounters, store_record, store_tombstone
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult, checked_vector

# A filtered search whose allowed set is this small is answered exactly: that is cheap, and hnswlib's
# filtered walk degrades (and can come back short) when few nodes pass the filter.
_EXACT_FILTER_LIMIT = 2_000


class HnswIndex:
    """`VectorIndex` on local disk: SQLite rows plus an hnswlib HNSW graph (see the module docstring)."""

    def __init__(
        self,
        name: str,
        dim: int,
        directory: Path,
        *,
        space: Space = "cosine",
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        initial_capacity: int = 1024,
        row_cache: int = DEFAULT_ROW_CACHE,
        insert_threads: int = 1,
    ) -> None:
        """Opens the index in `directory`, creating it when absent.

        `m` and `ef_construction` shape the graph when it is (re)built; a loaded graph keeps its own.
        `row_cache` rows (id, version, metadata) of returned labels stay in memory, so a search reads SQLite
        only for labels it has not returned lately; 0 turns the cache off.
        `insert_threads` bounds the threads hnswlib uses to insert a write's vectors and to rebuild the graph
        while serving (compaction); -1 means every core. One by default: a backfill batch must leave cores
        to the queries beside it. Building the graph when the index opens always uses every core.
        Raises IndexConfigMismatch when the directory holds an index of another dim or space.
        """
        if dim <= 0:
            raise ValueError(f"index {name!r}: dim must be positive, got {dim}")
        if space not in ("cosine", "ip"):
            raise ValueError(f"index {name!r}: space must be 'cosine' or 'ip', got {space!r}")
        self._name = name
        self._dim = dim
        self._directory = Path(directory)
        self._settings = GraphSettings(
            dim=dim,
            space=space,
            m=m,
            ef_construction=ef_construction,
            ef_search=ef_search,
            initial_capacity=max(1, initial_capacity),
        )
        self._insert_threads = insert_threads
        self._write_lock = threading.Lock()
        self._graph_lock = SharedExclusiveLock()
        self._compact_lock = threading.Lock()
        self._rows = RowCache(row_cache)

        self._directory.mkdir(parents=True, exist_ok=True)
        self._store = DocumentStore(name, self._directory, dim, space)
        self._counters = WriteCounters(*self._store.read_counters())
        self._live_count, self._max_version = self._store.read_totals()
        self._graph, self._saved_seq = open_graph(
            self._store, self._directory, self._settings, self._counters.seq, self._live_count
        )
        self._applied_seq = self._counters.seq

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        # Searches wait only for a commit's exclusive section, never for I/O of unbounded length.
        return True

    # ---- writes -------------------------------------------------------------------------------------------

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        # Every vector is checked before anything is written: a bad batch changes nothing.
        vectors = [self._checked_vector(record.vector, f"document {record.id!r}") for record in records]
        pending = PendingWrite()
        with self._write_transaction(pending) as conn:
            for record, vector in zip(records, vectors, strict=True):
                pending.outcome(record.id, store_record(conn, record, vector, self._counters, pending))
        return pending.result()

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        pending = PendingWrite()
        with self._write_transaction(pending) as conn:
            for doc_id in dict.fromkeys(ids):
                pending.outcome(doc_id, store_tombstone(conn, doc_id, version, self._counters, pending))
        return pending.result()

    @contextmanager
    def _write_transaction(self, pending: PendingWrite) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            self._ensure_open()
            with self._store.transaction() as conn:
                yield conn
                self._commit(conn, pending)
            self._store.checkpoint_if_wal_is_large()

    def _commit(self, conn: sqlite3.Connection, pending: PendingWrite) -> None:
        # A search reads the graph and then the rows of the labels it found, under the shared lock; committing
        # inside the exclusive section means it never meets a label whose row is already deleted.
        with self._graph_lock.exclusive():
            conn.execute("COMMIT")
            self._rows.drop(pending.touched)
            for label in pending.removes:
                self._graph.mark_deleted(label)
            if pending.adds:
                add_to_graph(
                    self._graph, list(pending.adds), list(pending.adds.values()), self._insert_threads
                )
            self._live_count += pending.live_delta
            self._max_version = max(self._max_version, pending.max_version)
            self._applied_seq = self._counters.seq

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        found = self._store.live_documents(list(dict.fromkeys(ids)))
        return [found[doc_id] for doc_id in ids if doc_id in found]

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        self._ensure_open()
        wanted = list(dict.fromkeys(ids))
        # Bulk callers (the backfill, the storage policy) read SQLite and leave the cache to what queries
        # return. A query never waits for a write either: a commit may hold the graph for a while, and rows
        # may only be cached under the shared lock, so a busy graph means reading SQLite without caching.
        if not for_query or not self._graph_lock.acquire_shared(timeout_s=0):
            return self._read_versions(wanted, cache=False)
        try:
            result = self._rows.versions(wanted)
            missing = [doc_id for doc_id in wanted if doc_id not in result]
            if missing:
                result.update(self._read_versions(missing, cache=True))
        finally:
            self._graph_lock.release_shared()
        return result

    def _read_versions(self, ids: list[str], *, cache: bool) -> dict[str, int]:
        """Versions of `ids`, live or tombstoned, from SQLite; with `cache` (under the shared lock only), live
        rows go into the row cache."""
        result: dict[str, int] = {}
        for doc_id, version, label, deleted, metadata in self._store.version_rows(ids):
            result[doc_id] = version
            if cache and not deleted:
                self._cache_row(label, doc_id, version, metadata)
        return result

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        return self._store.scan(after_id, limit)

    def count(self) -> int:
        return self._live_count

    def max_version(self) -> int:
        return self._max_version

    def storage_bytes(self) -> int:
        """Bytes of the files in the index directory: SQLite with its WAL, and the graph as last flushed."""
        total = 0
        for entry in self._directory.iterdir():
            # A flush or compaction in another thread may rename a temporary file away meanwhile.
            with suppress(FileNotFoundError):
                total += entry.stat().st_size if entry.is_file() else 0
        return total

    # ---- search -------------------------------------------------------------------------------------------

    def search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None = None,
        *,
        include_text: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        self._ensure_open()
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        # The only wait in a search is for a commit's exclusive section; the rest is bounded CPU work.
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if where and self._store.count_matching(where) <= _EXACT_FILTER_LIMIT:
            return self._exact(query, k, where, include_text, deadline)
        return self._approximate(query, k, where or None, include_text, deadline)

    def exact_search(
        self, vector: Vector, k: int, where: Metadata | None = None, *, include_text: bool = False
    ) -> list[Hit]:
        self._ensure_open()
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        return self._exact(query, k, where, include_text)

    def _approximate(
        self, query: Vector, k: int, where: Metadata | None, include_text: bool, deadline: float | None
    ) -> list[Hit]:
        with self._graph_lock.shared(_left(deadline)):
            allowed = self._store.labels_matching(where) if where else None
            wanted = min(k, self._live_count if allowed is None else len(allowed))
            if wanted == 0:
                return []
            try:
                labels, distances = self._graph.knn_query(
                    query, k=wanted, num_threads=1, filter=None if allowed is None else allowed.__contains__
                )
            except RuntimeError:
                pass  # hnswlib raises when its walk finds fewer than `wanted` nodes; answer exactly instead.
            else:
                # hnswlib's distance is 1 - similarity in both spaces.
                scores = (1.0 - distances[0].astype(np.float64)).tolist()
                return self._hits(labels[0].tolist(), scores, include_text)
        return self._exact(query, k, where, include_text, deadline)

    def _exact(
        self, query: Vector, k: int, where: Metadata | None, include_text: bool, deadline: float | None = None
    ) -> list[Hit]:
        labels, scores = exact_top_k(
            query, self._store.live_vectors(where), k, cosine=self._settings.space == "cosine"
        )
        with self._graph_lock.shared(_left(deadline)):
            return self._hits(labels, scores, include_text)

    def _hits(self, labels: list[int], scores: list[float], include_text: bool) -> list[Hit]:
        """Hits in the order given; a label whose row is no longer live is left out.

        Called under the graph's shared lock: that is what makes filling the row cache here safe.
        """
        rows = self._rows.get_many(labels)
        missing = [label for label in labels if label not in rows]
        if missing:
            rows.update(self._read_rows(missing))
        # Texts are not cached: they can be large, and most queries do not ask for them.
        texts = dict(self._store.live_by_label("text", labels)) if include_text else {}
        name = self._name
        return [
            Hit(row[0], score, row[1], row[2], texts.get(label, ""), name)
            for label, score in zip(labels, scores, strict=True)
            if (row := rows.get(label)) is not None
        ]

    def _read_rows(self, labels: list[int]) -> dict[int, CachedRow]:
        found: dict[int, CachedRow] = {}
        for label, doc_id, version, metadata in self._store.live_by_label("id, version, metadata", labels):
            found[label] = self._cache_row(label, doc_id, version, metadata)
        return found

    def _cache_row(self, label: int, doc_id: str, version: int, metadata_json: str) -> CachedRow:
        """The cached form of a live row just read; only under the graph's shared lock (see RowCache)."""
        row = (doc_id, version, json.loads(metadata_json))
        self._rows.put(label, row)
        return row

    # ---- compaction ---------------------------------------------------------------------------------------

    def dead_fraction(self) -> float:
        """Share of the graph's elements that belong to deleted documents: what `compact()` would drop.

        Read from memory. It survives a reopen (the saved graph keeps its deleted marks) but not a graph rebuilt
        on open, although SQLite may still hold the dead rows' pages then.
        """
        return compaction.dead_fraction(self._graph.element_count, self._live_count)

    def compact(self) -> int:
        """Drops deleted documents from the graph and SQLite and returns the bytes given back to the file system.

        The result is `storage_bytes()` before minus after; it can be negative when the graph file on disk was
        older, and smaller, than the graph in memory. Searches and writes go on meanwhile (see compaction.py);
        a second compaction waits for the first. Tombstones stay, so the version check still holds.
        """
        with self._compact_lock:
            self._ensure_open()
            before = self.storage_bytes()
            self._compact_graph()
            compaction.compact_database(self._store, self._write_lock)
            return before - self.storage_bytes()

    def _compact_graph(self) -> None:
        graph, snapshot_seq = self._graph_from_snapshot()
        with self._write_lock:
            self._ensure_open()
            # No write can commit while the write lock is held, so after this replay the new graph holds exactly
            # what the old one does, minus deleted elements.
            replay(graph, self._store, snapshot_seq)
            with self._graph_lock.exclusive():
                self._graph = graph
            # As in a flush: the rows the saved graph holds must be durable before it is.
            self._store.checkpoint()
            self._save_graph_locked()

    def _graph_from_snapshot(self) -> tuple[hnswlib.Index, int]:
        """A new graph of the rows live as of the latest committed write sequence, and that sequence."""
        snapshot_seq = self._store.latest_seq()
        graph = build_graph(self._store, self._settings, self._live_count, snapshot_seq, self._insert_threads)
        return graph, snapshot_seq

    # ---- durability and lifecycle -------------------------------------------------------------------------

    def flush(self) -> None:
        with self._write_lock:
            self._ensure_open()
            self._flush_locked()

    def close(self) -> None:
        with self._write_lock:
            if self._store.closed:
                return
            self._flush_locked()
            self._store.close()

    def _flush_locked(self) -> None:
        self._store.checkpoint()
        if self._saved_seq != self._applied_seq or not has_saved_graph(self._directory):
            self._save_graph_locked()

    def _save_graph_locked(self) -> None:
        # The write lock keeps the graph still; searches running meanwhile only read it, as save_index does.
        save_graph(self._graph, self._directory, self._settings, self._applied_seq)
        self._saved_seq = self._applied_seq

    def _ensure_open(self) -> None:
        self._store.ensure_open()

    def _checked_vector(self, vector: Vector, what: str) -> Vector:
        return checked_vector(vector, self._dim, self._name, what)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
