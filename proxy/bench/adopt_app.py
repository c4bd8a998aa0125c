"""The adopted-table section's application: its own pgvector table in the bench database, a writer that writes
it directly at a steady pace (as applications do, one row per statement), and a sampler of the storage the
table and Switchyard's objects beside it take, as PostgreSQL counts it (pg_total_relation_size).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from proxy.bench.pg_server import connection
from proxy.bench.stats import LatencySummary, summarize
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.real_corpus import real_corpus

CATEGORIES = ("news", "sports", "science", "travel")
MAINTENANCE_WORK_MEM = "512MB"
"""Set in the bench's own sessions that build HNSW graphs in bulk: PostgreSQL's default (64 MB) is smaller
than a 100,000-row graph, which then falls back to a much slower build (FACTS.md)."""
_SAMPLE_EVERY_S = 0.5


@dataclass(frozen=True)
class AppRow:
    title: str
    body: str

    @property
    def text(self) -> str:
        """What the adopted table's `text_columns` (title, body) give the models: joined by a newline."""
        return f"{self.title}\n{self.body}"


def app_rows(name: str, count: int, offset: int = 0) -> list[AppRow]:
    """Hashing: synthetic documents. Real: the real corpus (short docstrings of Python's standard library), a
    document joined with another one past its first pass so every row's text is its own."""
    if name == "hashing":
        docs = synthetic_corpus(offset + count)[offset:]
        return [AppRow(f"{d.topic.capitalize()} note {offset + n + 1}", d.text) for n, d in enumerate(docs)]
    corpus = real_corpus()
    size = len(corpus)
    rows = []
    for n in range(offset, offset + count):
        doc = corpus[n % size]
        body = doc.text if n < size else f"{doc.text} {corpus[(n * 7 + n // size) % size].text}"
        rows.append(AppRow(doc.topic.capitalize(), body))
    return rows


@dataclass(frozen=True)
class LoadTimes:
    rows: int
    copy_s: float
    """Binary COPY of every row, old-model vector included, into the table without its HNSW index."""
    index_s: float
    """CREATE INDEX ... USING hnsw (vector_cosine_ops) on the old vectors, then VACUUM (ANALYZE)."""


def create_application(
    dsn: str, table: str, dim: int, rows: Sequence[AppRow], vectors: np.ndarray
) -> LoadTimes:
    """`table(item_id bigint PRIMARY KEY, title, body, category, updated_at, embedding vector(dim))`, ids 1..n,
    loaded the fastest way: COPY first, then the HNSW index of the old vectors built once."""
    ident = sql.Identifier(table)
    with connection(dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (item_id bigint PRIMARY KEY, title text, body text, category text,"
                " updated_at timestamptz NOT NULL DEFAULT now(), embedding vector({}))"
            ).format(ident, sql.Literal(dim))
        )
        started = time.perf_counter()
        statement = sql.SQL(
            "COPY {} (item_id, title, body, category, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ).format(ident)
        with conn.cursor().copy(statement) as copy:
            copy.set_types(["int8", "text", "text", "text", "vector"])
            for n, (row, vector) in enumerate(zip(rows, vectors, strict=True), start=1):
                copy.write_row((n, row.title, row.body, CATEGORIES[n % len(CATEGORIES)], vector))
        copied = time.perf_counter()
        build_hnsw(conn, sql.Identifier(f"{table}_embedding_hnsw"), ident, "embedding")
        # As a table in service would be: vacuumed, so autovacuum's first pass does not land in a measurement.
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ident))
    return LoadTimes(len(rows), copied - started, time.perf_counter() - copied)


def build_hnsw(
    conn: psycopg.Connection[Any], name: sql.Identifier, table: sql.Identifier, column: str
) -> None:
    """pgvector's defaults (m 16, ef_construction 64), as the application's own `CREATE INDEX` gets."""
    conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(MAINTENANCE_WORK_MEM)))
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} USING hnsw ({} vector_cosine_ops)").format(
            name, table, sql.Identifier(column)
        )
    )


def relation_bytes(conn: psycopg.Connection[Any], names: Sequence[str]) -> int:
    """pg_total_relation_size (heap, TOAST, indexes) summed over the tables that exist of `names`."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(to_regclass(n))), 0)::bigint FROM unnest(%s::text[]) n"
        " WHERE to_regclass(n) IS NOT NULL",
        ([sql.Identifier(n).as_string() for n in names],),
    ).fetchone()
    assert row is not None
    return int(row[0])


def checkpoint(dsn: str) -> None:
    """Writes out what the references dirtied (hundreds of MB at the full size), so the writer's windows do
    not pay for it; a role without the right to CHECKPOINT skips it."""
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CHECKPOINT")


def count_rows(dsn: str, table: str, where: str = "") -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}" + where).format(sql.Identifier(table))
        ).fetchone()
    assert row is not None
    return int(row[0])


class StorageSampler:
    """Samples the summed size of `names` every 0.5 s in a thread of its own; keeps the peak and the last."""

    def __init__(self, dsn: str, names: Sequence[str]) -> None:
        self._dsn, self._names = dsn, list(names)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adopt-storage", daemon=True)
        self.peak = self.last = self.samples = 0

    def __enter__(self) -> StorageSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while True:
                self.last = relation_bytes(conn, self._names)
                self.peak, self.samples = max(self.peak, self.last), self.samples + 1
                if self._stop.wait(_SAMPLE_EVERY_S):
                    break
            # One more after the work ends: the last statement's pages may land after the last tick.
            self.last = relation_bytes(conn, self._names)
            self.peak = max(self.peak, self.last)


@dataclass(frozen=True)
class Write:
    started: float
    """perf_counter at the start of the statement."""
    ms: float
    kind: str
    ok: bool


@dataclass(frozen=True)
class WriteCounts:
    inserted: int
    updated: int
    deleted: int
    failed: int
    first_error: str


class DirectWriter:
    """The application writing its table directly, one row per autocommit statement, `rate` writes a second
    on a fixed schedule (a slow write delays the next ones, it does not pile them up): of every 20 writes,
    2 insert a new row, 1 deletes a row and 17 change a row's text (its old-model vector with it, as an
    application that embeds on write does). `with_vectors=False`: the application no longer writes its old
    vector column (it is about to be retired)."""

    def __init__(
        self,
        dsn: str,
        table: str,
        rows: int,
        pool: Sequence[tuple[AppRow, np.ndarray]],
        rate: float,
        *,
        with_vectors: bool = True,
        first_new_id: int | None = None,
    ) -> None:
        self._dsn, self._ident, self._rows = dsn, sql.Identifier(table), rows
        self._pool, self._interval, self._with_vectors = list(pool), 1.0 / rate, with_vectors
        self.next_id = first_new_id or rows + 1
        self.writes: list[Write] = []
        self.deleted: set[int] = set()
        self._first_error = ""
        self._rng, self._tag = np.random.default_rng(), uuid.uuid4().hex[:6]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adopt-writer", daemon=True)

    def start(self) -> DirectWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with connection(self._dsn) as conn:
            n, due = 0, time.perf_counter()
            while not self._stop.is_set():
                self._write(conn, n)
                n, due = n + 1, due + self._interval
                wait = due - time.perf_counter()
                if wait > 0 and self._stop.wait(wait):
                    break

    def _write(self, conn: psycopg.Connection[Any], n: int) -> None:
        kind, statement, params = self._statement(n, *self._fresh(n))
        started = time.perf_counter()
        ok = True
        try:
            conn.execute(statement, params)
        except psycopg.Error as exc:
            ok = False
            self._first_error = self._first_error or " ".join(str(exc).split())[:300]
        self.writes.append(Write(started, 1000 * (time.perf_counter() - started), kind, ok))

    def _fresh(self, n: int) -> tuple[AppRow, np.ndarray]:
        """Each write's text and vector its own, as an application's new text is: a pool row's text marked
        with the write, its old-model vector nudged. pgvector's HNSW stores a vector equal to one it holds as
        one more row pointer on that element, a shortcut a new text's vector never gets; and a repeated text
        could be served from an embedding cache."""
        row, vector = self._pool[n % len(self._pool)]
        nudged = vector + self._rng.normal(0.0, 0.01, vector.shape).astype(np.float32)
        return AppRow(row.title, f"{row.body} (revision {self._tag}-{n})"), nudged / np.linalg.norm(nudged)

    def _statement(
        self, n: int, row: AppRow, vector: np.ndarray
    ) -> tuple[str, sql.Composed, tuple[Any, ...]]:
        # Spread over the whole key range, deterministic; a deleted row is not written again.
        item = 1 + (n * 7919) % self._rows
        while item in self.deleted:
            item = item % self._rows + 1
        column, value = (", embedding", (vector,)) if self._with_vectors else ("", ())
        if n % 20 in (3, 13):
            item, self.next_id = self.next_id, self.next_id + 1
            places = ", ".join(["%s"] * (4 + len(value)))
            statement = f"INSERT INTO {{}} (item_id, title, body, category{column}) VALUES ({places})"
            category = CATEGORIES[item % len(CATEGORIES)]
            return "insert", self._sql(statement), (item, row.title, row.body, category, *value)
        if n % 20 == 7:
            self.deleted.add(item)
            return "delete", self._sql("DELETE FROM {} WHERE item_id = %s"), (item,)
        sets = f"title = %s, body = %s{column and ', embedding = %s'}, updated_at = now()"
        return (
            "update",
            self._sql(f"UPDATE {{}} SET {sets} WHERE item_id = %s"),
            (row.title, row.body, *value, item),
        )

    def _sql(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(self._ident)

    def counts(self) -> WriteCounts:
        done = [w for w in self.writes if w.ok]
        return WriteCounts(
            sum(w.kind == "insert" for w in done),
            sum(w.kind == "update" for w in done),
            sum(w.kind == "delete" for w in done),
            sum(not w.ok for w in self.writes),
            self._first_error,
        )

    def summary(self, start: float, end: float) -> LatencySummary:
        """The writes that started within [start, end)."""
        mine = [w for w in self.writes if start <= w.started < end]
        return summarize([w.ms for w in mine if w.ok], end - start, errors=sum(not w.ok for w in mine))

    def max_overlapping(self, start: float, end: float) -> tuple[float, int]:
        """(slowest ms, count) of the writes that were running at some moment of [start, end]: a write a
        statement's lock held up started during it and ended after, or waited from before it."""
        mine = [w.ms for w in self.writes if w.started <= end and w.started + w.ms / 1000 >= start]
        return (max(mine) if mine else 0.0), len(mine)
