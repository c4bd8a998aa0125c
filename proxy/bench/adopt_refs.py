"""What the adopted-table backfill is compared with, measured in the same run on the same rows: the database's
bulk rates for the new model's vectors, and the alternative to a side table: a new vector column on the
application's table, filled by UPDATEs.

PostgreSQL's MVCC makes the alternative's cost: an UPDATE writes a whole new version of each row (its text and
its old vector too) and new entries in every index of the table, the old vector's HNSW graph included (no HOT
update: the new row rarely fits its page); the old versions stay until VACUUM, and their space is reused, not
given back. A side table writes only ids and vectors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from proxy.bench.adopt_app import StorageSampler, build_hnsw, relation_bytes
from proxy.bench.pg_server import connection
from proxy.bench.stats import ratio
from proxy.core.ports import Embedder

UPDATE_BATCH = 1_000
"""Rows per UPDATE of the new-column alternative, and per INSERT of the insert-rate reference."""


def raw_embed(embedder: Embedder, texts: Sequence[str], batch: int) -> tuple[float, np.ndarray]:
    """Docs/s of the new model over the texts in the backfill's batches (the first, a warm-up, left out), and
    the vectors: the references and the alternative write these."""
    batches = [list(texts[start : start + batch]) for start in range(0, len(texts), batch)]
    vectors = list(embedder.embed(batches[0]))
    started = time.perf_counter()
    for block in batches[1:]:
        vectors += embedder.embed(block)
    seconds = time.perf_counter() - started
    timed = len(texts) - len(batches[0])
    rate = timed / seconds if timed else len(texts) / max(seconds, 1e-9)
    return rate, np.asarray(vectors, dtype=np.float32)


@dataclass(frozen=True)
class BulkRates:
    """The database's own rates for writing the new model's vectors into a table of the side table's layout."""

    copy_rows: int
    """Every row but the INSERT sample's."""
    copy_s: float
    """Binary COPY of (id, version, vector) into the table without an index."""
    index_s: float
    """CREATE INDEX ... USING hnsw after it."""
    insert_rows: int
    insert_s: float
    """INSERT ... SELECT FROM unnest(...) in batches of 1,000 into a table whose HNSW index exists, empty at
    first: how the backfill writes its side table, as it starts."""
    full_insert_s: float
    """The same rows INSERTed into the COPY's table once its graph holds every other row: as a backfill ends.
    A backfill's graph grows from empty to full, so its database rate lies between the two."""

    @property
    def bulk_rows_per_s(self) -> float:
        """COPY then one index build: the fastest way in."""
        return ratio(self.copy_rows, self.copy_s + self.index_s)

    @property
    def insert_rows_per_s(self) -> float:
        return ratio(self.insert_rows, self.insert_s)

    @property
    def full_insert_rows_per_s(self) -> float:
        return ratio(self.insert_rows, self.full_insert_s)


def side_layout(conn: psycopg.Connection[Any], name: str, dim: int) -> sql.Identifier:
    ident = sql.Identifier(name)
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, version bigint NOT NULL,"
            " deleted boolean NOT NULL DEFAULT false, embedding vector({}))"
        ).format(ident, sql.Literal(dim))
    )
    return ident


def bulk_rates(
    dsn: str, copy_table: str, insert_table: str, vectors: np.ndarray, insert_rows: int
) -> BulkRates:
    """The INSERT samples are the first and the last `insert_rows` of a backfill (at most half the rows each):
    into an empty graph, and into the graph the COPY built of every other row (distinct vectors: pgvector's
    HNSW stores a duplicate vector by adding a row pointer to its element, a shortcut a backfill never gets)."""
    dim, count = vectors.shape[1], min(insert_rows, len(vectors) // 2)
    with connection(dsn) as conn:
        ident = side_layout(conn, copy_table, dim)
        started = time.perf_counter()
        statement = sql.SQL("COPY {} (id, version, embedding) FROM STDIN WITH (FORMAT BINARY)").format(ident)
        with conn.cursor().copy(statement) as copy:
            copy.set_types(["int8", "int8", "vector"])
            for n, vector in enumerate(vectors[count:], start=count + 1):
                copy.write_row((n, 2, vector))
        copied = time.perf_counter()
        build_hnsw(conn, sql.Identifier(f"{copy_table}_hnsw"), ident, "embedding")
        indexed = time.perf_counter()
        full_s = _insert(conn, ident, vectors[:count], 1)
        conn.execute(sql.SQL("DROP TABLE {}").format(ident))
        ident = side_layout(conn, insert_table, dim)
        build_hnsw(conn, sql.Identifier(f"{insert_table}_hnsw"), ident, "embedding")
        empty_s = _insert(conn, ident, vectors[:count], 1)
        conn.execute(sql.SQL("DROP TABLE {}").format(ident))
    return BulkRates(len(vectors) - count, copied - started, indexed - copied, count, empty_s, full_s)


def _insert(
    conn: psycopg.Connection[Any], table: sql.Identifier, vectors: np.ndarray, first_id: int
) -> float:
    """Seconds to INSERT the vectors in batches, ids from `first_id` on, as the backfill's upserts do."""
    insert = sql.SQL(
        "INSERT INTO {} (id, version, embedding)"
        " SELECT u.id, 2, u.embedding FROM unnest(%s::bigint[], %b::vector[]) AS u(id, embedding)"
    ).format(table)
    started = time.perf_counter()
    for start in range(0, len(vectors), UPDATE_BATCH):
        stop = min(start + UPDATE_BATCH, len(vectors))
        conn.execute(insert, (list(range(first_id + start, first_id + stop)), list(vectors[start:stop])))
    return time.perf_counter() - started


@dataclass(frozen=True)
class NewColumnAlternative:
    """A copy of the application's table (rows, old vectors and their HNSW index) given a new vector column,
    filled by UPDATEs of 1,000 rows, then indexed: peak storage and time, against the copy's size before."""

    rows: int
    baseline_bytes: int
    peak_bytes: int
    end_bytes: int
    """After the new column's HNSW index is built, with nothing vacuumed by hand."""
    add_column_ms: float
    update_s: float
    index_s: float
    dead_rows: int
    """n_dead_tup of the copy at the end, as PostgreSQL's statistics report it (autovacuum as configured)."""
    autovacuum: str

    @property
    def total_s(self) -> float:
        return self.add_column_ms / 1000 + self.update_s + self.index_s

    @property
    def rows_per_s(self) -> float:
        return ratio(self.rows, self.total_s)

    @property
    def peak_ratio(self) -> float:
        return ratio(self.peak_bytes, self.baseline_bytes)

    @property
    def end_ratio(self) -> float:
        return ratio(self.end_bytes, self.baseline_bytes)


def new_column_alternative(
    dsn: str, app_table: str, copy_table: str, vectors: np.ndarray
) -> NewColumnAlternative:
    """`vectors[i]` is the new model's vector of the row with item_id i + 1."""
    app, ident = sql.Identifier(app_table), sql.Identifier(copy_table)
    with connection(dsn) as conn:
        # Rows first, then the key and the old vectors' graph built once, as the application's table was.
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(ident, app))
        conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(ident, app))
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (item_id)").format(ident))
        build_hnsw(conn, sql.Identifier(f"{copy_table}_hnsw"), ident, "embedding")
        conn.execute(sql.SQL("ANALYZE {}").format(ident))
        baseline = relation_bytes(conn, [copy_table])
        autovacuum = str(conn.execute("SHOW autovacuum").fetchone()[0])  # type: ignore[index]
        with StorageSampler(dsn, [copy_table]) as sampler:
            started = time.perf_counter()
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN embedding_new vector({})").format(
                    ident, sql.Literal(vectors.shape[1])
                )
            )
            added = time.perf_counter()
            update = sql.SQL(
                "UPDATE {} t SET embedding_new = u.embedding"
                " FROM unnest(%s::bigint[], %b::vector[]) AS u(id, embedding) WHERE t.item_id = u.id"
            ).format(ident)
            for start in range(0, len(vectors), UPDATE_BATCH):
                stop = min(start + UPDATE_BATCH, len(vectors))
                conn.execute(update, (list(range(start + 1, stop + 1)), list(vectors[start:stop])))
            updated = time.perf_counter()
            build_hnsw(conn, sql.Identifier(f"{copy_table}_new_hnsw"), ident, "embedding_new")
            indexed = time.perf_counter()
        dead = conn.execute(
            "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relid = to_regclass(%s)",
            (ident.as_string(),),
        ).fetchone()
        end = relation_bytes(conn, [copy_table])
        conn.execute(sql.SQL("DROP TABLE {}").format(ident))
    return NewColumnAlternative(
        len(vectors),
        baseline,
        max(sampler.peak, end),
        end,
        1000 * (added - started),
        updated - added,
        indexed - updated,
        int(dead[0]) if dead else 0,
        autovacuum,
    )
