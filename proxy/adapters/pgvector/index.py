"""`VectorIndex` on PostgreSQL with the pgvector extension: one table per index, an HNSW index on it.

The table and its indexes are in `schema`; writes are version compare-and-set batches (`writes`), so `flush`
has nothing to do. Every statement is rendered once, when the index opens (`queries`, `writes`), and costs one
round trip on a pooled connection that was set up once (`connection`: autocommit, binary vectors,
hnsw.ef_search). The class keeps no other mutable state, so it is thread-safe.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql

from proxy.adapters.pgvector import deferred
from proxy.adapters.pgvector.connection import (
    Connection,
    IndexConnectionPool,
    connect_kwargs,
    redact_dsn,
    setup_transaction,
    unavailable,
)
from proxy.adapters.pgvector.queries import (
    bounded_ef_search,
    read_statements,
    run_with_settings,
    search_deadline,
    search_settings,
)
from proxy.adapters.pgvector.rows import hit, stored_document
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
    check_storable,
    run_write,
    tombstone_statement,
    upsert_params,
    upsert_statement,
)
from proxy.core.errors import IndexClosed
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult, checked_vector
from proxy.core.ports import SearchIndexState
from proxy.core.versioned_batch import batch_outcome, latest_per_id

BuildIndex = Literal["live", "deferred"]

log = logging.getLogger(__name__)


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
        build_index: BuildIndex = "live",
        build_at: float = 1.0,
    ) -> None:
        """Connects, creates the extension, table and indexes when absent, and checks an existing table.

        `build_index="deferred"`: a table without its HNSW index stays without it until `build_search_index`
        (the migration's worker calls it once the backfill reaches `build_at`; see `deferred`).

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
        self._ef_search = bounded_ef_search(ef_search)
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._hnsw = (hnsw_m, hnsw_ef_construction)
        # Live: an index found unusable at open is rebuilt as soon as a worker can (see below).
        self._build_at = build_at if build_index == "deferred" else 0.0
        self._search_index_built = build_index == "live"
        self._builder: Connection | None = None
        self._builder_lock = threading.Lock()
        self._closed = False
        with setup_transaction(name, dsn, connect_timeout_s=connect_timeout_s) as conn:
            ensure_schema(
                conn,
                self._table,
                where_dsn=redact_dsn(dsn),
                hnsw_m=hnsw_m,
                hnsw_ef_construction=hnsw_ef_construction,
                defer_hnsw=build_index == "deferred",
            )
            if build_index == "live" and deferred.hnsw_state(conn, self._table) == "invalid":
                # Left by a deferred build that was cancelled before the config turned live: searches scan
                # the table until it is rebuilt, which a migration's worker does at once (build_at 0).
                self._search_index_built = False
                log.warning(
                    "pgvector index %r: table %s has an INVALID HNSW index (a cancelled CONCURRENTLY build);"
                    " searches scan the table until it is rebuilt",
                    name,
                    table_name,
                )
        self._reads = read_statements(self._table)
        self._upsert = upsert_statement(self._table.identifier)
        self._tombstone = tombstone_statement(self._table.identifier)
        self._pool = IndexConnectionPool(
            name,
            dsn,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            # Set once per connection, not per query; a search for more than ef_search neighbours raises it
            # for its own statement (`search`).
            settings={"hnsw.ef_search": str(self._ef_search)},
        )

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
        written = run_write(self._pool, self._upsert, upsert_params(records, vectors, ordered))
        return batch_outcome(records, winners, written)

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        unique = sorted(dict.fromkeys(ids))
        if not unique:
            return WriteResult()
        written = run_write(self._pool, self._tombstone, (version, unique))
        ordered = list(dict.fromkeys(ids))
        return WriteResult(
            written=tuple(i for i in ordered if i in written),
            stale=tuple(i for i in ordered if i not in written),
        )

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        rows = self._pool.read(lambda conn: conn.execute(self._reads.get, (list(ids),)).fetchall())
        found = {row[0]: stored_document(row) for row in rows}
        return [found[doc_id] for doc_id in ids if doc_id in found]

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        rows = self._pool.read(lambda conn: conn.execute(self._reads.versions, (list(ids),)).fetchall())
        return {doc_id: int(version) for doc_id, version in rows}

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        query = self._reads.scan_first if after_id is None else self._reads.scan_after
        params: tuple[str | int, ...] = (limit,) if after_id is None else (after_id, limit)
        rows = self._pool.read(lambda conn: conn.execute(query, params).fetchall())
        return [stored_document(row) for row in rows]

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
        settings = search_settings(k, self._ef_search, timeout_s)
        statement = self._reads.nearest.approximate[include_text, bool(where)]
        with search_deadline(self._name, timeout_s):
            hits = self._nearest(statement, query, k, where, settings)
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
        statement = self._reads.nearest.exact[include_text, bool(where)]
        # Without index scans the planner can only read every matching row and sort: brute force.
        return self._nearest(statement, query, k, where, {"enable_indexscan": "off"})

    def _nearest(
        self, statement: bytes, query: Vector, k: int, where: Metadata | None, settings: dict[str, str]
    ) -> list[Hit]:
        params: dict[str, Any] = {"query": query, "k": k}
        if where:
            params["where"] = json.dumps(where)

        def rows(conn: Connection) -> Sequence[tuple[Any, ...]]:
            return run_with_settings(conn, statement, params, settings)

        return [hit(row, self._space, self._name) for row in self._pool.read(rows)]

    def count(self) -> int:
        return self._scalar(self._reads.count)

    def max_version(self) -> int:
        return self._scalar(self._reads.max_version)

    def storage_bytes(self) -> int:
        """Table, TOAST and every index on it, as PostgreSQL accounts them."""
        return self._scalar(self._reads.storage_bytes)

    def _scalar(self, query: bytes) -> int:
        row = self._pool.read(lambda conn: conn.execute(query).fetchone())
        assert row is not None, "an aggregate always returns one row"
        return int(row[0])

    # ---- space ---------------------------------------------------------------------------------------------

    def dead_fraction(self) -> float:
        """Share of the table's row versions that are dead: old versions of updated and deleted documents.

        From PostgreSQL's statistics: cheap, but approximate, and several seconds behind the writes at times (a
        server process reports its counts when it goes idle). A tombstone row counts as live: it must stay.
        """
        query = "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass"
        row = self._pool.read(lambda conn: conn.execute(query, (self._table.regclass,)).fetchone())
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

        def vacuum_and_reindex(conn: Connection) -> None:
            # Neither statement may run inside a transaction block: pooled connections are in autocommit.
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", lock)
            try:
                conn.execute(sql.SQL("VACUUM (ANALYZE) {t}").format(t=self._table.identifier))
                # A deferred index not built yet has no graph to rebuild; its build makes a compact one.
                if deferred.hnsw_state(conn, self._table) == "valid":
                    conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {i}").format(i=self._table.hnsw_index))
            finally:
                # A session lock outlives the statement; the connection goes back to the pool still holding it.
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", lock)

        self._pool.write(vacuum_and_reindex)
        return before - self.storage_bytes()

    # ---- deferred HNSW index (`deferred`) -----------------------------------------------------------------

    @property
    def build_at(self) -> float:
        return self._build_at

    def search_index_state(self) -> SearchIndexState:
        if self._search_index_built:
            return SearchIndexState(built=True)  # an index once valid stays so (REINDEX CONCURRENTLY too)
        state = self._pool.read(lambda conn: deferred.search_index_state(conn, self._table))
        self._search_index_built = state.built
        return state

    def build_search_index(self) -> bool:
        """CREATE INDEX CONCURRENTLY on a connection of its own, which `close` cancels (see `deferred`)."""
        if self._search_index_built:
            return True
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, **connect_kwargs(self._connect_timeout_s))
        except psycopg.OperationalError as exc:
            raise unavailable(self._name, redact_dsn(self._dsn), str(exc)) from exc
        with self._builder_lock:
            if self._closed:
                conn.close()
                raise IndexClosed(f"index {self._name!r} is closed")
            self._builder = conn
        try:
            m, ef_construction = self._hnsw
            built = deferred.build(conn, self._table, m=m, ef_construction=ef_construction)
        finally:
            with self._builder_lock:
                self._builder = None
            conn.close()
        self._search_index_built = built
        return built

    # ---- durability and lifecycle -------------------------------------------------------------------------

    def flush(self) -> None:
        """Nothing to do: every acknowledged write is a committed, durable transaction."""
        self._pool.ensure_open()

    def close(self) -> None:
        with self._builder_lock:
            self._closed = True
            if self._builder is not None:
                # A build left running would hold a lock on the table after we are gone; cancelled, it leaves
                # an INVALID index, which the next build drops and starts again.
                self._builder.cancel()
        self._pool.close()

    def drop(self) -> None:
        """Drops the table with its indexes, then closes: for tests, and for an index that was retired."""
        statement = sql.SQL("DROP TABLE IF EXISTS {t}").format(t=self._table.identifier)
        self._pool.write(lambda conn: conn.execute(statement))
        self.close()

    def _checked_vector(self, vector: Vector, what: str) -> Vector:
        return checked_vector(vector, self._dim, self._name, what)
