"""The read statements of one index's table, composed and rendered to bytes once, when the index opens.

Rendering once takes the SQL composition off the query path, and identical bytes are what psycopg keys its
prepared statements on: after a few runs on a connection (its prepare_threshold), the server parses a
statement no more.

The query vector is a named parameter (`%(query)b`): psycopg sends a name used twice once, as `$1`, and `b`
sends it in pgvector's binary form (the `register_vector` dumpers of every pooled connection), so neither
side formats or parses 384 floats as text.

`run_with_settings` runs one of them with settings for that statement alone (a deadline, a larger
ef_search, no index scans) in the statement's own round trip.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from proxy.adapters.pgvector.connection import Connection
from proxy.adapters.pgvector.schema import IndexTable

# Marks the exact statement apart from the approximate one: their text would be the same, and a prepared
# statement's cached generic plan is not made again when enable_indexscan changes.
_EXACT = sql.SQL("/* exact: enable_indexscan off */ ")


@dataclass(frozen=True)
class NearestStatements:
    """k-NN over the table, keyed by (include_text, filtered); parameters `query`, `k` and, when filtered,
    `where` (a JSON object the row's metadata must contain)."""

    approximate: Mapping[tuple[bool, bool], bytes]
    exact: Mapping[tuple[bool, bool], bytes]


@dataclass(frozen=True)
class ReadStatements:
    get: bytes  # (ids,) -> id, version, text, metadata of the live ones
    versions: bytes  # (ids,) -> id, version, tombstones included
    scan_first: bytes  # (limit,) -> live documents in id order
    scan_after: bytes  # (after_id, limit,) -> the same, past a cursor
    count: bytes
    max_version: bytes
    storage_bytes: bytes
    nearest: NearestStatements


def read_statements(table: IndexTable) -> ReadStatements:
    t = table.identifier
    document = sql.SQL("SELECT id, version, text, metadata FROM {t} WHERE NOT deleted").format(t=t)
    return ReadStatements(
        get=_render(document + sql.SQL(" AND id = ANY(%s::text[])")),
        versions=_render(sql.SQL("SELECT id, version FROM {t} WHERE id = ANY(%s::text[])").format(t=t)),
        # The id column's "C" collation makes this the order of Python strings. Two statements rather than
        # `(%s IS NULL OR id > %s)`: a prepared generic plan could not use the primary key for that OR, and
        # would read the whole table for every page.
        scan_first=_render(document + sql.SQL(" ORDER BY id LIMIT %s")),
        scan_after=_render(document + sql.SQL(" AND id > %s ORDER BY id LIMIT %s")),
        count=_render(sql.SQL("SELECT count(*) FROM {t} WHERE NOT deleted").format(t=t)),
        max_version=_render(sql.SQL("SELECT COALESCE(max(version), 0) FROM {t}").format(t=t)),
        storage_bytes=_render(
            # Table, TOAST and every index on it, as PostgreSQL accounts them.
            sql.SQL("SELECT pg_total_relation_size({name}::regclass)").format(
                name=sql.Literal(table.regclass)
            )
        ),
        nearest=NearestStatements(
            approximate={key: _render(_nearest(table, *key)) for key in _VARIANTS},
            exact={key: _render(_EXACT + _nearest(table, *key)) for key in _VARIANTS},
        ),
    )


_VARIANTS = [(include_text, filtered) for include_text in (False, True) for filtered in (False, True)]


def _nearest(table: IndexTable, include_text: bool, filtered: bool) -> sql.Composed:
    # ORDER BY the operator expression itself (not the output column's name): the form the HNSW index serves.
    return sql.SQL(
        "SELECT id, version, {text}, metadata, embedding {op} %(query)b AS distance FROM {t}"
        " WHERE embedding IS NOT NULL{filter} ORDER BY embedding {op} %(query)b LIMIT %(k)s"
    ).format(
        t=table.identifier,
        op=table.distance_operator,
        filter=sql.SQL(" AND metadata @> %(where)s::jsonb" if filtered else ""),
        text=sql.SQL("text" if include_text else "''"),
    )


def _render(statement: sql.Composable) -> bytes:
    # No connection needed: table names are checked ASCII identifiers, quoted the same in every encoding.
    return statement.as_bytes(None)


# pgvector's bounds for hnsw.ef_search; an HNSW scan returns at most ef_search rows.
MIN_EF_SEARCH, MAX_EF_SEARCH = 1, 1_000


def bounded_ef_search(ef_search: int) -> int:
    return min(max(ef_search, MIN_EF_SEARCH), MAX_EF_SEARCH)


def search_settings(k: int, ef_search: int, timeout_s: float | None) -> dict[str, str]:
    """Settings for one approximate search, for that statement alone (`run_with_settings`)."""
    settings: dict[str, str] = {}
    if k > ef_search:
        # An HNSW scan yields at most ef_search rows, before the `where` filter and the tombstone check; the
        # connection's own value stays as configured.
        settings["hnsw.ef_search"] = str(min(k, MAX_EF_SEARCH))
    if timeout_s is not None:
        # The fan-out stops waiting for this leg at its deadline; the server then stops working on it.
        settings["statement_timeout"] = f"{max(1, round(timeout_s * 1000))}ms"
    return settings


@contextmanager
def search_deadline(index: str, timeout_s: float | None) -> Iterator[None]:
    """Turns a search cancelled by its own statement_timeout into TimeoutError."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        if timeout_s is None:
            raise  # cancelled from outside (pg_cancel_backend), not by this search's deadline
        milliseconds = max(1, round(timeout_s * 1000))
        raise TimeoutError(
            f"pgvector index {index!r}: the search ran past its {milliseconds} ms deadline"
        ) from exc


_SET_LOCAL = "SELECT set_config(%s, %s, true)"


def run_with_settings(
    conn: Connection, statement: bytes, params: Mapping[str, Any], settings: Mapping[str, str]
) -> Sequence[tuple[Any, ...]]:
    """The rows of `statement`, run with `settings` in force for it alone, in one round trip.

    With settings, the statements go as one pipeline that ends in one Sync: the server runs everything before
    a Sync in one implicit transaction, so `set_config(..., true)` (SET LOCAL) holds for the statement and
    ends with it, on a connection in autocommit and without a BEGIN/COMMIT exchange of its own."""
    if not settings:
        return conn.execute(statement, params).fetchall()
    with conn.pipeline():
        for name, value in settings.items():
            conn.execute(_SET_LOCAL, (name, value))
        cursor = conn.execute(statement, params)
    # Fetched after the block, whose exit sends the one Sync: a fetch inside it would sync first, and the exit
    # would then send a second, empty Sync and wait for its answer, a round trip more.
    return cursor.fetchall()
