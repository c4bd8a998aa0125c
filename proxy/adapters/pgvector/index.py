"""`VectorIndex` on PostgreSQL with the pgvector extension: one table per index, an HNSW index on it.

The table and its indexes are in `schema`; writes are version compare-and-set batches (`writes`), so `flush`
has nothing to do. Connections come from a psycopg pool (`connection`); the class keeps no other mutable
state, so it is thread-safe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from proxy.adapters.pgvector.connection import IndexConnectionPool, redact_dsn, setup_transaction
from proxy.adapters.pgvector.rows import hit, stored_document, vector_text
from proxy.adapters.pgvector.schema import (
    OPERATORS,
    SETUP_LOCK_KEY,
    IndexTable,
    Space,
    check_table_name,
    default_table,
    ensure_schema,
)
from proxy.adapters.pgvector.writes import (
    batch_outcome,
    check_storable,
    latest_per_id,
    run_write,
    tombstone_statement,
    upsert_params,
    upsert_statement,
)
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult, checked_vector

# pgvector caps hnsw.ef_search here; an HNSW scan returns at most ef_search rows.
_MAX_EF_SEARCH = 1_000


class PgVectorIndex:
    """`VectorIndex` in a PostgreSQL table with pgvector (see the module docstring)."""

    def __init__(
        self,
        name: str,
        dim: int,
        dsn: str,
        *,
        table: str | None = None,
        space: Space = "cosine",
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 40,
        pool_size: int = 8,
        connect_timeout_s: float = 5.0,
    ) -> None:
        """Connects, creates the extension, table and indexes when absent, and checks an existing table.

        Raises Unavailable when the server cannot be reached, ConfigError when pgvector is missing or too old,
        or the table was made for another dim or space.
        """
        if dim <= 0:
            raise ValueError(f"index {name!r}: dim must be positive, got {dim}")
        if space not in OPERATORS:
            raise ValueError(f"index {name!r}: space must be 'cosine' or 'ip', got {space!r}")
        self._name = name
        self._dim = dim
        self._space: Space = space
        table_name = table or default_table(name)
        check_table_name(name, table_name)
        self._table = IndexTable(index=name, name=table_name, dim=dim, space=space)
        self._ef_search = ef_search
        with setup_transaction(name, dsn, connect_timeout_s=connect_timeout_s) as conn:
            ensure_schema(
                conn,
                self._table,
                where_dsn=redact_dsn(dsn),
                hnsw_m=hnsw_m,
                hnsw_ef_construction=hnsw_ef_construction,
            )
        self._pool = IndexConnectionPool(name, dsn, pool_size=pool_size, connect_timeout_s=connect_timeout_s)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return False

    @property
    def table(self) -> str:
        return self._table.name

    # ---- writes -------------------------------------------------------------------------------------------

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        # Every vector is checked before anything is written: a bad batch changes nothing.
        vectors = [self._checked_vector(r.vector, f"document {r.id!r}") for r in records]
        for record in records:
            check_storable(self._name, record)
        winners = latest_per_id(records)
        if not winners:
            return WriteResult()
        ordered = sorted(winners.values(), key=lambda position: records[position].id)
        query = upsert_statement(self._table.identifier)
        written = run_write(self._pool, query, upsert_params(records, vectors, ordered))
        return batch_outcome(records, winners, written)

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        unique = sorted(dict.fromkeys(ids))
        if not unique:
            return WriteResult()
        written = run_write(self._pool, tombstone_statement(self._table.identifier), (version, unique))
        ordered = list(dict.fromkeys(ids))
        return WriteResult(
            written=tuple(i for i in ordered if i in written),
            stale=tuple(i for i in ordered if i not in written),
        )

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        query = sql.SQL(
            "SELECT id, version, text, metadata FROM {t} WHERE id = ANY(%s::text[]) AND NOT deleted"
        ).format(t=self._table.identifier)
        with self._pool.transaction() as conn:
            found = {row[0]: stored_document(row) for row in conn.execute(query, (list(ids),))}
        return [found[doc_id] for doc_id in ids if doc_id in found]

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        query = sql.SQL("SELECT id, version FROM {t} WHERE id = ANY(%s::text[])").format(
            t=self._table.identifier
        )
        with self._pool.transaction() as conn:
            return {doc_id: int(version) for doc_id, version in conn.execute(query, (list(ids),))}

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        # The id column's "C" collation makes this the order of Python strings. Two statements rather than
        # `(%s IS NULL OR id > %s)`: a prepared generic plan could not use the primary key for that OR, and
        # would read the whole table for every page.
        after = sql.SQL("") if after_id is None else sql.SQL(" AND id > %s")
        query = sql.SQL(
            "SELECT id, version, text, metadata FROM {t} WHERE NOT deleted{after} ORDER BY id LIMIT %s"
        ).format(t=self._table.identifier, after=after)
        params = (limit,) if after_id is None else (after_id, limit)
        with self._pool.transaction() as conn:
            return [stored_document(row) for row in conn.execute(query, params)]

    def search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None = None,
        *,
        include_text: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        with self._pool.transaction() as conn:
            # An HNSW scan yields at most ef_search rows, before the `where` filter and the tombstone check.
            ef_search = min(max(self._ef_search, k), _MAX_EF_SEARCH)
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
            if timeout_s is not None:
                # The fan-out stops waiting for this leg at its deadline; the server then stops working on it.
                milliseconds = max(1, round(timeout_s * 1000))
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{milliseconds}ms",))
            try:
                hits = self._nearest(conn, query, k, where, include_text)
            except psycopg.errors.QueryCanceled as exc:
                if timeout_s is None:
                    raise  # cancelled from outside (pg_cancel_backend), not by this search's deadline
                raise TimeoutError(
                    f"pgvector index {self._name!r}: the search ran past its {milliseconds} ms deadline"
                ) from exc
        if len(hits) < k:
            # Short: either fewer than k documents match, or the filter dropped too many of the graph's
            # candidates (pgvector filters after the index scan). The exact answer is right in both cases.
            return self.exact_search(query, k, where, include_text=include_text)
        return hits

    def exact_search(
        self, vector: Vector, k: int, where: Metadata | None = None, *, include_text: bool = False
    ) -> list[Hit]:
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        with self._pool.transaction() as conn:
            # Without index scans the planner can only read every matching row and sort: brute force.
            conn.execute("SET LOCAL enable_indexscan = off")
            return self._nearest(conn, query, k, where, include_text)

    def _nearest(
        self, conn: psycopg.Connection, query: Vector, k: int, where: Metadata | None, include_text: bool
    ) -> list[Hit]:
        filter_sql = sql.SQL(" AND metadata @> %s::jsonb") if where else sql.SQL("")
        statement = sql.SQL(
            "SELECT id, version, {text}, metadata, embedding {op} %s::vector AS distance FROM {t}"
            " WHERE embedding IS NOT NULL{filter} ORDER BY embedding {op} %s::vector LIMIT %s"
        ).format(
            t=self._table.identifier,
            op=self._table.distance_operator,
            filter=filter_sql,
            text=sql.SQL("text" if include_text else "''"),
        )
        query_text = vector_text(query)
        params: list[Any] = [query_text, *([json.dumps(where)] if where else []), query_text, k]
        return [hit(row, self._space, self._name) for row in conn.execute(statement, params)]

    def count(self) -> int:
        return self._scalar(
            sql.SQL("SELECT count(*) FROM {t} WHERE NOT deleted").format(t=self._table.identifier)
        )

    def max_version(self) -> int:
        return self._scalar(
            sql.SQL("SELECT COALESCE(max(version), 0) FROM {t}").format(t=self._table.identifier)
        )

    def storage_bytes(self) -> int:
        """Table, TOAST and every index on it, as PostgreSQL accounts them."""
        return self._scalar(
            sql.SQL("SELECT pg_total_relation_size({name}::regclass)").format(
                name=sql.Literal(self._table.regclass)
            )
        )

    def _scalar(self, query: sql.Composed) -> int:
        with self._pool.transaction() as conn:
            row = conn.execute(query).fetchone()
        assert row is not None, "an aggregate always returns one row"
        return int(row[0])

    # ---- space ---------------------------------------------------------------------------------------------

    def dead_fraction(self) -> float:
        """Share of the table's row versions that are dead: old versions of updated and deleted documents.

        From PostgreSQL's statistics: cheap, but approximate, and several seconds behind the writes at times (a
        server process reports its counts when it goes idle). A tombstone row counts as live: it must stay.
        """
        query = "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass"
        with self._pool.transaction() as conn:
            row = conn.execute(query, (self._table.regclass,)).fetchone()
        live, dead = (0, 0) if row is None else (int(row[0]), int(row[1]))
        return 0.0 if live + dead == 0 else dead / (live + dead)

    def compact(self) -> int:
        """Vacuums the table and rebuilds its HNSW index; returns storage_bytes before minus after.

        VACUUM makes dead rows' space reusable (it gives back only empty pages at the end of the table) and
        REINDEX CONCURRENTLY rebuilds the graph from the live rows alone. Neither blocks searches or writes;
        unlike VACUUM FULL, which would. Concurrent compactions of one table, from any process, take turns.
        """
        before = self.storage_bytes()
        lock = (SETUP_LOCK_KEY, self._table.name)
        with self._pool.autocommit() as conn:  # neither statement may run inside a transaction block
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", lock)
            try:
                conn.execute(sql.SQL("VACUUM (ANALYZE) {t}").format(t=self._table.identifier))
                conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {i}").format(i=self._table.hnsw_index))
            finally:
                # A session lock outlives the statement; the connection goes back to the pool still holding it.
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", lock)
        return before - self.storage_bytes()

    # ---- durability and lifecycle -------------------------------------------------------------------------

    def flush(self) -> None:
        """Nothing to do: every acknowledged write is a committed, durable transaction."""
        self._pool.ensure_open()

    def close(self) -> None:
        self._pool.close()

    def drop(self) -> None:
        """Drops the table with its indexes, then closes: for tests, and for an index that was retired."""
        with self._pool.transaction() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=self._table.identifier))
        self.close()

    def _checked_vector(self, vector: Vector, what: str) -> Vector:
        return checked_vector(vector, self._dim, self._name, what)
