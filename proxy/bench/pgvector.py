"""Section 8, pgvector: the sidecar in front of a real database, against the database used directly.

Queries: one table (the adapter's layout, HNSW index), queried through a sidecar process whose serving index is
a pgvector index on it (caller-supplied vectors, no migration), and by direct psycopg clients sending the very
statement the adapter sends (`loadgen.run_sql_phase`), rounds interleaved, at 1 and 8 clients; with the CPU
time per query of the sidecar, of PostgreSQL's backends and of the load generator. The writes are in
`pg_writes`, the backfill in `pg_backfill`, the server and its tables in `pg_server`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from proxy.adapters.pgvector.queries import read_statements
from proxy.bench.base import BaseCorpus
from proxy.bench.datasets import embedded_vectors
from proxy.bench.loadgen import SIDECAR_METHOD, SQL_METHOD, Phase, PhaseResult
from proxy.bench.pg_backfill import TARGET_BACKFILL_RATIO, PgBackfillResult, run_backfill
from proxy.bench.pg_server import (
    GraphParams,
    LoadTimes,
    PgServer,
    connection,
    drop_tables,
    find_server,
    index_table,
    load_table,
    pg_index,
    pg_sidecar_config,
    table_names,
)
from proxy.bench.pg_writes import TARGET_WRITE_RATIO, PgWritesResult, run_writes
from proxy.bench.processes import alternating_phases, run_load, summarize_label
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import OLD_MODEL, ensure_running, start_sidecar
from proxy.bench.stats import LatencySummary, ratio
from proxy.demo.sidecar_process import SidecarProcess

TARGET_P50_RATIO = 1.3
"""Sidecar p50 / direct p50 at one client."""
TARGET_QPS_RATIO = 0.6
"""Sidecar QPS / direct QPS at the most clients (8)."""
GRAPH = GraphParams()
K = 10
SERVING_INDEX = "docs-pg"
_CHECKED_QUERIES = 20


@dataclass(frozen=True)
class CpuPerQuery:
    """CPU ms per query of each process on the path; their sum bounds QPS once every core is busy."""

    sidecar_ms: float
    db_ms: float
    """PostgreSQL's client backends (the benchmark's database)."""
    client_ms: float
    """The load generator."""
    db_backends: int = 0
    """PostgreSQL backends that did work in a round (the most of any round)."""

    @property
    def total_ms(self) -> float:
        return self.sidecar_ms + self.db_ms + self.client_ms

    def ceiling_qps(self, cores: int) -> float:
        """The QPS at which the cores would be busy with nothing but this path."""
        return ratio(1000.0 * cores, self.total_ms)


@dataclass(frozen=True)
class PgQueryRow:
    concurrency: int
    direct: LatencySummary
    sidecar: LatencySummary
    direct_cpu: CpuPerQuery
    sidecar_cpu: CpuPerQuery
    cores: int

    @property
    def p50_ratio(self) -> float:
        return ratio(self.sidecar.p50_ms, self.direct.p50_ms)

    @property
    def p99_ratio(self) -> float:
        return ratio(self.sidecar.p99_ms, self.direct.p99_ms)

    @property
    def qps_ratio(self) -> float:
        return ratio(self.sidecar.qps, self.direct.qps)

    @property
    def ceiling_ratio(self) -> float:
        """The QPS ratio the CPU per query implies once the cores are saturated: direct / sidecar total."""
        return ratio(self.direct_cpu.total_ms, self.sidecar_cpu.total_ms)


@dataclass(frozen=True)
class PgQueryResult:
    table_rows: int
    dim: int
    k: int
    graph: GraphParams
    load: LoadTimes
    identical_hits: int
    """Of `checked_queries` queries, how many returned the same ids in the same order both ways."""
    checked_queries: int
    rounds: int
    round_s: float
    rows: list[PgQueryRow]


@dataclass(frozen=True)
class Target:
    figure: str
    value: float
    goal: str
    passed: bool


@dataclass(frozen=True)
class PgvectorResult:
    server: PgServer
    query: PgQueryResult
    writes: PgWritesResult
    backfill: PgBackfillResult

    @property
    def targets(self) -> list[Target]:
        rows = {r.concurrency: r for r in self.query.rows}
        one, most = rows[min(rows)], rows[max(rows)]
        w, b = self.writes, self.backfill
        return [
            Target(
                f"pgvector query p50, sidecar / direct SQL, {one.concurrency} client(s)",
                one.p50_ratio,
                f"<= {TARGET_P50_RATIO}",
                one.p50_ratio <= TARGET_P50_RATIO,
            ),
            Target(
                f"pgvector QPS, sidecar / direct SQL, {most.concurrency} clients",
                most.qps_ratio,
                f">= {TARGET_QPS_RATIO}",
                most.qps_ratio >= TARGET_QPS_RATIO,
            ),
            Target(
                f"pgvector writes/s, sidecar / best direct method with the HNSW index live ({w.best_direct.name})",
                w.ratio,
                f">= {TARGET_WRITE_RATIO}",
                w.ratio >= TARGET_WRITE_RATIO,
            ),
            Target(
                "pgvector backfill docs/s / min(raw embed, database write)",
                b.ratio,
                f">= {TARGET_BACKFILL_RATIO}",
                b.ratio >= TARGET_BACKFILL_RATIO,
            ),
        ]


def run_pgvector(settings: BenchSettings, base: BaseCorpus, root: Path) -> PgvectorResult:
    workdir = root / "pgvector"
    server = find_server()
    tables = table_names("query", "w_sidecar", "w_executemany", "w_copy", "old", "new", "new_deferred")
    vectors = embedded_vectors(base.old_embedder, [d.text for d in base.docs])
    try:
        query = run_queries(settings, base, workdir / "query", server, tables["query"], vectors)
        drop_tables(server.dsn, [tables["query"]])
        writes = run_writes(settings, server, base.docs, vectors, tables, workdir / "writes")
        backfill = run_backfill(settings, server, base.docs, vectors, tables, workdir / "backfill", writes)
    finally:
        drop_tables(server.dsn, list(tables.values()))
    return PgvectorResult(server, query, writes, backfill)


def run_queries(
    settings: BenchSettings,
    base: BaseCorpus,
    workdir: Path,
    server: PgServer,
    table_name: str,
    vectors: np.ndarray,
) -> PgQueryResult:
    table = index_table(table_name, settings.dim)
    load = load_table(server.dsn, table, GRAPH, base.docs, vectors)
    config = pg_sidecar_config(
        workdir / "data", {SERVING_INDEX: pg_index(OLD_MODEL, server.dsn, table_name, GRAPH)}, settings.dim
    )
    sidecar, _ = start_sidecar(config, workdir)
    try:
        queries = np.load(base.query_vectors_file)
        identical = _identical_hits(sidecar, server.dsn, table_name, queries[:_CHECKED_QUERIES])
        results = run_load(
            _phases(settings, sidecar, server, table_name), workdir, vectors_file=base.query_vectors_file
        )
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    cores = os.cpu_count() or 1
    rows = [
        PgQueryRow(
            c,
            summarize_label(results, f"direct-c{c}"),
            summarize_label(results, f"sidecar-c{c}"),
            cpu_per_query(results, f"direct-c{c}"),
            cpu_per_query(results, f"sidecar-c{c}"),
            cores,
        )
        for c in settings.pg_clients
    ]
    checked = min(_CHECKED_QUERIES, len(queries))
    return PgQueryResult(
        len(base.docs),
        settings.dim,
        K,
        GRAPH,
        load,
        identical,
        checked,
        settings.rounds,
        settings.round_s,
        rows,
    )


def _phases(settings: BenchSettings, sidecar: SidecarProcess, server: PgServer, table: str) -> list[Phase]:
    """Direct and sidecar per client count, rounds interleaved; the first phase warms the sidecar's pool up
    to the most clients (unmeasured), as the direct client's connections are warmed before each phase."""
    assert sidecar.process is not None, "not started"
    through: dict[str, Any] = {
        "target": sidecar.target,
        "server_pid": sidecar.process.pid,
        "method": SIDECAR_METHOD,
        "model": OLD_MODEL,
    }
    direct: dict[str, Any] = {
        "target": "",
        "method": SQL_METHOD,
        "table": table,
        "ef_search": GRAPH.ef_search,
    }
    common = {"payload": "vector", "dsn": server.dsn, "k": K}
    most = max(settings.pg_clients)
    phases = alternating_phases(
        [("warm-up", {**through, **common, "concurrency": most})], replace(settings, rounds=1)
    )
    for c in settings.pg_clients:
        setups = [
            (f"direct-c{c}", {**direct, **common, "concurrency": c}),
            (f"sidecar-c{c}", {**through, **common, "concurrency": c}),
        ]
        phases += alternating_phases(setups, settings)
    return phases


def cpu_per_query(results: list[PhaseResult], label: str) -> CpuPerQuery:
    mine = [r for r in results if r.label == label]
    count = sum(len(r.latencies_ms) for r in mine)
    if not count:
        return CpuPerQuery(0.0, 0.0, 0.0)
    return CpuPerQuery(
        1000 * sum(r.server_cpu_s for r in mine) / count,
        1000 * sum(r.db_cpu_s for r in mine) / count,
        1000 * sum(r.client_cpu_s for r in mine) / count,
        max(r.db_backends for r in mine),
    )


def _identical_hits(sidecar: SidecarProcess, dsn: str, table_name: str, queries: np.ndarray) -> int:
    """How many queries return the same ids in the same order through the sidecar and directly: both ways must
    run the same search for the comparison to mean anything."""
    statement = read_statements(index_table(table_name, queries.shape[1])).nearest.approximate[False, False]
    same = 0
    with sidecar.client() as client, connection(dsn) as conn:
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(GRAPH.ef_search),))
        for vector in queries:
            through = [h.id for h in client.query(k=K, vector=vector.tolist(), vector_model=OLD_MODEL).hits]
            direct = [row[0] for row in conn.execute(statement, {"query": vector, "k": K})]
            same += through == direct
    return same
