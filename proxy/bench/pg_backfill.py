"""The pgvector section's backfill: a migration from one pgvector table (model hash-a) to another (model-b, a
hashing model of another seed), both HNSW-indexed, against the two stages it is made of: the raw embedding
rate of the new model, and the database's write rate into a table with its HNSW index (the best direct method
of `pg_writes`, measured in the same run). A backfill can go no faster than the slower of the two.

The same migration runs a second time into a table whose HNSW index is deferred (`build_index: deferred`):
the backfill writes into a table without the graph, and the worker builds it at the end; its docs/s count
from StartMigration until the index is valid, so the build is paid in full.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from proxy.adapters.pgvector.deferred import hnsw_state
from proxy.adapters.pgvector.schema import IndexTable
from proxy.bench.backfill import raw_embed_rate, run_to_completion
from proxy.bench.cpu import BackendsCpu, PhaseCpu, backends_spent
from proxy.bench.pg_server import (
    GraphParams,
    LoadTimes,
    PgServer,
    index_table,
    load_table,
    pg_index,
    pg_sidecar_config,
)
from proxy.bench.pg_writes import PgWritesResult
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import (
    NEW_MODEL,
    OLD_MODEL,
    backfill_settings,
    ensure_running,
    model_config,
    start_sidecar,
)
from proxy.bench.stats import ratio
from proxy.demo.corpus import CorpusDoc

TARGET_BACKFILL_RATIO = 0.9
"""Backfill docs/s over min(raw embed docs/s, the database's write rows/s)."""
_BUILD_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DeferredRun:
    """The same backfill into a table whose HNSW index the worker builds at the end."""

    docs_per_s: float
    """Documents over the time from StartMigration until the HNSW index is valid: the build included."""
    backfill_docs_per_s: float
    """The backfill alone, counted as the live run's is (from the first progress to `complete`)."""
    build_s: float
    """From `complete` until the index is valid: the worker's CREATE INDEX CONCURRENTLY, and its start."""
    wall_s: float
    sidecar_cpu_s: float
    db_cpu_s: float
    """PostgreSQL's client backends and parallel workers, the builder's included (sampled while they ran: the
    last ~20 ms of each is lost)."""


@dataclass(frozen=True)
class PgBackfillResult:
    docs: int
    batch: int
    load: LoadTimes
    """Loading the old table (COPY, then the HNSW build)."""
    embed_docs_per_s: float
    """A fresh embedder of the new model over the same texts in the same batches, before and after, combined."""
    write_rows_per_s: float
    write_method: str
    """The direct write method whose rate is the bound (the best of `pg_writes` that keeps the index live)."""
    statement_rows_per_s: float
    """`executemany` of the adapter's upsert statement, the statement the backfill writes with."""
    backfill_docs_per_s: float
    """From the first progress to `complete`, so the first batch is left out, as in the backfill section."""
    wall_s: float
    sidecar_cpu_s: float
    db_cpu_s: float
    """PostgreSQL's client backends from StartMigration to `complete`."""
    deferred: DeferredRun

    @property
    def deferred_ratio(self) -> float:
        return ratio(self.deferred.docs_per_s, self.bound)

    @property
    def bound(self) -> float:
        return min(self.embed_docs_per_s, self.write_rows_per_s)

    @property
    def ratio(self) -> float:
        return ratio(self.backfill_docs_per_s, self.bound)

    @property
    def stage_bound(self) -> float:
        """Embedding a batch, then writing it, one after the other: what a backfill without overlap can reach."""
        return 1 / (1 / self.embed_docs_per_s + 1 / self.write_rows_per_s)

    @property
    def same_statement_ratio(self) -> float:
        """Backfill docs/s over the adapter's own statement sent directly: the backfill machinery's share of
        a miss; the rest is that statement's cost in the database against the best method's."""
        return ratio(self.backfill_docs_per_s, self.statement_rows_per_s)

    @property
    def sidecar_cpu_ms_per_doc(self) -> float:
        return ratio(1000 * self.sidecar_cpu_s, self.docs)

    @property
    def db_cpu_ms_per_doc(self) -> float:
        return ratio(1000 * self.db_cpu_s, self.docs)

    @property
    def passed(self) -> bool:
        return self.ratio >= TARGET_BACKFILL_RATIO


def run_backfill(
    settings: BenchSettings,
    server: PgServer,
    docs: Sequence[CorpusDoc],
    vectors: np.ndarray,
    tables: dict[str, str],
    workdir: Path,
    writes: PgWritesResult,
) -> PgBackfillResult:
    count, batch, graph = min(settings.pg_backfill_docs, len(docs)), settings.backfill_batch, GraphParams()
    load = load_table(
        server.dsn, index_table(tables["old"], settings.dim), graph, docs[:count], vectors[:count]
    )
    new_model = model_config("hashing", settings.dim, 2)
    texts = [d.text for d in docs[:count]]
    embed_before = raw_embed_rate(new_model, texts, batch)
    migration = backfill_settings(batch)
    # Created empty, with its HNSW index, when the sidecar opens it.
    live = pg_index(NEW_MODEL, server.dsn, tables["new"], graph)
    config = pg_sidecar_config(
        workdir / "data",
        {"docs-pg-a": pg_index(OLD_MODEL, server.dsn, tables["old"], graph), "docs-pg-b": live},
        settings.dim,
        migration=migration,
    )
    sidecar, _ = start_sidecar(config, workdir)
    try:
        assert sidecar.process is not None
        cpu = PhaseCpu(sidecar.process.pid, server.dsn)
        cpu.start()
        with sidecar.client() as client:
            rate, wall, _ = run_to_completion(client)
        spent = cpu.stop()
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    deferred = _run_deferred(server.dsn, tables, graph, settings.dim, migration, workdir / "deferred", count)
    # Both timings embed the same texts: the rate over both is the harmonic mean of the two.
    embed_rate = 2 / (1 / embed_before + 1 / raw_embed_rate(new_model, texts, batch))
    best, statement = writes.best_direct, writes.method("executemany").rows_per_s
    return PgBackfillResult(
        count,
        batch,
        load,
        embed_rate,
        best.rows_per_s,
        best.name,
        statement,
        rate,
        wall,
        spent.server_s,
        spent.db_s,
        deferred,
    )


def _run_deferred(
    dsn: str,
    tables: dict[str, str],
    graph: GraphParams,
    dim: int,
    migration: dict[str, object],
    workdir: Path,
    count: int,
) -> DeferredRun:
    new = pg_index(NEW_MODEL, dsn, tables["new_deferred"], graph)
    new["pgvector"]["build_index"] = "deferred"
    indexes = {"docs-pg-a": pg_index(OLD_MODEL, dsn, tables["old"], graph), "docs-pg-b": new}
    config = pg_sidecar_config(workdir / "data", indexes, dim, migration=migration)
    table = IndexTable(index="docs-pg-b", name=tables["new_deferred"], dim=dim, space="cosine")
    sidecar, _ = start_sidecar(config, workdir)
    backends = BackendsCpu(dsn, parallel_workers=True)
    # The builder's backend ends with its build, so its CPU is taken from samples made while it runs.
    seen = backends.sample()
    before = dict(seen)
    try:
        assert sidecar.process is not None
        cpu = PhaseCpu(sidecar.process.pid, "")
        cpu.start()
        with sidecar.client() as client, psycopg.connect(dsn, autocommit=True) as conn:
            rate, _, started = run_to_completion(client, on_poll=lambda _: seen.update(backends.sample()))
            complete_at = time.perf_counter()
            while hnsw_state(conn, table) != "valid":
                if time.perf_counter() - complete_at > _BUILD_TIMEOUT_S:
                    raise TimeoutError(
                        f"the deferred HNSW index was not built within {_BUILD_TIMEOUT_S:.0f}s"
                    )
                seen.update(backends.sample())
                time.sleep(0.02)  # the builder and its parallel workers end with the build: sample often
            built_at = time.perf_counter()
        spent = cpu.stop()
        seen.update(backends.sample())
        ensure_running(sidecar)
    finally:
        backends.close()
        sidecar.stop()
    wall = built_at - started
    db_s, _ = backends_spent(before, seen)
    return DeferredRun(count / wall, rate, built_at - complete_at, wall, spent.server_s, db_s)
