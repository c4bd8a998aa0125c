"""Section 8 of BENCHMARKS.md, pgvector, and its rows of the summary; every figure comes from the run object.

Each target line carries its arithmetic: the CPU per request of each process on the path and the ceiling it
implies, so a miss says where the time goes.
"""

from __future__ import annotations

from proxy.bench import pg_backfill, pg_writes, pgvector
from proxy.bench.pgvector import CpuPerQuery, PgQueryRow, PgvectorResult
from proxy.bench.report_sections import (
    failure_notes,
    fmt_rate,
    fmt_ratio,
    missing_note,
    side_by_side_cells,
    table,
    verdict,
)
from proxy.bench.results import BenchRun

TITLE = "## 8. pgvector: the sidecar in front of PostgreSQL, against direct SQL"


def pgvector_summary_rows(run: BenchRun) -> list[list[str]]:
    if run.pgvector is None:
        return []
    return [[t.figure, fmt_ratio(t.value), t.goal, verdict(t.passed, t.value)] for t in run.pgvector.targets]


def pgvector_section(run: BenchRun) -> str:
    missing = missing_note(run, "pgvector")
    if missing or run.pgvector is None:
        return f"{TITLE}\n\n{missing}"
    r = run.pgvector
    parts = [TITLE, _intro(r), _queries(r), _cpu(r), _writes(r), _backfill(r), _targets(r)]
    parts.append(
        "Alone: `switchyard bench --sections pgvector` (PGVECTOR_DSN, else scripts/ensure-pgvector.sh)."
    )
    return "\n\n".join(parts)


def _intro(r: PgvectorResult) -> str:
    q, s = r.query, r.server
    own = f" ({s.database_note})" if s.database_note else " (the benchmark's own database)"
    return (
        f"PostgreSQL {s.server_version} with pgvector {s.pgvector_version} at `{s.where}`{own}. Queries (k={q.k},"
        f" caller-supplied hash-a vectors) against one table of {q.table_rows:,} rows, dim {q.dim}, in the"
        f" adapter's layout with its HNSW index (m {q.graph.m}, ef_construction {q.graph.ef_construction}),"
        f" ef_search {q.graph.ef_search} on both paths; loaded by binary COPY in {q.load.copy_s:.1f} s, graph"
        f" built in {q.load.index_s:.1f} s. **Sidecar**: a sidecar process whose serving index is a pgvector"
        " index on that table (no migration). **Direct**: psycopg clients sending the adapter's own statement"
        " (`proxy/adapters/pgvector/queries.py`, the same bytes), the vector as one binary parameter"
        " (`pgvector.psycopg.register_vector`), connections set up as the adapter's pool sets up its own"
        " (autocommit, ef_search once) and warmed past psycopg's prepare threshold before timing. One load"
        " generator process drives both with the same model, N asyncio tasks (gRPC: on one channel; SQL: a"
        f" connection each); {q.rounds} x {q.round_s:g} s per path and client count, rounds interleaved."
        f" Same answers: {q.identical_hits} of {q.checked_queries} queries returned the same ids in the same"
        " order both ways."
    )


def _queries(r: PgvectorResult) -> str:
    rows = [
        [
            *side_by_side_cells(x.concurrency, x.direct, x.sidecar),
        ]
        for x in r.query.rows
    ]
    header = [
        "clients",
        "direct p50 ms",
        "direct p99 ms",
        "direct QPS",
        "sidecar p50 ms",
        "sidecar p99 ms",
        "sidecar QPS",
        "p50 ratio",
        "p99 ratio",
        "QPS ratio",
    ]
    failures = failure_notes(
        (f"{side}, {x.concurrency} client(s)", m)
        for x in r.query.rows
        for side, m in (("direct", x.direct), ("sidecar", x.sidecar))
    )
    return f"### Queries\n\n{table(header, rows)}{failures}"


def _cpu(r: PgvectorResult) -> str:
    db = (
        "PostgreSQL backends"
        if r.server.cpu_measured
        else "PostgreSQL (processes not visible from here: n/a)"
    )
    rows = [
        [str(x.concurrency), path, *_cpu_cells(cpu, x), fmt_rate(measured.qps)]
        for x in r.query.rows
        for path, cpu, measured in (("direct", x.direct_cpu, x.direct), ("sidecar", x.sidecar_cpu, x.sidecar))
    ]
    header = [
        "clients",
        "path",
        "sidecar",
        db,
        "backends busy",
        "load generator",
        "total",
        "ceiling QPS",
        "measured QPS",
    ]
    cores = r.query.rows[0].cores
    return (
        f"### CPU ms per query\n\nCPU time of each process over the timed part, divided by the queries answered."
        f" The ceiling is {cores} cores / total: the QPS at which the cores would do nothing but this path.\n\n"
        + table(header, rows)
    )


def _cpu_cells(cpu: CpuPerQuery, row: PgQueryRow) -> list[str]:
    return [
        f"{cpu.sidecar_ms:.3f}" if cpu.sidecar_ms else "-",
        f"{cpu.db_ms:.3f}",
        str(cpu.db_backends),
        f"{cpu.client_ms:.3f}",
        f"{cpu.total_ms:.3f}",
        fmt_rate(cpu.ceiling_qps(row.cores)),
    ]


def _writes(r: PgvectorResult) -> str:
    w = r.writes
    intro = (
        f"{w.docs:,} documents with caller-supplied vectors per method, in batches of {w.batch}, each method"
        " into a fresh table of its own with the HNSW index present (every row searchable once written):"
        " `sidecar`, Upsert RPCs to a sidecar serving that table; `executemany`, the adapter's upsert"
        " statement with the adapter's parameters, one execution per batch (psycopg pipelines them);"
        f" `copy`, one binary COPY per batch. One writer each; the methods take turns, {w.rounds} turn(s),"
        " the order rotating."
    )
    rows = [
        [
            m.name,
            f"{m.rows:,}",
            fmt_rate(m.rows_per_s),
            f"{m.ms_per_row:.2f}",
            f"{m.db_cpu_ms_per_row:.2f}",
            f"{m.sidecar_cpu_ms_per_row:.2f}" if m.name == "sidecar" else "-",
            f"{m.client_cpu_ms_per_row:.3f}",
        ]
        for m in w.methods
    ]
    header = [
        "method",
        "rows",
        "rows/s",
        "ms/row",
        "PostgreSQL CPU ms/row",
        "sidecar CPU ms/row",
        "client CPU",
    ]
    return f"### Writes\n\n{intro}\n\n{table(header, rows)}"


def _backfill(r: PgvectorResult) -> str:
    b, d = r.backfill, r.backfill.deferred
    intro = (
        f"A migration pgvector -> pgvector of {b.docs:,} documents (hash-a to model-b, hashing models of dim"
        f" {r.query.dim}; old table loaded by COPY in {b.load.copy_s:.1f} s + graph {b.load.index_s:.1f} s),"
        f" batch {b.batch}, no query load, run twice in a row: into an empty new table with its HNSW index"
        " (live), then into one without it (`build_index: deferred`), whose worker builds the index with"
        " CREATE INDEX CONCURRENTLY once the backfill completes; that row's docs/s count from StartMigration"
        f" until the index is valid (the backfill alone: {fmt_rate(d.backfill_docs_per_s)} docs/s), and its"
        " PostgreSQL CPU includes the build's (its backend and parallel workers, sampled while they ran). Raw embed:"
        " a fresh embedder of model-b over the same texts and batches, before and after both runs, combined."
        " Database write: the best direct method of the writes above (into a table with its index live)."
        " Timings share two cores with whatever else the machine runs."
    )
    header = [
        "new table",
        "docs",
        "raw embed docs/s",
        "database write rows/s",
        "bound: min",
        "backfill docs/s",
        "ratio",
        "HNSW build s",
        "sidecar CPU ms/doc",
        "PostgreSQL CPU ms/doc",
        "wall s",
    ]
    bound = [
        fmt_rate(b.embed_docs_per_s),
        f"{fmt_rate(b.write_rows_per_s)} ({b.write_method})",
        fmt_rate(b.bound),
    ]
    live = [
        "HNSW index live",
        f"{b.docs:,}",
        *bound,
        fmt_rate(b.backfill_docs_per_s),
        fmt_ratio(b.ratio),
        "-",
        f"{b.sidecar_cpu_ms_per_doc:.2f}",
        f"{b.db_cpu_ms_per_doc:.2f}",
        f"{b.wall_s:.1f}",
    ]
    deferred = [
        "HNSW index deferred",
        f"{b.docs:,}",
        *bound,
        fmt_rate(d.docs_per_s),
        fmt_ratio(b.deferred_ratio),
        f"{d.build_s:.1f}",
        f"{1000 * d.sidecar_cpu_s / b.docs:.2f}",
        f"{1000 * d.db_cpu_s / b.docs:.2f}",
        f"{d.wall_s:.1f}",
    ]
    return f"### Backfill\n\n{intro}\n\n{table(header, [live, deferred])}"


def _targets(r: PgvectorResult) -> str:
    rows = {x.concurrency: x for x in r.query.rows}
    one, most = rows[min(rows)], rows[max(rows)]
    p50, qps, writes, backfill = r.targets
    lines = [
        _line(p50) + _latency_arithmetic(one),
        _line(qps) + _throughput_arithmetic(most),
        _line(writes) + _writes_arithmetic(r),
        _line(backfill) + _backfill_arithmetic(r),
    ]
    return "### Targets\n\n" + "\n".join(lines)


def _line(t: pgvector.Target) -> str:
    return f"- target: {t.figure} {t.goal}: {fmt_ratio(t.value)}, {verdict(t.passed, t.value)}."


def _latency_arithmetic(x: PgQueryRow) -> str:
    added = x.sidecar.p50_ms - x.direct.p50_ms
    extra_client = x.sidecar_cpu.client_ms - x.direct_cpu.client_ms
    extra_db = x.sidecar_cpu.db_ms - x.direct_cpu.db_ms
    return (
        f" The sidecar adds {added:.2f} ms to a p50 of {x.direct.p50_ms:.2f} ms; one client waits for every"
        f" step in turn, so that is about the CPU the path adds per query: the sidecar's own"
        f" {x.sidecar_cpu.sidecar_ms:.2f} ms, the load generator's gRPC side {extra_client:+.2f} ms over the"
        f" SQL client, PostgreSQL {extra_db:+.2f} ms (its work spread over {x.sidecar_cpu.db_backends} backends"
        f" through the sidecar, {x.direct_cpu.db_backends} directly)."
    )


def _throughput_arithmetic(x: PgQueryRow) -> str:
    d, s = x.direct_cpu, x.sidecar_cpu
    return (
        f" CPU per query, direct: PostgreSQL {d.db_ms:.3f} + load generator {d.client_ms:.3f} = {d.total_ms:.3f}"
        f" ms, a ceiling of {fmt_rate(d.ceiling_qps(x.cores))} QPS on {x.cores} cores (measured"
        f" {fmt_rate(x.direct.qps)}); sidecar: sidecar {s.sidecar_ms:.3f} + PostgreSQL {s.db_ms:.3f} + load"
        f" generator {s.client_ms:.3f} = {s.total_ms:.3f} ms, a ceiling of {fmt_rate(s.ceiling_qps(x.cores))}"
        f" QPS (measured {fmt_rate(x.sidecar.qps)}). The ceilings' ratio, {fmt_ratio(x.ceiling_ratio)}, is"
        f" where the QPS ratio goes once the cores are busy; {pgvector.TARGET_QPS_RATIO} needs the sidecar's"
        f" path to cost at most {d.total_ms / pgvector.TARGET_QPS_RATIO:.3f} ms of CPU per query."
    )


def _writes_arithmetic(r: PgvectorResult) -> str:
    w = r.writes
    s, best, same = w.method("sidecar"), w.best_direct, w.method("executemany")
    return (
        f" Sidecar {s.ms_per_row:.2f} ms/row (PostgreSQL CPU {s.db_cpu_ms_per_row:.2f}, sidecar CPU"
        f" {s.sidecar_cpu_ms_per_row:.2f}) against {best.name} {best.ms_per_row:.2f} ms/row (PostgreSQL CPU"
        f" {best.db_cpu_ms_per_row:.2f}); {pg_writes.TARGET_WRITE_RATIO} needs at most"
        f" {best.ms_per_row / pg_writes.TARGET_WRITE_RATIO:.2f} ms/row. Against the adapter's own statement"
        f" sent directly (executemany, {same.ms_per_row:.2f} ms/row, PostgreSQL CPU {same.db_cpu_ms_per_row:.2f})"
        f" the sidecar's ratio is {fmt_ratio(w.same_statement_ratio)}."
    )


def _backfill_arithmetic(r: PgvectorResult) -> str:
    b = r.backfill
    per_doc = 1000 / b.backfill_docs_per_s if b.backfill_docs_per_s else float("nan")
    return (
        f" {fmt_rate(b.backfill_docs_per_s)} docs/s is {per_doc:.2f} ms/doc against the bound's"
        f" {1000 / b.bound:.2f} (min of raw embed {fmt_rate(b.embed_docs_per_s)} and {b.write_method}"
        f" {fmt_rate(b.write_rows_per_s)}); per doc the backfill costs PostgreSQL {b.db_cpu_ms_per_doc:.2f} ms"
        f" of CPU and the sidecar {b.sidecar_cpu_ms_per_doc:.2f} ms; {pg_backfill.TARGET_BACKFILL_RATIO} needs"
        f" at least {fmt_rate(pg_backfill.TARGET_BACKFILL_RATIO * b.bound)} docs/s. Against the adapter's own"
        f" statement sent directly (executemany, {fmt_rate(b.statement_rows_per_s)} rows/s), the statement the"
        f" backfill writes with, the ratio is {fmt_ratio(b.same_statement_ratio)}. With the HNSW index deferred,"
        f" the same backfill and the build together ran at {fmt_rate(b.deferred.docs_per_s)} docs/s"
        f" ({fmt_ratio(b.deferred_ratio)} of the same bound, whose write rate keeps the index live)."
    )
