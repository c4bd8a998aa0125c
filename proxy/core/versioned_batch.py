"""A batch written under the version compare-and-set: which record each id's write comes down to, and the
outcome per record. Shared by the database adapters, whose one statement or upsert per batch can change a
row only once."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.core.model import IndexRecord, WriteResult


def latest_per_id(records: Sequence[IndexRecord]) -> dict[str, int]:
    """Position of the record each id's write comes down to: its highest version, the first one on a tie.

    One INSERT ... ON CONFLICT (or one upsert) cannot change a row twice, so a batch naming an id twice sends
    one record."""
    winners: dict[str, int] = {}
    for position, record in enumerate(records):
        current = winners.get(record.id)
        if current is None or record.version > records[current].version:
            winners[record.id] = position
    return winners


def batch_outcome(records: Sequence[IndexRecord], winners: dict[str, int], written: set[str]) -> WriteResult:
    """Per record: written when it is its id's winner and the write changed that id; stale otherwise."""
    won = [winners[r.id] == position and r.id in written for position, r in enumerate(records)]
    return WriteResult(
        written=tuple(r.id for r, ok in zip(records, won, strict=True) if ok),
        stale=tuple(r.id for r, ok in zip(records, won, strict=True) if not ok),
    )
