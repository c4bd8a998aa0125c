"""Version-checked writes: the version CAS of each document inside a write transaction, and what the whole
write call must change in the graph once SQLite commits."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from proxy.adapters.hnsw.store import read_row, write_document, write_tombstone
from proxy.core.model import IndexRecord, Vector, WriteResult


@dataclass
class PendingWrite:
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


class WriteCounters:
    """The next free hnswlib label and the latest write sequence; taken only under the index's write lock."""

    def __init__(self, next_label: int, seq: int) -> None:
        self.next_label = next_label
        self.seq = seq

    def take_label(self) -> int:
        # A rolled-back transaction leaves a gap; labels only need to be unique.
        label = self.next_label
        self.next_label += 1
        return label

    def take_seq(self) -> int:
        self.seq += 1
        return self.seq


def store_record(
    conn: sqlite3.Connection,
    record: IndexRecord,
    vector: Vector,
    counters: WriteCounters,
    pending: PendingWrite,
) -> bool:
    """Writes `record` unless its row holds the same or a newer version; True when it was written."""
    # Version CAS: a late backfill or re-embed must not overwrite a newer write or revive a tombstone.
    current = read_row(conn, record.id)
    if current is not None and current.version >= record.version:
        return False
    label = current.label if current is not None and current.label is not None else counters.take_label()
    write_document(conn, record, label, vector, counters.take_seq())
    pending.adds[label] = vector
    pending.touched.append(label)
    pending.wrote_version(record.version)
    if current is None or current.deleted:
        pending.live_delta += 1
    return True


def store_tombstone(
    conn: sqlite3.Connection, doc_id: str, version: int, counters: WriteCounters, pending: PendingWrite
) -> bool:
    """Deletes `doc_id` at `version` unless its row holds the same or a newer version; True when it did."""
    current = read_row(conn, doc_id)
    if current is not None and current.version >= version:
        return False
    # Ids never seen get a tombstone too, so a late older write cannot create them.
    write_tombstone(conn, doc_id, version, counters.take_seq())
    pending.wrote_version(version)
    if current is not None and not current.deleted and current.label is not None:
        pending.removes.append(current.label)
        pending.touched.append(current.label)
        pending.live_delta -= 1
    return True
