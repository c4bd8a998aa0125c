"""Batch writes under the version compare-and-set: one INSERT ... ON CONFLICT DO UPDATE ... WHERE version <
excluded.version per batch, a single statement and so a transaction of its own (the connection is in
autocommit: no BEGIN/COMMIT round trips).

The batch is atomic, and concurrent writers of one id serialize on its row lock, so the highest version wins
whatever the arrival order. A write is durable once it is acknowledged (committed). Vectors go as one
binary vector[] parameter (numpy float32 arrays, `register_vector`'s dumper): stored bit for bit, with no
text formatting per row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from proxy.adapters.pgvector.connection import Connection, IndexConnectionPool
from proxy.core.model import IndexRecord, Vector

_WRITE_ATTEMPTS = 3


def upsert_statement(table: sql.Identifier) -> bytes:
    """Writes the rows of `upsert_params`; returns the ids it changed. Rendered once per index."""
    return (
        sql.SQL(
            "INSERT INTO {t} AS t (id, version, deleted, text, metadata, embedding)"
            " SELECT u.id, u.version, false, u.text, u.metadata, u.embedding"
            " FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::jsonb[], %b::vector[])"
            "  AS u(id, version, text, metadata, embedding)"
            # Rows are locked in id order, so two overlapping batches cannot deadlock each other.
            " ORDER BY u.id"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = false,"
            "  text = excluded.text, metadata = excluded.metadata, embedding = excluded.embedding"
            # Version CAS: a late backfill or re-embed must not overwrite a newer write or revive a tombstone.
            " WHERE t.version < excluded.version"
            " RETURNING id"
        )
        .format(t=table)
        .as_bytes(None)
    )


def upsert_params(
    records: Sequence[IndexRecord], vectors: Sequence[Vector], positions: Sequence[int]
) -> tuple[list[Any], ...]:
    """The columns of `upsert_statement` for the records (and their checked vectors) at `positions`."""
    return (
        [records[i].id for i in positions],
        [records[i].version for i in positions],
        [records[i].text for i in positions],
        [json.dumps(records[i].metadata) for i in positions],
        [vectors[i] for i in positions],
    )


def tombstone_statement(table: sql.Identifier) -> bytes:
    """Tombstones the ids of its second parameter at the version of its first; returns the ids it changed.
    Rendered once per index."""
    return (
        sql.SQL(
            "INSERT INTO {t} AS t (id, version, deleted, text, metadata, embedding)"
            " SELECT u.id, %s, true, '', '{{}}', NULL FROM unnest(%s::text[]) AS u(id) ORDER BY u.id"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = true,"
            "  text = '', metadata = '{{}}', embedding = NULL"
            " WHERE t.version < excluded.version"
            " RETURNING id"
        )
        .format(t=table)
        .as_bytes(None)
    )


def run_write(pool: IndexConnectionPool, query: bytes, params: Sequence[Any]) -> set[str]:
    """Runs one write statement, a transaction of its own; returns the ids it changed."""

    def changed(conn: Connection) -> set[str]:
        return {row[0] for row in conn.execute(query, params)}

    for attempt in range(_WRITE_ATTEMPTS):
        try:
            return pool.write(changed)
        except psycopg.errors.DeadlockDetected:
            # Id-ordered locking prevents deadlocks between our own batches; another client of the table
            # may still cause one. The transaction was rolled back whole, so running it again is safe.
            if attempt == _WRITE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def check_storable(index: str, record: IndexRecord) -> None:
    # PostgreSQL's text and jsonb cannot hold U+0000; refusing up front keeps the batch all-or-nothing
    # with the same ValueError as any other bad record, instead of a driver error halfway through.
    fields = [record.id, record.text, *record.metadata, *record.metadata.values()]
    if any("\x00" in field for field in fields):
        raise ValueError(
            f"index {index!r}: document {record.id!r} has a NUL character, which PostgreSQL cannot store"
        )
