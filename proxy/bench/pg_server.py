"""The PostgreSQL the pgvector section measures: finding it, a database of the benchmark's own, its tables.

The server is found the way the tests find theirs: PGVECTOR_DSN when set, else `scripts/ensure-pgvector.sh`
of a source checkout, which prints the DSN of a running server with pgvector (starting a local test server
from the pgserver wheel when none runs). The section measures the server's CPU time and sends it load, so the
server must run on this machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from proxy.adapters.pgvector.connection import redact_dsn
from proxy.adapters.pgvector.schema import IndexTable, ensure_schema
from proxy.bench.cpu import server_is_local
from proxy.bench.loadgen import loopback_dsn
from proxy.bench.processes import PACKAGE_PARENT
from proxy.bench.sidecars import NEW_MODEL, OLD_MODEL, model_config
from proxy.core.errors import ConfigError
from proxy.demo.corpus import CorpusDoc
from proxy.demo.sidecar_process import free_port

BENCH_DATABASE = "switchyard_bench"
ENSURE_SCRIPT = PACKAGE_PARENT / "scripts" / "ensure-pgvector.sh"
_SCRIPT_TIMEOUT_S = 300.0
# HNSW indexes arrived in pgvector 0.5.0.
_MIN_PGVECTOR = (0, 5, 0)
_COLUMNS = "id, version, deleted, text, metadata, embedding"
_COPY_TYPES = ["text", "int8", "bool", "text", "jsonb", "vector"]
_HOW = (
    "Set PGVECTOR_DSN to a PostgreSQL on this machine with pgvector >= 0.5.0 (HNSW), or run the benchmark"
    " from a source checkout, where scripts/ensure-pgvector.sh starts a local test server (after"
    " scripts/bootstrap.sh); or leave the section out: --sections without `pgvector`."
)


@dataclass(frozen=True)
class GraphParams:
    """The HNSW index of every table of the section: the pgvector config's defaults."""

    m: int = 16
    ef_construction: int = 64
    ef_search: int = 40


@dataclass(frozen=True)
class PgServer:
    dsn: str = field(metadata={"private": True})
    """The benchmark's own database on the server; kept out of BENCHMARKS.json (`where` is the masked form)."""
    where: str
    """The DSN, password masked, for the report."""
    server_version: str
    pgvector_version: str
    database_note: str
    """Empty when the benchmark has a database of its own; why not otherwise."""
    cpu_measured: bool
    """Whether the backends are processes of this machine (their CPU time is read from here)."""


def find_server() -> PgServer:
    dsn = _find_dsn()
    if not loopback_dsn(dsn):
        raise ConfigError(
            f"PostgreSQL at {redact_dsn(dsn)} is not on this machine: the pgvector section sends it load and"
            f" reads its CPU time, so it measures a local server only. {_HOW}"
        )
    try:
        _check_pgvector(dsn)
        bench_dsn, note = _bench_database(dsn)
        with psycopg.connect(bench_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            versions = conn.execute(
                "SELECT current_setting('server_version'),"
                " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
            ).fetchone()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"PostgreSQL at {redact_dsn(dsn)} is not usable ({reason}). {_HOW}") from None
    assert versions is not None
    return PgServer(
        bench_dsn, redact_dsn(bench_dsn), str(versions[0]), str(versions[1]), note, server_is_local(bench_dsn)
    )


def _check_pgvector(dsn: str) -> None:
    """Fails before anything is created on a server whose pgvector is missing or too old for HNSW."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'vector'), default_version)"
            " FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    if row is None:
        raise ConfigError(f"PostgreSQL at {redact_dsn(dsn)} has no pgvector extension installed. {_HOW}")
    if tuple(int(part) for part in re.findall(r"\d+", str(row[0]))[:3]) < _MIN_PGVECTOR:
        raise ConfigError(
            f"PostgreSQL at {redact_dsn(dsn)} has pgvector {row[0]}; HNSW indexes need 0.5.0 or later. {_HOW}"
        )


def _find_dsn() -> str:
    if os.environ.get("PGVECTOR_DSN"):
        return os.environ["PGVECTOR_DSN"]
    if not ENSURE_SCRIPT.exists():
        raise ConfigError(f"PGVECTOR_DSN is not set and {ENSURE_SCRIPT} is not there. {_HOW}")
    completed = subprocess.run(
        [str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=_SCRIPT_TIMEOUT_S, check=False
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise ConfigError(
            f"PGVECTOR_DSN is not set and {ENSURE_SCRIPT} found no PostgreSQL with pgvector:"
            f" {completed.stderr.strip()[-1500:]}. {_HOW}"
        )
    return lines[-1]


def _bench_database(dsn: str) -> tuple[str, str]:
    """The DSN of the benchmark's own database, created when absent: its backends are the benchmark's alone,
    so a test run against the same server stays out of the CPU figures. The DSN's own database when the user
    may not create one."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DATABASE,)).fetchone()
        if exists is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another run made it a moment ago
            except psycopg.errors.InsufficientPrivilege:
                current = conninfo_to_dict(dsn).get("dbname") or "the DSN's database"
                return dsn, f"no CREATEDB privilege: measured in {current}, other clients of it included"
    return make_conninfo(dsn, dbname=BENCH_DATABASE), ""


def table_names(*roles: str) -> dict[str, str]:
    """A fresh table name per role, so runs side by side (a smoke test and a full run) never share one."""
    run = uuid.uuid4().hex[:8]
    return {role: f"bench_{role}_{run}" for role in roles}


def index_table(name: str, dim: int) -> IndexTable:
    return IndexTable(index=name, name=name, dim=dim, space="cosine")


def create_table(dsn: str, table: IndexTable, graph: GraphParams) -> None:
    """The table with its indexes, exactly as the adapter creates them (its own DDL)."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        ensure_schema(
            conn, table, where_dsn=redact_dsn(dsn), hnsw_m=graph.m, hnsw_ef_construction=graph.ef_construction
        )


@dataclass(frozen=True)
class LoadTimes:
    rows: int
    copy_s: float
    """COPY (binary) of the rows, with no HNSW index on the table."""
    index_s: float
    """CREATE INDEX ... USING hnsw over them, then ANALYZE."""


def load_table(
    dsn: str, table: IndexTable, graph: GraphParams, docs: Sequence[CorpusDoc], vectors: np.ndarray
) -> LoadTimes:
    """A table of the adapter's layout holding `docs` at version 1, loaded the fastest way: COPY without the
    HNSW index, which is then built once."""
    create_table(dsn, table, graph)
    with connection(dsn) as conn:
        conn.execute(sql.SQL("DROP INDEX {}").format(table.hnsw_index))
        started = time.perf_counter()
        copy_rows(conn, table, docs, vectors, version=1)
        copied = time.perf_counter()
    create_table(dsn, table, graph)  # CREATE INDEX IF NOT EXISTS: builds the graph
    with connection(dsn) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(table.identifier))
    return LoadTimes(len(docs), copied - started, time.perf_counter() - copied)


def copy_rows(
    conn: psycopg.Connection[Any],
    table: IndexTable,
    docs: Sequence[CorpusDoc],
    vectors: np.ndarray,
    *,
    version: int,
) -> None:
    """One binary COPY of the rows, in the adapter's layout (vectors as numpy arrays, binary)."""
    statement = sql.SQL("COPY {t} ({columns}) FROM STDIN WITH (FORMAT BINARY)").format(
        t=table.identifier, columns=sql.SQL(_COLUMNS)
    )
    with conn.cursor().copy(statement) as copy:
        copy.set_types(_COPY_TYPES)
        for doc, vector in zip(docs, vectors, strict=True):
            copy.write_row((doc.id, version, False, doc.text, Jsonb({"topic": doc.topic}), vector))


@contextmanager
def connection(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """Autocommit with binary vectors, as the adapter's pooled connections."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        yield conn


def drop_tables(dsn: str, names: Sequence[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def pg_index(model: str, dsn: str, table: str, graph: GraphParams) -> dict[str, Any]:
    """An index of the sidecar's config on one of the section's tables."""
    params = {"m": graph.m, "ef_construction": graph.ef_construction, "ef_search": graph.ef_search}
    return {"model": model, "backend": "pgvector", "pgvector": {"dsn": dsn, "table": table, **params}}


def pg_sidecar_config(
    data_dir: Path, indexes: dict[str, dict[str, Any]], dim: int, *, migration: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A sidecar serving the first of `indexes` (hash-a); with `migration`, onto the second (model-b, a hashing
    model of another seed)."""
    models = {OLD_MODEL: model_config("hashing", dim, 1), NEW_MODEL: model_config("hashing", dim, 2)}
    names = list(indexes)
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "models": models,
        "indexes": indexes,
        "serving_index": names[0],
        "state": {"backend": "local"},
        # Its own metrics port: the default one may be taken by a sidecar of another run or test.
        "telemetry": {"metrics_listen": f"127.0.0.1:{free_port()}"},
    }
    if migration is not None:
        config["migration"] = {"old_index": names[0], "new_index": names[1], **migration}
    return config
