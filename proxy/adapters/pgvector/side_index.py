"""`VectorIndex` of a new model's vectors beside an application's table (the new leg of an adoption).

The side table holds (id, version, deleted, embedding) and nothing of the row itself: text and metadata are
read from the application's table by key, so adoption never copies the rows, and a row the application
deleted never comes back in a result (the join finds no row), even before its tombstone is written.
Writes are version compare-and-set batches, as for an index of Switchyard's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import psycopg
from psycopg import sql

from proxy.adapters.pgvector.adopted_ddl import (
    describe,
    inspect_table,
    set_lock_timeout,
    side_table_statements,
)
from proxy.adapters.pgvector.adopted_reads import TableReads, render
from proxy.adapters.pgvector.adopted_table import AdoptedTable, TableConfig, check_name
from proxy.adapters.pgvector.connection import redact_dsn, setup_transaction
from proxy.adapters.pgvector.schema import OPERATORS, SETUP_LOCK_KEY, Space
from proxy.adapters.pgvector.writes import run_write
from proxy.core.errors import ConfigError
from proxy.core.model import IndexRecord, WriteResult, checked_vector
from proxy.core.versioned_batch import batch_outcome, latest_per_id


def default_side_table(table: str, index: str) -> str:
    """`switchyard_<table>_<index>`, cut to PostgreSQL's 63-byte names (the HNSW index adds `_hnsw`)."""
    return re.sub(r"[^a-z0-9_]", "_", f"switchyard_{table}_{index}".lower())[:58]


class SideVectorIndex(TableReads):
    """The new leg of an adoption (see the module docstring); thread-safe."""

    def __init__(
        self,
        name: str,
        dim: int,
        dsn: str,
        *,
        table: TableConfig,
        side_table: str | None = None,
        space: Space = "cosine",
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 40,
        pool_size: int = 8,
        connect_timeout_s: float = 5.0,
    ) -> None:
        """Checks the application's table, and creates the side table and its HNSW index when absent."""
        self._name, self._dim, self._space = name, dim, space
        where = redact_dsn(dsn)
        side_name = check_name("side table", side_table or default_side_table(table.table, name))
        with setup_transaction(name, dsn, connect_timeout_s=connect_timeout_s) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY,))
            self._spec, _ = describe(conn, name, table, where)
            self.side = sql.Identifier(table.schema, side_name)
            set_lock_timeout(conn)
            hnsw = sql.Identifier(f"{side_name}_hnsw")
            for statement in side_table_statements(
                self._spec, self.side, hnsw, dim, space, hnsw_m, hnsw_ef_construction
            ):
                conn.execute(statement)
            _check_dim(conn, name, table.schema, side_name, dim)
        self._sql = _SideStatements(self._spec, self.side, space)
        self._open(
            self._sql, dsn, ef_search=ef_search, pool_size=pool_size, connect_timeout_s=connect_timeout_s
        )

    # ---- writes -------------------------------------------------------------------------------------------

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        vectors = [checked_vector(r.vector, self._dim, self._name, f"document {r.id!r}") for r in records]
        parsed = [self._spec.parse_id(r.id) for r in records]
        if any(p is None for p in parsed):
            bad = next(r.id for r, p in zip(records, parsed, strict=True) if p is None)
            raise ValueError(f"index {self._name!r}: {bad!r} is not a {self._spec.id_type} key")
        winners = latest_per_id(records)
        if not winners:
            return WriteResult()
        positions = sorted(winners.values(), key=lambda i: self._spec.id_key(records[i].id))
        params = (
            [records[i].id for i in positions],
            [records[i].version for i in positions],
            [vectors[i] for i in positions],
        )
        return batch_outcome(records, winners, run_write(self._pool, self._sql.upsert, params))

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        unique = sorted({i for i in ids if self._spec.parse_id(i) is not None}, key=self._spec.id_key)
        written = run_write(self._pool, self._sql.tombstone, (version, unique)) if unique else set()
        ordered = list(dict.fromkeys(ids))
        return WriteResult(
            written=tuple(i for i in ordered if i in written),
            stale=tuple(i for i in ordered if i not in written),
        )

    # ---- catching up --------------------------------------------------------------------------------------

    def rows_behind(self) -> int:
        return self._scalar(self._sql.rows_behind)

    # ---- space and lifecycle ------------------------------------------------------------------------------

    def drop(self) -> None:
        """Drops the side table with its index, then closes (tests; a rolled-back adoption)."""
        self._pool.write(lambda conn: conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.side)))
        self.close()


def _check_dim(conn: psycopg.Connection, index: str, schema: str, table: str, dim: int) -> None:
    facts = inspect_table(conn, schema, table)
    column = facts.columns.get("embedding") if facts else None
    if column is None or column.vector_dim != dim:
        found = column.type if column else "missing"
        raise ConfigError(
            f"index {index!r}: side table {schema}.{table} has embedding {found}, the model gives {dim}"
            " dimensions: it was made for another model; configure another `side_table` or drop it"
        )


class _SideStatements:
    """The new leg's statements, rendered once."""

    def __init__(self, t: AdoptedTable, side: sql.Identifier, space: Space) -> None:
        self._t, self._side, self._space = t, side, space
        ids = sql.SQL("%s::text[]::{}[]").format(t.sql_type)
        document = sql.SQL(
            "SELECT s.id::text, s.version, {text}, {meta} FROM {side} s JOIN {app} t ON t.{id} = s.id"
            " WHERE NOT s.deleted"
        ).format(text=t.text_expression(), meta=t.metadata_expression(), side=side, app=t.app, id=t.id)
        by_id = t.ordered_id("s", "id")
        self.get = render(document + sql.SQL(" AND s.id = ANY({ids})").format(ids=ids))
        self.versions = render(
            sql.SQL("SELECT id::text, version FROM {side} WHERE id = ANY({ids})").format(side=side, ids=ids)
        )
        self.scan_first = render(document + sql.SQL(" ORDER BY {o} LIMIT %s").format(o=by_id))
        self.scan_after = render(
            document + sql.SQL(" AND {o} > %s::{type} ORDER BY {o} LIMIT %s").format(o=by_id, type=t.sql_type)
        )
        self.count = render(sql.SQL("SELECT count(*) FROM {} WHERE NOT deleted").format(side))
        self.max_version = render(sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(side))
        self.storage_bytes = render(
            sql.SQL("SELECT pg_total_relation_size({})").format(sql.Literal(side.as_string()))
        )
        self.upsert = render(
            sql.SQL(
                "INSERT INTO {side} AS s (id, version, deleted, embedding)"
                " SELECT u.id::{type}, u.version, false, u.embedding"
                " FROM unnest(%s::text[], %s::bigint[], %b::vector[]) AS u(id, version, embedding)"
                # Rows locked in key order (the caller sorts): two overlapping batches cannot deadlock.
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = false,"
                " embedding = excluded.embedding WHERE s.version < excluded.version"
                " RETURNING s.id::text"
            ).format(side=side, type=t.sql_type)
        )
        self.tombstone = render(
            sql.SQL(
                "INSERT INTO {side} AS s (id, version, deleted, embedding)"
                " SELECT u.id::{type}, %s, true, NULL FROM unnest(%s::text[]) AS u(id)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = true, embedding = NULL"
                " WHERE s.version < excluded.version RETURNING s.id::text"
            ).format(side=side, type=t.sql_type)
        )
        # Rows without a vector at their current version, and vectors whose row is gone.
        self.rows_behind = render(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {app} t LEFT JOIN {changes} c ON c.id = t.{id}"
                " LEFT JOIN {side} s ON s.id = t.{id}"
                " WHERE s.id IS NULL OR s.deleted OR s.version < coalesce(c.version, 1))"
                " + (SELECT count(*) FROM {side} s WHERE NOT s.deleted"
                " AND NOT EXISTS (SELECT 1 FROM {app} t WHERE t.{id} = s.id))"
            ).format(app=t.app, changes=t.changes, id=t.id, side=side)
        )

    def nearest(self, include_text: bool, exact: bool, keys: tuple[str, ...]) -> bytes:
        t, op = self._t, sql.SQL(OPERATORS[self._space][0])
        return render(
            sql.SQL(
                "{exact}SELECT s.id::text, s.version, {text}, {meta}, s.embedding {op} %(query)b"
                " FROM {side} s JOIN {app} t ON t.{id} = s.id"
                " WHERE s.embedding IS NOT NULL{filters} ORDER BY s.embedding {op} %(query)b LIMIT %(k)s"
            ).format(
                exact=sql.SQL("/* exact */ " if exact else ""),
                text=t.text_expression() if include_text else sql.SQL("''"),
                meta=t.metadata_expression(),
                op=op,
                side=self._side,
                app=t.app,
                id=t.id,
                filters=t.filter_clause(keys),
            )
        )
