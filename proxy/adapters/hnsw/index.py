"""The embedded default `VectorIndex`: SQLite is the source of truth, an hnswlib graph is a rebuildable cache.

Files in the index directory:
  index.sqlite3 (+ -wal, -shm)  every document row, tombstones included, with its vector and a write sequence
  graph.bin                     the hnswlib graph as of the last flush
  graph.json                    which write sequence graph.bin includes, and the dim and space it was built for

A write is acknowledged once its SQLite transaction commits, so it survives a SIGKILL before any flush: on
open the graph file is loaded and the rows written after its sequence are replayed into it, or, when the file
is missing, corrupt or does not hold every live row, the graph is rebuilt from SQLite. SQLite runs in WAL mode
with synchronous=NORMAL: a commit survives a process crash, and `flush()` checkpoints to survive power loss.

Concurrency: hnswlib allows concurrent searches, but no search during an insert, delete-mark or resize
(nmslib/hnswlib#29, #562: searches take no locks, for speed). Searches hold the graph lock shared and run in
parallel (hnswlib releases the GIL inside knn_query); a write commits to SQLite and changes the graph while
holding it exclusively, so a search always sees rows and graph in the same state. Writers take turns.

Reclaiming space (`compact()`): a delete leaves a tombstone row (id, version, no text, metadata or vector) for the
version check, and only marks the element deleted in the graph, so neither file shrinks by itself. Compaction
  1. builds a new graph from the rows live as of one write sequence, beside searches and writes (both graphs are
     in memory meanwhile); then, holding the write lock, replays the rows written after that sequence into it,
     swaps it in (searches wait for the swap only) and saves it like a flush;
  2. moves every SQLite row to the end of its table, one short transaction per chunk. A tombstone is an update
     that shrinks its row in place, and SQLite merges pages only when a delete leaves one under a third full,
     so pages that lost half their bytes stay allocated until their rows are written anew, densely. Writes
     wait for one chunk at most, and the extra disk is about one chunk, where a VACUUM would need a temporary
     copy of the live data and a second one in the WAL;
  3. gives the free pages back to the file system (auto_vacuum=INCREMENTAL, set when the database is created;
     a database created before that is converted once by a full VACUUM, which blocks writes while it rewrites
     the file) and truncates the WAL.
It costs about one write of the live data, so it is worth running when `dead_fraction()` is large.

One process opens a directory at a time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import hnswlib
import numpy as np

from proxy.core.errors import IndexClosed, IndexConfigMismatch
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult, checked_vector

Space = Literal["cosine", "ip"]
_T = TypeVar("_T")

_DB_FILE = "index.sqlite3"
_GRAPH_FILE = "graph.bin"
_GRAPH_META_FILE = "graph.json"

# A filtered search whose allowed set is this small is answered exactly: that is cheap, and hnswlib's
# filtered walk degrades (and can come back short) when few nodes pass the filter.
_EXACT_FILTER_LIMIT = 2_000
_EXACT_BATCH = 4_096
# The WAL is checkpointed and truncated when it outgrows a quarter of the database, within these bounds: it
# then adds a bounded share to the storage a migration's peak is measured in, even for a small index.
_WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024
_WAL_CHECKPOINT_MIN_BYTES = 1024 * 1024
# A graph built from scratch leaves room for a quarter more elements before its first resize.
_GRAPH_HEADROOM = 1.25
# Compaction moves this many rows, or frees this many pages, per write transaction: it bounds how long a write
# waits behind compaction, and how much the files grow before the pages a chunk frees are reused.
_REPACK_ROWS = 1_000
_VACUUM_PAGES = 2_048
_AUTO_VACUUM_INCREMENTAL = 2
_COLUMNS = "id, label, version, deleted, text, metadata, vector, seq"
_INSERT_ROW = f"INSERT INTO documents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# Keeps `IN (...)` lists well under SQLite's limit on parameters per statement.
_IN_CHUNK = 500
# Rows of recently returned labels kept in memory (about 250 bytes each without text).
DEFAULT_ROW_CACHE = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    label INTEGER UNIQUE,        -- hnswlib label, fixed for the id's lifetime; NULL if it never had a vector
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,    -- 1: tombstone, kept so that an older write cannot recreate the id
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,      -- JSON object of string values
    vector BLOB,                 -- float32 bytes as written; NULL on tombstones
    seq INTEGER NOT NULL         -- write sequence of the row's latest change; the graph replays seq > saved
);
CREATE INDEX IF NOT EXISTS documents_seq ON documents (seq);
-- One row per metadata pair of a live document, so a `where` filter is an index lookup per pair.
CREATE TABLE IF NOT EXISTS metadata_pairs (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (key, value, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metadata_pairs_id ON metadata_pairs (id);
"""


@dataclass(frozen=True)
class _Row:
    label: int | None
    version: int
    deleted: bool


@dataclass
class _PendingWrite:
    """One write call: the outcome per id, and what the graph must do once SQLite commits."""

    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    adds: dict[int, Vector] = field(default_factory=dict)
    removes: list[int] = field(default_factory=list)
    touched: list[int] = field(default_factory=list)
    """Labels whose row changed: their cached rows are dropped at commit."""
    live_delta: int = 0
    max_version: int = 0

    def outcome(self, doc_id: str, written: bool) -> None:
        (self.written if written else self.stale).append(doc_id)

    def wrote_version(self, version: int) -> None:
        self.max_version = max(self.max_version, version)

    def result(self) -> WriteResult:
        return WriteResult(written=tuple(self.written), stale=tuple(self.stale))


class _SharedExclusiveLock:
    """Many shared holders or one exclusive holder.

    A waiting exclusive holder blocks new shared ones, so a steady stream of searches cannot starve writes.
    Every search takes the shared side, so it is a plain context object over a non-reentrant lock rather than
    a generator over the default RLock: that halves its cost.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._shared_side = _SharedSide(self)

    def shared(self, timeout_s: float | None = None) -> AbstractContextManager[None]:
        """The shared side; with `timeout_s`, entering raises TimeoutError after waiting that long."""
        return self._shared_side if timeout_s is None else _SharedSide(self, timeout_s)

    def acquire_shared(self, timeout_s: float | None = None) -> bool:
        with self._cond:
            if not self._free_for_shared() and not self._cond.wait_for(self._free_for_shared, timeout_s):
                return False
            self._shared += 1
        return True

    def _free_for_shared(self) -> bool:
        return not (self._exclusive or self._exclusive_waiting)

    def release_shared(self) -> None:
        with self._cond:
            self._shared -= 1
            if self._shared == 0 and self._exclusive_waiting:
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._exclusive_waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


_CachedRow = tuple[str, int, Metadata]
"""(id, version, metadata) of a live label."""


class _RowCache:
    """Recently returned rows by label, least recently used evicted first, also found by document id.

    Readers fill it while holding the graph's shared lock and commits empty it for the labels they change
    while holding the exclusive one, so a row read before a commit can never be stored after it. The
    metadata dicts are shared with the hits built from them: callers treat hit metadata as read-only.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._rows: OrderedDict[int, _CachedRow] = OrderedDict()
        self._labels: dict[str, int] = {}
        self._lock = threading.Lock()

    def get_many(self, labels: Iterable[int]) -> dict[int, _CachedRow]:
        found: dict[int, _CachedRow] = {}
        with self._lock:
            for label in labels:
                row = self._rows.get(label)
                if row is not None:
                    self._rows.move_to_end(label)
                    found[label] = row
        return found

    def versions(self, ids: Iterable[str]) -> dict[str, int]:
        """Cached live versions among `ids`; an id absent here may still be in the index, live or deleted."""
        found: dict[str, int] = {}
        with self._lock:
            for doc_id in ids:
                label = self._labels.get(doc_id)
                if label is not None:
                    self._rows.move_to_end(label)
                    found[doc_id] = self._rows[label][1]
        return found

    def put(self, label: int, row: _CachedRow) -> None:
        if self._capacity <= 0:
            return
        with self._lock:
            self._rows[label] = row
            self._labels[row[0]] = label
            if len(self._rows) > self._capacity:
                self._forget(*self._rows.popitem(last=False))

    def drop(self, labels: Iterable[int]) -> None:
        with self._lock:
            for label in labels:
                row = self._rows.pop(label, None)
                if row is not None:
                    self._forget(label, row)

    def _forget(self, label: int, row: _CachedRow) -> None:
        if self._labels.get(row[0]) == label:
            del self._labels[row[0]]

    def __len__(self) -> int:
        return len(self._rows)


class _SharedSide(AbstractContextManager[None]):
    def __init__(self, lock: _SharedExclusiveLock, timeout_s: float | None = None) -> None:
        self._lock = lock
        self._timeout_s = timeout_s

    def __enter__(self) -> None:
        if not self._lock.acquire_shared(self._timeout_s):
            assert self._timeout_s is not None
            raise TimeoutError(
                f"a write held the graph longer than the {self._timeout_s * 1000:.0f} ms this search had left"
            )

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release_shared()


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
        self._space: Space = space
        self._directory = Path(directory)
        self._m = m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._initial_capacity = max(1, initial_capacity)
        self._insert_threads = insert_threads
        self._write_lock = threading.Lock()
        self._graph_lock = _SharedExclusiveLock()
        self._compact_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._rows = _RowCache(row_cache)
        self._closed = False

        self._directory.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect(writer=True)
        try:
            self._writer.execute("PRAGMA wal_autocheckpoint = 0")
            self._writer.executescript(_SCHEMA)
            self._check_config()
        except BaseException:
            self._writer.close()
            raise
        self._next_label, self._seq = self._read_counters()
        self._live_count, self._max_version = self._read_totals()
        self._graph, self._saved_seq = self._open_graph()
        self._applied_seq = self._seq

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
        pending = _PendingWrite()
        with self._write_transaction(pending) as conn:
            for record, vector in zip(records, vectors, strict=True):
                pending.outcome(record.id, self._store_record(conn, record, vector, pending))
        return pending.result()

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        pending = _PendingWrite()
        with self._write_transaction(pending) as conn:
            for doc_id in dict.fromkeys(ids):
                pending.outcome(doc_id, self._store_tombstone(conn, doc_id, version, pending))
        return pending.result()

    def _store_record(
        self, conn: sqlite3.Connection, record: IndexRecord, vector: Vector, pending: _PendingWrite
    ) -> bool:
        # Version CAS: a late backfill or re-embed must not overwrite a newer write or revive a tombstone.
        current = _read_row(conn, record.id)
        if current is not None and current.version >= record.version:
            return False
        label = current.label if current is not None and current.label is not None else self._take_label()
        conn.execute(
            "INSERT INTO documents (id, label, version, deleted, text, metadata, vector, seq)"
            " VALUES (?, ?, ?, 0, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET label = excluded.label, version = excluded.version,"
            " deleted = 0, text = excluded.text, metadata = excluded.metadata, vector = excluded.vector,"
            " seq = excluded.seq",
            (
                record.id,
                label,
                record.version,
                record.text,
                json.dumps(record.metadata, sort_keys=True),
                vector.tobytes(),
                self._take_seq(),
            ),
        )
        conn.execute("DELETE FROM metadata_pairs WHERE id = ?", (record.id,))
        conn.executemany(
            "INSERT INTO metadata_pairs (key, value, id) VALUES (?, ?, ?)",
            [(key, value, record.id) for key, value in record.metadata.items()],
        )
        pending.adds[label] = vector
        pending.touched.append(label)
        pending.wrote_version(record.version)
        if current is None or current.deleted:
            pending.live_delta += 1
        return True

    def _store_tombstone(
        self, conn: sqlite3.Connection, doc_id: str, version: int, pending: _PendingWrite
    ) -> bool:
        current = _read_row(conn, doc_id)
        if current is not None and current.version >= version:
            return False
        # Ids never seen get a tombstone too, so a late older write cannot create them.
        conn.execute(
            "INSERT INTO documents (id, label, version, deleted, text, metadata, vector, seq)"
            " VALUES (?, NULL, ?, 1, '', '{}', NULL, ?)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = 1, text = '',"
            " metadata = '{}', vector = NULL, seq = excluded.seq",
            (doc_id, version, self._take_seq()),
        )
        conn.execute("DELETE FROM metadata_pairs WHERE id = ?", (doc_id,))
        pending.wrote_version(version)
        if current is not None and not current.deleted and current.label is not None:
            pending.removes.append(current.label)
            pending.touched.append(current.label)
            pending.live_delta -= 1
        return True

    def _take_label(self) -> int:
        # A rolled-back transaction leaves a gap; labels only need to be unique.
        label = self._next_label
        self._next_label += 1
        return label

    def _take_seq(self) -> int:
        self._seq += 1
        return self._seq

    @contextmanager
    def _write_transaction(self, pending: _PendingWrite) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            self._ensure_open()
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                self._commit(pending)
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise
            self._checkpoint_if_wal_is_large()

    def _commit(self, pending: _PendingWrite) -> None:
        # A search reads the graph and then the rows of the labels it found, under the shared lock; committing
        # inside the exclusive section means it never meets a label whose row is already deleted.
        with self._graph_lock.exclusive():
            self._writer.execute("COMMIT")
            self._rows.drop(pending.touched)
            for label in pending.removes:
                self._graph.mark_deleted(label)
            if pending.adds:
                _add_to_graph(
                    self._graph, list(pending.adds), list(pending.adds.values()), self._insert_threads
                )
            self._live_count += pending.live_delta
            self._max_version = max(self._max_version, pending.max_version)
            self._applied_seq = self._seq

    def _checkpoint_if_wal_is_large(self) -> None:
        # Automatic checkpoints are off on the writer: they would fsync inside a commit, while searches wait.
        with suppress(FileNotFoundError):
            wal_bytes = (self._directory / f"{_DB_FILE}-wal").stat().st_size
            database_bytes = (self._directory / _DB_FILE).stat().st_size
            limit = min(_WAL_CHECKPOINT_BYTES, max(_WAL_CHECKPOINT_MIN_BYTES, database_bytes // 4))
            if wal_bytes > limit:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        found: dict[str, StoredDocument] = {}
        with self._reading() as conn:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                rows = conn.execute(
                    "SELECT id, version, text, metadata FROM documents"
                    f" WHERE deleted = 0 AND id IN ({_placeholders(chunk)})",
                    chunk,
                )
                found.update((row[0], _document(row)) for row in rows)
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
        with self._reading() as conn:
            for chunk in _chunks(ids):
                rows = conn.execute(
                    "SELECT id, version, label, deleted, metadata FROM documents"
                    f" WHERE id IN ({_placeholders(chunk)})",
                    chunk,
                )
                for doc_id, version, label, deleted, metadata in rows:
                    result[doc_id] = version
                    if cache and not deleted:
                        self._cache_row(label, doc_id, version, metadata)
        return result

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        # SQLite's BINARY collation compares UTF-8 bytes, which orders like Python compares str.
        after = "" if after_id is None else "AND id > ?"
        params = [max(0, limit)] if after_id is None else [after_id, max(0, limit)]
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT id, version, text, metadata FROM documents WHERE deleted = 0 {after} ORDER BY id LIMIT ?",
                params,
            ).fetchall()
        return [_document(row) for row in rows]

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
        if where and self._count_matching(where) <= _EXACT_FILTER_LIMIT:
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
            allowed = self._labels_matching(where) if where else None
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
        if self._space == "cosine":
            query = _unit_rows(query[None, :])[0]
        best_labels = np.empty(0, dtype=np.int64)
        best_scores = np.empty(0, dtype=np.float32)
        for labels, matrix in self._live_vectors(where):
            if self._space == "cosine":
                matrix = _unit_rows(matrix)
            labels = np.concatenate([best_labels, labels])
            scores = np.concatenate([best_scores, matrix @ query])
            keep = _top(scores, k)
            best_labels, best_scores = labels[keep], scores[keep]
        order = np.argsort(-best_scores, kind="stable")
        with self._graph_lock.shared(_left(deadline)):
            return self._hits(best_labels[order].tolist(), best_scores[order].tolist(), include_text)

    def _live_vectors(self, where: Metadata | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        condition, params = _where_sql(where)
        with self._reading() as conn:
            cursor = conn.execute(
                f"SELECT label, vector FROM documents WHERE deleted = 0 AND {condition}", params
            )
            while rows := cursor.fetchmany(_EXACT_BATCH):
                labels = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
                matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
                yield labels, matrix.reshape(len(rows), self._dim)

    def _count_matching(self, where: Metadata) -> int:
        condition, params = _where_sql(where)
        with self._reading() as conn:
            return int(
                conn.execute(
                    f"SELECT COUNT(*) FROM documents WHERE deleted = 0 AND {condition}", params
                ).fetchone()[0]
            )

    def _labels_matching(self, where: Metadata) -> frozenset[int]:
        condition, params = _where_sql(where)
        with self._reading() as conn:
            rows = conn.execute(f"SELECT label FROM documents WHERE deleted = 0 AND {condition}", params)
            return frozenset(label for (label,) in rows)

    def _hits(self, labels: list[int], scores: list[float], include_text: bool) -> list[Hit]:
        """Hits in the order given; a label whose row is no longer live is left out.

        Called under the graph's shared lock: that is what makes filling the row cache here safe.
        """
        rows = self._rows.get_many(labels)
        missing = [label for label in labels if label not in rows]
        if missing:
            rows.update(self._read_rows(missing))
        texts = self._texts(labels) if include_text else {}
        name = self._name
        return [
            Hit(row[0], score, row[1], row[2], texts.get(label, ""), name)
            for label, score in zip(labels, scores, strict=True)
            if (row := rows.get(label)) is not None
        ]

    def _read_rows(self, labels: list[int]) -> dict[int, _CachedRow]:
        found: dict[int, _CachedRow] = {}
        for label, doc_id, version, metadata in self._live_by_label("id, version, metadata", labels):
            found[label] = self._cache_row(label, doc_id, version, metadata)
        return found

    def _cache_row(self, label: int, doc_id: str, version: int, metadata_json: str) -> _CachedRow:
        """The cached form of a live row just read; only under the graph's shared lock (see _RowCache)."""
        row = (doc_id, version, json.loads(metadata_json))
        self._rows.put(label, row)
        return row

    def _texts(self, labels: list[int]) -> dict[int, str]:
        # Not cached: texts can be large, and most queries do not ask for them.
        return dict(self._live_by_label("text", labels))

    def _live_by_label(self, columns: str, labels: list[int]) -> list[tuple[Any, ...]]:
        """(label, *columns) of the live rows among `labels`, in no particular order."""
        rows: list[tuple[Any, ...]] = []
        with self._reading() as conn:
            for chunk in _chunks(labels):
                rows += conn.execute(
                    f"SELECT label, {columns} FROM documents WHERE deleted = 0 AND label IN ({_placeholders(chunk)})",
                    chunk,
                )
        return rows

    # ---- compaction ---------------------------------------------------------------------------------------

    def dead_fraction(self) -> float:
        """Share of the graph's elements that belong to deleted documents: what `compact()` would drop.

        Read from memory. It survives a reopen (the saved graph keeps its deleted marks) but not a graph rebuilt
        on open, although SQLite may still hold the dead rows' pages then.
        """
        elements = self._graph.element_count
        if elements == 0:
            return 0.0
        # Every live row has exactly one element, so the rest are deleted; read without a lock, hence the clamp.
        return min(1.0, max(0.0, (elements - self._live_count) / elements))

    def compact(self) -> int:
        """Drops deleted documents from the graph and SQLite and returns the bytes given back to the file system.

        The result is `storage_bytes()` before minus after; it can be negative when the graph file on disk was
        older, and smaller, than the graph in memory. Searches and writes go on meanwhile (see the module
        docstring); a second compaction waits for the first. Tombstones stay, so the version check still holds.
        """
        with self._compact_lock:
            self._ensure_open()
            before = self.storage_bytes()
            self._compact_graph()
            self._compact_database()
            return before - self.storage_bytes()

    def _compact_graph(self) -> None:
        graph, snapshot_seq = self._graph_from_snapshot()
        with self._write_lock:
            self._ensure_open()
            # No write can commit while the write lock is held, so after this replay the new graph holds exactly
            # what the old one does, minus deleted elements.
            self._replay(graph, snapshot_seq)
            with self._graph_lock.exclusive():
                self._graph = graph
            # As in a flush: the rows the saved graph holds must be durable before it is.
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._save_graph_locked()

    def _graph_from_snapshot(self) -> tuple[hnswlib.Index, int]:
        """A new graph of the rows live as of the latest committed write sequence, and that sequence."""
        with self._reading() as conn:
            (snapshot_seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM documents").fetchone()
        return self._build_graph(int(snapshot_seq), self._insert_threads), int(snapshot_seq)

    def _compact_database(self) -> None:
        if self._auto_vacuum_mode() == _AUTO_VACUUM_INCREMENTAL:
            self._repack_rows()
        else:
            self._convert_to_incremental_vacuum()
        self._release_free_pages()
        with self._write_lock:
            self._ensure_open()
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _auto_vacuum_mode(self) -> int:
        with self._write_lock:
            self._ensure_open()
            return int(self._writer.execute("PRAGMA auto_vacuum").fetchone()[0])

    def _convert_to_incremental_vacuum(self) -> None:
        # A database created before auto_vacuum was set can only change mode by a VACUUM, which rewrites the whole
        # file: writes wait until it ends, and it needs disk for a temporary copy of the live data plus that copy
        # in the WAL. Searches go on reading their snapshots. It happens once per database.
        with self._write_lock:
            self._ensure_open()
            self._writer.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._writer.execute("VACUUM")

    def _repack_rows(self) -> None:
        """Deletes and re-inserts every row present now, in chunks, so SQLite frees the half-empty pages.

        Re-inserted rows get new rowids past the end of the table, so they fill fresh pages densely, reusing the
        pages the previous chunk freed. Content, labels and sequences do not change: searches, the graph and
        the replay on open never notice.
        """
        with self._write_lock:
            self._ensure_open()
            (last,) = self._writer.execute("SELECT COALESCE(MAX(rowid), 0) FROM documents").fetchone()
        done = 0
        while done < last:
            with self._write_lock:
                self._ensure_open()
                done = self._repack_chunk(done, last)
                self._checkpoint_if_wal_is_large()

    def _repack_chunk(self, after: int, last: int) -> int:
        """Moves the rows with after < rowid <= last, up to a chunk of them; returns the last rowid moved."""
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            rows = self._writer.execute(
                f"SELECT rowid, {_COLUMNS} FROM documents WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                (after, last, _REPACK_ROWS),
            ).fetchall()
            end = rows[-1][0] if rows else last
            self._writer.execute("DELETE FROM documents WHERE rowid > ? AND rowid <= ?", (after, end))
            self._writer.executemany(_INSERT_ROW, [row[1:] for row in rows])
            self._writer.execute("COMMIT")
        except BaseException:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            raise
        return int(end)

    def _release_free_pages(self) -> None:
        free: int | None = None
        while True:
            with self._write_lock:
                self._ensure_open()
                previous, free = free, int(self._writer.execute("PRAGMA freelist_count").fetchone()[0])
                # Stops when nothing is left, or nothing moved (a database not in incremental mode frees nothing).
                if free == 0 or free == previous:
                    return
                # executescript steps the pragma to the end; execute() would free one page per call.
                self._writer.executescript(f"PRAGMA incremental_vacuum({_VACUUM_PAGES})")
                self._checkpoint_if_wal_is_large()

    # ---- durability and lifecycle -------------------------------------------------------------------------

    def flush(self) -> None:
        with self._write_lock:
            self._ensure_open()
            self._flush_locked()

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._flush_locked()
            self._closed = True
            self._writer.close()
            while self._idle_readers:
                self._idle_readers.pop().close()

    def _flush_locked(self) -> None:
        # TRUNCATE waits for readers like FULL does, and leaves no stale WAL in the storage a flushed index reports.
        self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if self._saved_seq != self._applied_seq or not (self._directory / _GRAPH_FILE).exists():
            self._save_graph_locked()

    def _save_graph_locked(self) -> None:
        # The write lock keeps the graph still; searches running meanwhile only read it, as save_index does.
        graph_path = self._directory / _GRAPH_FILE
        temporary = graph_path.with_name(_GRAPH_FILE + ".tmp")
        self._graph.save_index(str(temporary))
        _fsync(temporary)
        checksum = _crc32(temporary)
        os.replace(temporary, graph_path)
        # Graph first, then its sequence: after a crash in between, the older sequence only makes the next open
        # replay rows the graph already holds (harmless), or rebuild when the recorded size no longer matches.
        meta = {"seq": self._applied_seq, "graph_bytes": graph_path.stat().st_size, "graph_crc32": checksum}
        meta |= {"dim": self._dim, "space": self._space}
        _write_atomically(self._directory / _GRAPH_META_FILE, json.dumps(meta).encode())
        self._saved_seq = self._applied_seq

    def _ensure_open(self) -> None:
        if self._closed:
            raise IndexClosed(f"index {self._name!r} is closed")

    def _connect(self, *, writer: bool = False) -> sqlite3.Connection:
        # Autocommit mode: every read sees all committed writes; writes open explicit transactions.
        conn = sqlite3.connect(self._directory / _DB_FILE, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        if writer:
            # Takes effect only before WAL mode is set and the first table is created, so it comes first; on an
            # existing database it only tells the next VACUUM which mode to convert to. Not on readers: on a
            # database already in incremental mode it writes the header, and would wait for the writer.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A reader connection from a pool: in WAL mode readers run beside each other and the writer."""
        self._ensure_open()
        try:
            conn = self._idle_readers.pop()
        except IndexError:
            conn = self._connect()
        try:
            yield conn
        finally:
            if self._closed:
                conn.close()  # close() ran meanwhile and closed the idle ones only
            else:
                self._idle_readers.append(conn)

    # ---- opening ------------------------------------------------------------------------------------------

    def _check_config(self) -> None:
        expected = {"dim": str(self._dim), "space": self._space}
        # One statement, so a crash cannot leave half a config behind.
        self._writer.execute(
            "INSERT OR IGNORE INTO config (key, value) VALUES (?, ?), (?, ?)",
            [item for pair in expected.items() for item in pair],
        )
        found = dict(self._writer.execute("SELECT key, value FROM config").fetchall())
        if found != expected:
            raise IndexConfigMismatch(
                f"index {self._name!r} in {self._directory} was created with"
                f" dim={found.get('dim')}, space={found.get('space')};"
                f" it is opened with dim={self._dim}, space={self._space}"
            )

    def _read_counters(self) -> tuple[int, int]:
        next_label, seq = self._writer.execute(
            "SELECT COALESCE(MAX(label), -1) + 1, COALESCE(MAX(seq), 0) FROM documents"
        ).fetchone()
        return int(next_label), int(seq)

    def _read_totals(self) -> tuple[int, int]:
        live, max_version = self._writer.execute(
            "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(MAX(version), 0) FROM documents"
        ).fetchone()
        return int(live), int(max_version)

    def _open_graph(self) -> tuple[hnswlib.Index, int]:
        """The graph file caught up with SQLite, or a graph rebuilt from SQLite; and the sequence on disk."""
        loaded = self._load_graph()
        if loaded is not None:
            graph, saved_seq = loaded
            self._replay(graph, saved_seq)
            if self._graph_holds_live_rows(graph):
                return graph, saved_seq
        return self._build_graph(self._seq), -1

    def _load_graph(self) -> tuple[hnswlib.Index, int] | None:
        graph_path = self._directory / _GRAPH_FILE
        try:
            meta = json.loads((self._directory / _GRAPH_META_FILE).read_text())
            # hnswlib checks neither dim nor space when loading, and damaged bytes can crash it outright.
            if (
                meta["dim"] != self._dim
                or meta["space"] != self._space
                or meta["seq"] > self._seq
                or meta["graph_bytes"] != graph_path.stat().st_size
                or meta["graph_crc32"] != _crc32(graph_path)
            ):
                return None
            graph = hnswlib.Index(space=self._space, dim=self._dim)
            graph.load_index(str(graph_path), max_elements=self._initial_capacity)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None
        graph.set_ef(self._ef_search)
        return graph, int(meta["seq"])

    def _replay(self, graph: hnswlib.Index, saved_seq: int) -> None:
        rows = self._writer.execute(
            "SELECT label, deleted, vector FROM documents WHERE seq > ? AND label IS NOT NULL", (saved_seq,)
        )
        adds: dict[int, Vector] = {}
        for label, deleted, vector in rows:
            if deleted:
                # Already marked, or its vector never reached this graph: either way nothing is left to hide.
                with suppress(RuntimeError):
                    graph.mark_deleted(label)
            else:
                adds[label] = np.frombuffer(vector, dtype=np.float32)
        if adds:
            _add_to_graph(graph, list(adds), list(adds.values()))

    def _graph_holds_live_rows(self, graph: hnswlib.Index) -> bool:
        in_graph = set(graph.get_ids_list())
        live = self._writer.execute("SELECT label FROM documents WHERE deleted = 0")
        return all(label in in_graph for (label,) in live)

    def _build_graph(self, up_to_seq: int, threads: int = -1) -> hnswlib.Index:
        """A new graph of the rows live with seq <= `up_to_seq`, sized for the live count plus headroom.

        Rows are read in label order, one short read per batch: a read transaction held for the whole build
        would keep every checkpoint waiting, and writes with them. A row changed during the build has a later
        sequence, so whoever replays the sequences after `up_to_seq` brings it up to date.
        """
        graph = hnswlib.Index(space=self._space, dim=self._dim)
        graph.init_index(
            max_elements=max(self._initial_capacity, int(self._live_count * _GRAPH_HEADROOM)),
            M=self._m,
            ef_construction=self._ef_construction,
        )
        graph.set_ef(self._ef_search)
        after = -1
        while True:
            with self._reading() as conn:
                batch = conn.execute(
                    "SELECT label, vector FROM documents WHERE deleted = 0 AND seq <= ? AND label > ?"
                    " ORDER BY label LIMIT ?",
                    (up_to_seq, after, _EXACT_BATCH),
                ).fetchall()
            if not batch:
                return graph
            _add_to_graph(
                graph,
                [label for label, _ in batch],
                [np.frombuffer(v, np.float32) for _, v in batch],
                threads,
            )
            after = batch[-1][0]

    def _checked_vector(self, vector: Vector, what: str) -> Vector:
        return checked_vector(vector, self._dim, self._name, what)


def _add_to_graph(graph: hnswlib.Index, labels: list[int], vectors: list[Vector], threads: int = -1) -> None:
    """Adds or replaces vectors by label; hnswlib unmarks a deleted label when it is added again."""
    # Counts every label as new, so capacity may run a little ahead; hnswlib raises rather than grows.
    needed = graph.element_count + len(labels)
    if needed > graph.max_elements:
        graph.resize_index(max(needed, 2 * graph.max_elements))
    graph.add_items(np.stack(vectors), np.asarray(labels, dtype=np.int64), num_threads=threads)


def _read_row(conn: sqlite3.Connection, doc_id: str) -> _Row | None:
    row = conn.execute("SELECT label, version, deleted FROM documents WHERE id = ?", (doc_id,)).fetchone()
    return None if row is None else _Row(label=row[0], version=row[1], deleted=bool(row[2]))


def _document(row: tuple[str, int, str, str]) -> StoredDocument:
    doc_id, version, text, metadata = row
    return StoredDocument(id=doc_id, version=version, text=text, metadata=json.loads(metadata))


def _where_sql(where: Metadata | None) -> tuple[str, list[str]]:
    if not where:
        return "1", []
    condition = " AND ".join(
        ["id IN (SELECT id FROM metadata_pairs WHERE key = ? AND value = ?)"] * len(where)
    )
    return condition, [item for pair in where.items() for item in pair]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    if len(scores) <= k:
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _chunks(items: list[_T], size: int = _IN_CHUNK) -> Iterable[list[_T]]:
    return (items[start : start + size] for start in range(0, len(items), size))


def _placeholders(items: Sequence[object]) -> str:
    return ", ".join("?" * len(items))


def _crc32(path: Path) -> int:
    checksum = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            checksum = zlib.crc32(chunk, checksum)
    return checksum


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
