"""The HNSW index of a table filled by a bulk backfill, built once afterwards (`build_index: deferred`).

Why: with the HNSW index in place every inserted row pays PostgreSQL's graph insert (~0.7-2.2 ms of server CPU
on 2 cores), which sets the pace of the whole backfill. Without it the same version-checked INSERT runs at
~12,000 rows/s, and one CREATE INDEX over the finished table builds the graph several times faster than
row-by-row inserts do. Writes keep the one CAS statement (`writes`) throughout: dual writes and the backfill
may write the same id, so nothing bypasses the version check.

The build (`build`) runs CREATE INDEX CONCURRENTLY, so dual writes and searches go on while it runs, on a
connection of its own in autocommit (CONCURRENTLY refuses a transaction block). Only one session builds a
table's index: the builder holds a session advisory lock, which PostgreSQL releases when that backend ends. A
sidecar that dies mid-build leaves either a backend still building (it holds the lock: everyone else waits for
it) or, when the build was cancelled, an INVALID index; the next builder drops that and builds again.
"""

from __future__ import annotations

from typing import Literal

from psycopg import sql

from proxy.adapters.pgvector.connection import Connection
from proxy.adapters.pgvector.schema import OPERATORS, SETUP_LOCK_KEY, IndexTable
from proxy.core.ports import SearchIndexState

HnswState = Literal["absent", "invalid", "valid"]

# Shared with `compact` (REINDEX CONCURRENTLY): a build and a compaction of one table take turns.
_LOCK = "SELECT pg_try_advisory_lock(%s, hashtext(%s))"
_UNLOCK = "SELECT pg_advisory_unlock(%s, hashtext(%s))"
_PROGRESS = (
    "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total"
    " FROM pg_stat_progress_create_index WHERE relid = %s::regclass"
)


def hnsw_state(conn: Connection, table: IndexTable) -> HnswState:
    """Whether the table's HNSW index exists, and whether PostgreSQL may use it (indisvalid)."""
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass AND c.relname = %s",
        (table.regclass, table.hnsw_index_name),
    ).fetchone()
    if row is None:
        return "absent"
    return "valid" if row[0] else "invalid"


def search_index_state(conn: Connection, table: IndexTable) -> SearchIndexState:
    """The index's state; while a build runs (in any session), its phase and progress."""
    # An index being built CONCURRENTLY is listed as not valid until it is done, so progress is read first.
    progress = conn.execute(_PROGRESS, (table.regclass,)).fetchone()
    if hnsw_state(conn, table) == "valid":
        return SearchIndexState(built=True)
    if progress is None:
        return SearchIndexState(built=False)
    phase, blocks_done, blocks_total, tuples_done, tuples_total = progress
    done, total = (blocks_done, blocks_total) if blocks_total else (tuples_done, tuples_total)
    return SearchIndexState(built=False, building=True, phase=str(phase), done=int(done), total=int(total))


def build(conn: Connection, table: IndexTable, *, m: int, ef_construction: int) -> bool:
    """Builds the HNSW index unless it is valid already; False when another session holds the build.

    `conn` is in autocommit and the caller's alone: cancelling it (`Connection.cancel`) stops the build and
    leaves an INVALID index, which the next call drops."""
    lock = (SETUP_LOCK_KEY, table.name)
    acquired = conn.execute(_LOCK, lock).fetchone()
    if acquired is None or not acquired[0]:
        return False
    try:
        state = hnsw_state(conn, table)
        if state == "valid":
            return True
        if state == "invalid":
            # Left by a CONCURRENTLY build that failed or was cancelled: no session builds it now (we hold the
            # lock), and IF NOT EXISTS would keep it, unusable, forever.
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {i}").format(i=table.hnsw_index))
        conn.execute(
            sql.SQL(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {t} USING hnsw (embedding {opclass})"
                " WITH (m = {m}, ef_construction = {ef})"
            ).format(
                name=table.hnsw_index,
                t=table.identifier,
                opclass=sql.SQL(OPERATORS[table.space][1]),
                m=sql.Literal(m),
                ef=sql.Literal(ef_construction),
            )
        )
        return True
    finally:
        if not conn.closed and not conn.broken:
            conn.execute(_UNLOCK, lock)
