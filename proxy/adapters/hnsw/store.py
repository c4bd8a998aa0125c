"""The SQLite document store of an index, its source of truth: every document row, tombstones included, with
its vector and the write sequence of its latest change.

SQLite runs in WAL mode with synchronous=NORMAL: a commit survives a process crash, and a TRUNCATE checkpoint
(`checkpoint()`, which a flush runs) makes it survive power loss. One connection writes, in transactions its
caller opens while holding the index's write lock; reads take a connection from a pool, and in WAL mode they
run beside each other and beside the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from proxy.core.errors import IndexClosed, IndexConfigMismatch
from proxy.core.model import IndexRecord, Metadata, StoredDocument, Vector

_T = TypeVar("_T")

_DB_FILE = "index.sqlite3"
# The WAL is checkpointed and truncated when it outgrows a quarter of the database, within these bounds: it
# then adds a bounded share to the storage a migration's peak is measured in, even for a small index.
_WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024
_WAL_CHECKPOINT_MIN_BYTES = 1024 * 1024
# Vectors read per query by an exact search or a graph build.
_VECTOR_BATCH = 4_096
# Keeps `IN (...)` lists well under SQLite's limit on parameters per statement.
_IN_CHUNK = 500

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

_ROW_COLUMN_NAMES = ("id", "label", "version", "deleted", "text", "metadata", "vector", "seq")
ROW_COLUMNS = ", ".join(_ROW_COLUMN_NAMES)
"""Every column of a documents row, in the order `INSERT_ROW` takes them."""
INSERT_ROW = f"INSERT INTO documents ({ROW_COLUMNS}) VALUES ({', '.join('?' * len(_ROW_COLUMN_NAMES))})"

_UPSERT_DOCUMENT = (
    f"{INSERT_ROW} ON CONFLICT (id) DO UPDATE SET label = excluded.label, version = excluded.version,"
    " deleted = 0, text = excluded.text, metadata = excluded.metadata, vector = excluded.vector,"
    " seq = excluded.seq"
)
# A tombstone keeps the row's label: a document written again later takes its graph element back.
_UPSERT_TOMBSTONE = (
    f"{INSERT_ROW} ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = 1, text = '',"
    " metadata = '{}', vector = NULL, seq = excluded.seq"
)


@dataclass(frozen=True)
class RowState:
    """What the version check needs of a document's row."""

    label: int | None
    version: int
    deleted: bool


def read_row(conn: sqlite3.Connection, doc_id: str) -> RowState | None:
    row = conn.execute("SELECT label, version, deleted FROM documents WHERE id = ?", (doc_id,)).fetchone()
    return None if row is None else RowState(label=row[0], version=row[1], deleted=bool(row[2]))


def write_document(
    conn: sqlite3.Connection, record: IndexRecord, label: int, vector: Vector, seq: int
) -> None:
    """Inserts or replaces the row of `record` (a tombstone comes back to life), and its metadata pairs."""
    metadata = json.dumps(record.metadata, sort_keys=True)
    conn.execute(
        _UPSERT_DOCUMENT, (record.id, label, record.version, 0, record.text, metadata, vector.tobytes(), seq)
    )
    conn.execute("DELETE FROM metadata_pairs WHERE id = ?", (record.id,))
    conn.executemany(
        "INSERT INTO metadata_pairs (key, value, id) VALUES (?, ?, ?)",
        [(key, value, record.id) for key, value in record.metadata.items()],
    )


def write_tombstone(conn: sqlite3.Connection, doc_id: str, version: int, seq: int) -> None:
    """Turns the row of `doc_id` into a tombstone (id and version only), creating it when absent."""
    conn.execute(_UPSERT_TOMBSTONE, (doc_id, None, version, 1, "", "{}", None, seq))
    conn.execute("DELETE FROM metadata_pairs WHERE id = ?", (doc_id,))


class DocumentStore:
    """The SQLite database of one index directory: its writer connection, a pool of readers, the queries."""

    def __init__(self, name: str, directory: Path, dim: int, space: str) -> None:
        """Opens the database, creating its tables when absent.

        Raises IndexConfigMismatch when the database was created for another dim or space.
        """
        self._name = name
        self._directory = directory
        self._dim = dim
        self._idle_readers: list[sqlite3.Connection] = []
        self._closed = False
        self.writer = self._connect(writer=True)
        """The one connection that writes; its users hold the index's write lock."""
        try:
            self.writer.execute("PRAGMA wal_autocheckpoint = 0")
            self.writer.executescript(_SCHEMA)
            self._check_config(dim, space)
        except BaseException:
            self.writer.close()
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    def ensure_open(self) -> None:
        if self._closed:
            raise IndexClosed(f"index {self._name!r} is closed")

    def close(self) -> None:
        self._closed = True
        self.writer.close()
        while self._idle_readers:
            self._idle_readers.pop().close()

    # ---- writing ------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer inside BEGIN IMMEDIATE, rolled back if the body raises; the body itself commits."""
        self.writer.execute("BEGIN IMMEDIATE")
        try:
            yield self.writer
        except BaseException:
            if self.writer.in_transaction:
                self.writer.execute("ROLLBACK")
            raise

    def checkpoint(self) -> None:
        # TRUNCATE waits for readers like FULL does, and leaves no stale WAL in the storage a flushed index reports.
        self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def checkpoint_if_wal_is_large(self) -> None:
        # Automatic checkpoints are off on the writer: they would fsync inside a commit, while searches wait.
        with suppress(FileNotFoundError):
            wal_bytes = (self._directory / f"{_DB_FILE}-wal").stat().st_size
            database_bytes = (self._directory / _DB_FILE).stat().st_size
            limit = min(_WAL_CHECKPOINT_BYTES, max(_WAL_CHECKPOINT_MIN_BYTES, database_bytes // 4))
            if wal_bytes > limit:
                self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- opening and the graph ----------------------------------------------------------------------------

    def read_counters(self) -> tuple[int, int]:
        """The next free label and the latest write sequence."""
        next_label, seq = self.writer.execute(
            "SELECT COALESCE(MAX(label), -1) + 1, COALESCE(MAX(seq), 0) FROM documents"
        ).fetchone()
        return int(next_label), int(seq)

    def read_totals(self) -> tuple[int, int]:
        """The number of live documents and the highest version of any row."""
        live, max_version = self.writer.execute(
            "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(MAX(version), 0) FROM documents"
        ).fetchone()
        return int(live), int(max_version)

    def latest_seq(self) -> int:
        """The latest committed write sequence."""
        with self._reading() as conn:
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM documents").fetchone()
        return int(seq)

    def rows_written_after(self, seq: int) -> Iterable[tuple[Any, ...]]:
        """(label, deleted, vector) of the labelled rows changed after write sequence `seq` (writer)."""
        return self.writer.execute(
            "SELECT label, deleted, vector FROM documents WHERE seq > ? AND label IS NOT NULL", (seq,)
        )

    def live_labels(self) -> Iterable[int]:
        return (label for (label,) in self.writer.execute("SELECT label FROM documents WHERE deleted = 0"))

    def live_vector_batch(self, up_to_seq: int, after_label: int) -> list[tuple[int, bytes]]:
        """(label, vector) of the next live rows with seq <= `up_to_seq` in label order, in one short read."""
        with self._reading() as conn:
            return conn.execute(
                "SELECT label, vector FROM documents WHERE deleted = 0 AND seq <= ? AND label > ?"
                " ORDER BY label LIMIT ?",
                (up_to_seq, after_label, _VECTOR_BATCH),
            ).fetchall()

    # ---- reading ------------------------------------------------------------------------------------------

    def live_documents(self, ids: list[str]) -> dict[str, StoredDocument]:
        found: dict[str, StoredDocument] = {}
        with self._reading() as conn:
            for chunk in _chunks(ids):
                rows = conn.execute(
                    "SELECT id, version, text, metadata FROM documents"
                    f" WHERE deleted = 0 AND id IN ({_placeholders(chunk)})",
                    chunk,
                )
                found.update((row[0], _stored_document(row)) for row in rows)
        return found

    def version_rows(self, ids: list[str]) -> list[tuple[Any, ...]]:
        """(id, version, label, deleted, metadata JSON) of the rows of `ids`, live or tombstoned."""
        rows: list[tuple[Any, ...]] = []
        with self._reading() as conn:
            for chunk in _chunks(ids):
                rows += conn.execute(
                    f"SELECT id, version, label, deleted, metadata FROM documents WHERE id IN ({_placeholders(chunk)})",
                    chunk,
                )
        return rows

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        # SQLite's BINARY collation compares UTF-8 bytes, which orders like Python compares str.
        after = "" if after_id is None else "AND id > ?"
        params = [max(0, limit)] if after_id is None else [after_id, max(0, limit)]
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT id, version, text, metadata FROM documents WHERE deleted = 0 {after} ORDER BY id LIMIT ?",
                params,
            ).fetchall()
        return [_stored_document(row) for row in rows]

    def live_by_label(self, columns: str, labels: list[int]) -> list[tuple[Any, ...]]:
        """(label, *columns) of the live rows among `labels`, in no particular order."""
        rows: list[tuple[Any, ...]] = []
        with self._reading() as conn:
            for chunk in _chunks(labels):
                rows += conn.execute(
                    f"SELECT label, {columns} FROM documents WHERE deleted = 0 AND label IN ({_placeholders(chunk)})",
                    chunk,
                )
        return rows

    def live_vectors(self, where: Metadata | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(labels, vectors as rows of a matrix) of the live documents matching `where`, batch by batch."""
        condition, params = _where_sql(where)
        with self._reading() as conn:
            cursor = conn.execute(
                f"SELECT label, vector FROM documents WHERE deleted = 0 AND {condition}", params
            )
            while rows := cursor.fetchmany(_VECTOR_BATCH):
                labels = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
                matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
                yield labels, matrix.reshape(len(rows), self._dim)

    def count_matching(self, where: Metadata) -> int:
        condition, params = _where_sql(where)
        with self._reading() as conn:
            return int(
                conn.execute(
                    f"SELECT COUNT(*) FROM documents WHERE deleted = 0 AND {condition}", params
                ).fetchone()[0]
            )

    def labels_matching(self, where: Metadata) -> frozenset[int]:
        condition, params = _where_sql(where)
        with self._reading() as conn:
            rows = conn.execute(f"SELECT label FROM documents WHERE deleted = 0 AND {condition}", params)
            return frozenset(label for (label,) in rows)

    # ---- connections --------------------------------------------------------------------------------------

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
        self.ensure_open()
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

    def _check_config(self, dim: int, space: str) -> None:
        expected = {"dim": str(dim), "space": space}
        # One statement, so a crash cannot leave half a config behind.
        self.writer.execute(
            "INSERT OR IGNORE INTO config (key, value) VALUES (?, ?), (?, ?)",
            [item for pair in expected.items() for item in pair],
        )
        found = dict(self.writer.execute("SELECT key, value FROM config").fetchall())
        if found != expected:
            raise IndexConfigMismatch(
                f"index {self._name!r} in {self._directory} was created with"
                f" dim={found.get('dim')}, space={found.get('space')};"
                f" it is opened with dim={dim}, space={space}"
            )


def _stored_document(row: tuple[str, int, str, str]) -> StoredDocument:
    doc_id, version, text, metadata = row
    return StoredDocument(id=doc_id, version=version, text=text, metadata=json.loads(metadata))


def _where_sql(where: Metadata | None) -> tuple[str, list[str]]:
    if not where:
        return "1", []
    condition = " AND ".join(
        ["id IN (SELECT id FROM metadata_pairs WHERE key = ? AND value = ?)"] * len(where)
    )
    return condition, [item for pair in where.items() for item in pair]


def _chunks(items: list[_T], size: int = _IN_CHUNK) -> Iterable[list[_T]]:
    return (items[start : start + size] for start in range(0, len(items), size))


def _placeholders(items: Sequence[object]) -> str:
    return ", ".join("?" * len(items))
