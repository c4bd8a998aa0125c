"""StateStore in one SQLite file: the embedded default for a single replica.

Same semantics as the Redis adapter (one contract test suite runs against both). One connection per store,
guarded by a lock, serves the threads of this process; every write runs in BEGIN IMMEDIATE, so processes
sharing the file serialize on SQLite's write lock instead of failing half-way through a read-modify-write.
Queue order is (priority DESC, seq ASC) with `seq` an insertion counter, exactly as in Redis.
Lease expiry is wall-clock (time.time()): the only clock that every process on the machine shares and that
survives a reboot.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from proxy.adapters.state.arguments import require_number, require_positive, require_ttl
from proxy.core.errors import StateUnavailable

_BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    ns TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (ns, name));
CREATE TABLE IF NOT EXISTS fields (
    ns TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (ns, key, field));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, key TEXT NOT NULL, event TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_key ON events (ns, key, seq);
CREATE TABLE IF NOT EXISTS queue (
    ns TEXT NOT NULL, queue TEXT NOT NULL, id TEXT NOT NULL, priority REAL NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (ns, queue, id));
CREATE INDEX IF NOT EXISTS queue_order ON queue (ns, queue, priority DESC, seq);
CREATE TABLE IF NOT EXISTS leases (
    ns TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (ns, name));
"""


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switches to WAL, retrying: SQLite skips the busy handler for this pragma when processes race to open."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class LocalStateStore:
    """StateStore for the replicas (threads or processes) of one machine sharing `path`."""

    def __init__(self, path: Path, namespace: str) -> None:
        self._path = path
        self._ns = namespace
        self._lock = threading.Lock()
        with self._reachable():
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves rather than let sqlite3 open a
            # deferred transaction that could fail to upgrade to a write lock mid-way.
            self._db = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            _enable_wal(self._db)
            # FULL: a reserved version must survive a power cut, or it could be handed out twice.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def next_versions(self, count: int) -> int:
        require_positive(count, "count")
        with self._write() as db:
            last = self._add_to_counter(db, "versions", count)
        return last - count + 1

    def advance_versions(self, floor: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO counters (ns, name, value) VALUES (?, 'versions', ?) "
                "ON CONFLICT (ns, name) DO UPDATE SET value = MAX(value, excluded.value)",
                (self._ns, floor),
            )

    def get_fields(self, key: str) -> dict[str, str]:
        with self._read() as db:
            rows = db.execute("SELECT field, value FROM fields WHERE ns = ? AND key = ?", (self._ns, key))
            return dict(rows.fetchall())

    def set_fields(self, key: str, values: Mapping[str, str]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO fields (ns, key, field, value) VALUES (?, ?, ?, ?)",
                [(self._ns, key, field, value) for field, value in values.items()],
            )

    def compare_and_set_field(self, key: str, field: str, expected: str | None, new: str) -> bool:
        with self._write() as db:
            row = db.execute(
                "SELECT value FROM fields WHERE ns = ? AND key = ? AND field = ?", (self._ns, key, field)
            ).fetchone()
            if (row[0] if row else None) != expected:
                return False
            db.execute(
                "INSERT OR REPLACE INTO fields (ns, key, field, value) VALUES (?, ?, ?, ?)",
                (self._ns, key, field, new),
            )
            return True

    def append_event(self, key: str, event: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO events (ns, key, event) VALUES (?, ?, ?)", (self._ns, key, event))

    def events(self, key: str) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT event FROM events WHERE ns = ? AND key = ? ORDER BY seq", (self._ns, key)
            )
            return [event for (event,) in rows.fetchall()]

    def enqueue(self, queue: str, ids: Sequence[str], priority: float) -> int:
        require_number(priority)
        if not ids:
            return 0
        with self._write() as db:
            first_seq = self._add_to_counter(db, f"queue:{queue}", len(ids)) - len(ids) + 1
            return sum(
                self._enqueue_one(db, queue, id_, priority, first_seq + i) for i, id_ in enumerate(ids)
            )

    def dequeue(self, queue: str, count: int) -> list[str]:
        require_positive(count, "count")
        with self._write() as db:
            rows = db.execute(
                "SELECT id FROM queue WHERE ns = ? AND queue = ? ORDER BY priority DESC, seq LIMIT ?",
                (self._ns, queue, count),
            ).fetchall()
            db.executemany(
                "DELETE FROM queue WHERE ns = ? AND queue = ? AND id = ?",
                [(self._ns, queue, r[0]) for r in rows],
            )
            return [id_ for (id_,) in rows]

    def queue_size(self, queue: str) -> int:
        with self._read() as db:
            row = db.execute("SELECT COUNT(*) FROM queue WHERE ns = ? AND queue = ?", (self._ns, queue))
            return int(row.fetchone()[0])

    def try_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        ttl = require_ttl(ttl_s)
        with self._write() as db:
            now = time.time()
            if self._live_owner(db, name, now) not in (None, owner):
                return False
            db.execute(
                "INSERT OR REPLACE INTO leases (ns, name, owner, expires_at) VALUES (?, ?, ?, ?)",
                (self._ns, name, owner, now + ttl),
            )
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM leases WHERE ns = ? AND name = ? AND owner = ?", (self._ns, name, owner))

    def lease_owner(self, name: str) -> str | None:
        with self._read() as db:
            return self._live_owner(db, name, time.time())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _add_to_counter(self, db: sqlite3.Connection, name: str, amount: int) -> int:
        rows = db.execute(
            "INSERT INTO counters (ns, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (ns, name) DO UPDATE SET value = value + excluded.value RETURNING value",
            (self._ns, name, amount),
        ).fetchall()  # fetchall steps the statement to its end, so COMMIT finds nothing in progress
        return int(rows[0][0])

    def _enqueue_one(self, db: sqlite3.Connection, queue: str, id_: str, priority: float, seq: int) -> bool:
        inserted = db.execute(
            "INSERT OR IGNORE INTO queue (ns, queue, id, priority, seq) VALUES (?, ?, ?, ?, ?)",
            (self._ns, queue, id_, priority, seq),
        ).rowcount
        if not inserted:
            # Already queued: keep the higher priority and the original place among equals (as Redis does).
            db.execute(
                "UPDATE queue SET priority = ? WHERE ns = ? AND queue = ? AND id = ? AND priority < ?",
                (priority, self._ns, queue, id_, priority),
            )
        return bool(inserted)

    def _live_owner(self, db: sqlite3.Connection, name: str, now: float) -> str | None:
        row = db.execute(
            "SELECT owner FROM leases WHERE ns = ? AND name = ? AND expires_at > ?", (self._ns, name, now)
        ).fetchone()
        return row[0] if row else None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._reachable(), self._lock:
            yield self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._reachable(), self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.OperationalError, OSError) as error:
            raise StateUnavailable(_unreachable_message(self._path, error)) from error


def _unreachable_message(path: Path, error: Exception) -> str:
    return (
        f"local state store {path} is unusable ({error}). Check that its directory exists and is writable, "
        "and that no other process holds the file locked for long."
    )
