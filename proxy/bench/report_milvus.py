"""Section 11 of BENCHMARKS.md, Milvus; every figure comes from the run object."""

from __future__ import annotations

from proxy.bench import milvus
from proxy.bench.milvus import MilvusResult
from proxy.bench.report_sections import fmt_ms, fmt_rate, fmt_ratio, missing_note, table
from proxy.bench.results import BenchRun

TITLE = "## 11. Milvus: the sidecar in front of a Milvus server, against direct pymilvus"


def milvus_section(run: BenchRun) -> str:
    missing = missing_note(run, "milvus")
    if missing or run.milvus is None:
        return f"{TITLE}\n\n{missing}"
    r = run.milvus
    return "\n\n".join(
        [
            TITLE,
            _intro(r),
            _queries(r),
            _writes(r),
            _backfill(r),
            "Alone: `switchyard bench --sections milvus`.",
        ]
    )


def _intro(r: MilvusResult) -> str:
    return (
        f"{r.engine}, in a process of its own, reached by URI by both paths. Queries (k={milvus.K},"
        f" caller-supplied hash-a vectors) against one collection of {r.docs:,} documents, dim {r.dim}, in the"
        f" adapter's layout (HNSW M {milvus.M}, efConstruction {milvus.EF_CONSTRUCTION}, COSINE), loaded"
        f" through the adapter in {r.load_s:.1f} s; ef {milvus.EF} on both paths. **Sidecar**: a sidecar whose"
        " serving index is a Milvus index on that collection (no migration). **Direct**: pymilvus sending the"
        " adapter's own search (filter `deleted == false`, output fields version and metadata, Strong"
        f" consistency). Clients are threads of the benchmark process; {r.rounds} round(s) of {r.round_s:g} s"
        f" per side, interleaved. {r.identical_hits} of {r.checked_queries} checked queries returned the same"
        " ids in the same order both ways."
    )


def _queries(r: MilvusResult) -> str:
    rows = [
        [
            str(row.concurrency),
            fmt_ms(row.direct.p50_ms),
            fmt_ms(row.sidecar.p50_ms),
            fmt_ratio(row.p50_ratio),
            fmt_rate(row.direct.qps),
            fmt_rate(row.sidecar.qps),
            fmt_ratio(row.qps_ratio),
        ]
        for row in r.rows
    ]
    header = [
        "clients",
        "direct p50 ms",
        "sidecar p50 ms",
        "p50 ratio",
        "direct QPS",
        "sidecar QPS",
        "QPS ratio",
    ]
    return table(header, rows)


def _writes(r: MilvusResult) -> str:
    return (
        f"Writes, {r.write_docs:,} documents in batches of {milvus.WRITE_BATCH} with caller-supplied vectors:"
        f" through the sidecar {fmt_rate(r.sidecar_write_rows_per_s)} rows/s (the adapter reads the stored"
        " versions at Strong consistency, then upserts the newer records), direct pymilvus upserts of the same"
        f" rows without the check {fmt_rate(r.direct_write_rows_per_s)} rows/s: ratio {fmt_ratio(r.write_ratio)}."
    )


def _backfill(r: MilvusResult) -> str:
    return (
        f"Backfill, Milvus -> Milvus (hash-a -> model-b, both hashing, dim {r.dim}): {r.backfill_docs:,} documents"
        f" in {r.backfill_s:.1f} s from StartMigration to complete, {fmt_rate(r.backfill_docs_per_s)} docs/s."
    )
