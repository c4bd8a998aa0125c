"""The adopted-table section's DDL, run as adoption runs it and timed statement by statement; the run's
objects in the bench database (a run drops its own at the end, and what a crashed run left at the start); the
config of the run's sidecar.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from proxy.adapters.pgvector.adopted_ddl import set_lock_timeout, side_table_statements, tracking_statements
from proxy.adapters.pgvector.adopted_table import AdoptedTable
from proxy.bench.pg_server import pg_sidecar_config
from proxy.bench.sidecars import NEW_MODEL, OLD_MODEL, backfill_settings

PREFIX = "bench_adopt_"
OLD_INDEX, NEW_INDEX = "idx-a", "idx-b"
Step = tuple[str, str, float, float]
"""(phase, statement as shown, perf_counter at its start, at its end)."""


def adopt(dsn: str, spec: AdoptedTable) -> list[Step]:
    """`install_tracking`'s statements in its one transaction, each timed, then COMMIT: locks taken by a
    statement are held until the commit."""
    steps = []
    with psycopg.connect(dsn) as conn:
        set_lock_timeout(conn)
        for statement in tracking_statements(spec):
            text = statement.as_string(conn)
            started = time.perf_counter()
            conn.execute(statement)
            steps.append(("adopt", _label(text, spec.table), started, time.perf_counter()))
        started = time.perf_counter()
        conn.commit()
        steps.append(("adopt", "COMMIT", started, time.perf_counter()))
    return steps


def side_tables(dsn: str, spec: AdoptedTable, side: str, dim: int) -> list[Step]:
    """The side table's statements, which the sidecar runs when it opens the new index (it then finds them done)."""
    steps = []
    statements = side_table_statements(
        spec, sql.Identifier("public", side), sql.Identifier(f"{side}_hnsw"), dim, "cosine", 16, 64
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        set_lock_timeout(conn)
        for statement in statements:
            text = statement.as_string(conn)
            started = time.perf_counter()
            conn.execute(statement)
            steps.append(("side table", _label(text, spec.table), started, time.perf_counter()))
    return steps


def retire(dsn: str, table: str) -> list[Step]:
    """What `AdoptedTableIndex.retire_vectors` runs: the old vector index dropped concurrently, then the column."""
    statements = [
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(f"{table}_embedding_hnsw")),
        sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS embedding").format(sql.Identifier(table)),
    ]
    steps = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        set_lock_timeout(conn)
        for statement in statements:
            text = statement.as_string(conn)
            started = time.perf_counter()
            conn.execute(statement)
            steps.append(("retire", _label(text, table), started, time.perf_counter()))
    return steps


def _label(text: str, table: str) -> str:
    """A statement as the report shows it: names shortened to <t>, bodies of functions left out."""
    short = re.sub(r'"public"\.', "", text).replace(f'"{table}"', "<t>").replace(table, "<t>")
    short = re.sub(r"\$switchyard\$.*\$switchyard\$", "$$...$$", short, flags=re.S)
    short = " ".join(short.split())
    return short if len(short) <= 90 else short[:87] + "..."


@contextmanager
def claimed(dsn: str) -> Iterator[str]:
    """A run id whose objects are this run's while it holds their advisory lock (on a connection of its own):
    a later run drops what a crashed one left, never what a live one uses. Dropped at the end."""
    run_id = uuid.uuid4().hex[:8]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (PREFIX + run_id,))
        try:
            yield run_id
        finally:
            _drop_run(dsn, run_id)


def drop_leftovers(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relname ~ %s", (PREFIX + "[a-z]+_[0-9a-f]{8}",)
            )
        ]
        for run_id in {m.group(1) for n in names if (m := re.search(PREFIX + r"[a-z]+_([0-9a-f]{8})", n))}:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (PREFIX + run_id,)).fetchone()
            if row is not None and row[0]:
                _drop_run(dsn, run_id)
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (PREFIX + run_id,))


def _drop_run(dsn: str, run_id: str) -> None:
    """Every table, sequence and function of the run: the application's table, Switchyard's objects beside it,
    the references' tables."""
    pattern = f"%{PREFIX}%{run_id}%"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s", (pattern,)
        ).fetchall():
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'S' AND relname LIKE %s", (pattern,)
        ).fetchall():
            conn.execute(sql.SQL("DROP SEQUENCE IF EXISTS {}").format(sql.Identifier(name)))
        for (name,) in conn.execute(
            "SELECT proname FROM pg_proc WHERE proname LIKE %s", (pattern,)
        ).fetchall():
            conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(sql.Identifier(name)))


def sidecar_config(
    workdir: Path, dsn: str, table: str, models: tuple[dict[str, Any], dict[str, Any]], dim: int, batch: int
) -> dict[str, Any]:
    """The sidecar of the run: the adopted table as its old index, the side table as its new one."""
    adopt = {
        "table": table,
        "id_column": "item_id",
        "text_columns": ["title", "body"],
        "metadata_columns": ["category"],
    }
    indexes = {
        OLD_INDEX: {
            "model": OLD_MODEL,
            "backend": "pgvector",
            "pgvector": {"dsn": dsn, "adopt": {**adopt, "vector_column": "embedding"}},
        },
        NEW_INDEX: {"model": NEW_MODEL, "backend": "pgvector", "pgvector": {"dsn": dsn, "adopt": adopt}},
    }
    config = pg_sidecar_config(workdir / "data", indexes, dim, migration=backfill_settings(batch))
    config["models"] = {OLD_MODEL: models[0], NEW_MODEL: models[1]}
    return config
