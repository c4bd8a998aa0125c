"""One benchmark run's results, and their machine-readable form (BENCHMARKS.json)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from proxy.bench.adopt import AdoptResult
from proxy.bench.backfill import BUDGET_OVER_IDLE, BackfillResult
from proxy.bench.embed_concurrency import EmbedConcurrencyResult
from proxy.bench.fanout import FanoutResult
from proxy.bench.machine import Machine
from proxy.bench.milvus import MilvusResult
from proxy.bench.overhead import OverheadResult
from proxy.bench.pgvector import PgvectorResult
from proxy.bench.recall import RecallRow
from proxy.bench.rerank import RerankLatency
from proxy.bench.scale import ScaleResult
from proxy.bench.second_collection import CollectionsResult
from proxy.bench.settings import BenchSettings
from proxy.bench.storage import StorageResult


@dataclass(frozen=True)
class BaseLoad:
    corpus: int
    dim: int
    embed_s: float
    insert_docs_per_s: float
    insert_s: float
    flush_s: float


@dataclass(frozen=True)
class RecallResult:
    corpus: int
    queries: int
    dim: int
    rows: list[RecallRow]
    real: RealModelRecall | None = None
    """The same table with two real models, when the run asked for them and they load."""
    real_skipped: str = ""
    """Why the real-model table is missing ('' when it is there or was not asked for)."""
    latency: list[RerankLatency] = field(default_factory=list)
    """Candidate re-ranking's added latency per embedder and k', and its budget."""


@dataclass(frozen=True)
class RealModelRecall:
    old_model: str
    new_model: str
    corpus: int
    queries: int
    seconds: float
    rows: list[RecallRow]


@dataclass
class BenchRun:
    command: str
    settings: BenchSettings
    machine: Machine
    load_avg_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    duration_s: float = 0.0
    base: BaseLoad | None = None
    overhead: OverheadResult | None = None
    fanout: FanoutResult | None = None
    backfill: BackfillResult | None = None
    recall: RecallResult | None = None
    storage: StorageResult | None = None
    scale: ScaleResult | None = None
    collections: CollectionsResult | None = None
    pgvector: PgvectorResult | None = None
    embed_concurrency: EmbedConcurrencyResult | None = None
    adopt: AdoptResult | None = None
    milvus: MilvusResult | None = None
    section_s: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def key_figures(run: BenchRun) -> dict[str, float | None]:
    """The figures agreed with the planner, then the ratios the targets are judged on (None: not measured)."""
    overhead = {r.concurrency: r for r in run.overhead.rows} if run.overhead else {}
    fanout = {r.concurrency: r for r in run.fanout.rows} if run.fanout else {}
    variants = {v.model: v for v in run.backfill.variants} if run.backfill else {}
    hashing = variants.get("hashing")
    storage = {r.policy: r for r in run.storage.rows} if run.storage else {}
    collections = {r.concurrency: r for r in run.collections.rows} if run.collections else {}
    figures = {
        "embed_docs_per_s": hashing.throughput.embed_docs_per_s if hashing else None,
        "index_insert_docs_per_s": run.base.insert_docs_per_s if run.base else None,
        "query_p50_ms": overhead[1].sidecar.p50_ms if 1 in overhead else None,
        "query_p99_ms": overhead[1].sidecar.p99_ms if 1 in overhead else None,
        "dual_p50_ms": fanout[1].dual.p50_ms if 1 in fanout else None,
        "dual_p99_ms": fanout[1].dual.p99_ms if 1 in fanout else None,
        "backfill_docs_per_s": hashing.throughput.backfill_docs_per_s if hashing else None,
        "throttled_share": hashing.throttled_share if hashing else None,
        "throttled_budget_ratio": BUDGET_OVER_IDLE if hashing else None,
    }
    for c, overhead_row in overhead.items():
        figures[f"overhead_p50_ratio_c{c}"] = overhead_row.p50_ratio
        figures[f"baseline_query_p50_ms_c{c}"] = overhead_row.baseline.p50_ms
    for c, fanout_row in fanout.items():
        figures[f"fanout_p50_ratio_c{c}"] = fanout_row.p50_ratio
        figures[f"fanout_cpu_ratio_c{c}"] = fanout_row.cpu_ratio
    for name, variant in variants.items():
        figures[f"embed_docs_per_s_{name}"] = variant.throughput.embed_docs_per_s
        figures[f"backfill_docs_per_s_{name}"] = variant.throughput.backfill_docs_per_s
        figures[f"backfill_embed_ratio_{name}"] = variant.throughput.ratio
        if run.base:
            figures[f"backfill_stage_ratio_{name}"] = variant.throughput.stage_ratio(
                run.base.insert_docs_per_s
            )
        figures[f"throttled_p99_ratio_{name}"] = variant.throttled.p99_ratio
    for policy, storage_row in storage.items():
        figures[f"storage_peak_ratio_{policy}"] = storage_row.peak_ratio
    for c, collections_row in collections.items():
        figures[f"collections_p50_ratio_c{c}"] = collections_row.p50_ratio
        figures[f"collections_p99_ratio_c{c}"] = collections_row.p99_ratio
        figures[f"collections_one_p50_ms_c{c}"] = collections_row.one.p50_ms
        figures[f"collections_two_p50_ms_c{c}"] = collections_row.two.p50_ms
    if run.pgvector is not None:
        figures |= pgvector_figures(run.pgvector)
    if run.embed_concurrency is not None:
        for row in run.embed_concurrency.rows:
            figures[f"remote_backfill_docs_per_s_c{row.concurrency}"] = row.docs_per_s
            figures[f"remote_backfill_ratio_c{row.concurrency}"] = row.ratio
        for limit in run.embed_concurrency.rate_limits:
            suffix = "headers" if limit.headers else "429_only"
            figures[f"remote_rate_limit_ratio_{suffix}"] = limit.ratio
    if run.adopt is not None:
        figures |= adopt_figures(run.adopt)
    if run.milvus is not None:
        figures |= milvus_figures(run.milvus)
    return {name: _finite(value) for name, value in figures.items()}


def pgvector_figures(result: PgvectorResult) -> dict[str, float | None]:
    """The pgvector section's figures: each ratio of a target, and the two sides it divides."""
    figures: dict[str, float | None] = {}
    for row in result.query.rows:
        c = row.concurrency
        figures[f"pgvector_p50_ratio_c{c}"] = row.p50_ratio
        figures[f"pgvector_qps_ratio_c{c}"] = row.qps_ratio
        figures[f"pgvector_cpu_ceiling_ratio_c{c}"] = row.ceiling_ratio
        figures[f"pgvector_direct_p50_ms_c{c}"] = row.direct.p50_ms
        figures[f"pgvector_sidecar_p50_ms_c{c}"] = row.sidecar.p50_ms
        figures[f"pgvector_direct_qps_c{c}"] = row.direct.qps
        figures[f"pgvector_sidecar_qps_c{c}"] = row.sidecar.qps
    for method in result.writes.methods:
        figures[f"pgvector_write_rows_per_s_{method.name}"] = method.rows_per_s
    figures["pgvector_write_ratio"] = result.writes.ratio
    figures["pgvector_backfill_docs_per_s"] = result.backfill.backfill_docs_per_s
    figures["pgvector_backfill_ratio"] = result.backfill.ratio
    return figures


def milvus_figures(result: MilvusResult) -> dict[str, float | None]:
    """The Milvus section's figures: query p50 and QPS both ways per client count, writes, backfill."""
    figures: dict[str, float | None] = {}
    for row in result.rows:
        c = row.concurrency
        figures[f"milvus_direct_p50_ms_c{c}"] = row.direct.p50_ms
        figures[f"milvus_sidecar_p50_ms_c{c}"] = row.sidecar.p50_ms
        figures[f"milvus_direct_qps_c{c}"] = row.direct.qps
        figures[f"milvus_sidecar_qps_c{c}"] = row.sidecar.qps
        figures[f"milvus_p50_ratio_c{c}"] = row.p50_ratio
        figures[f"milvus_qps_ratio_c{c}"] = row.qps_ratio
    figures["milvus_write_rows_per_s_direct"] = result.direct_write_rows_per_s
    figures["milvus_write_rows_per_s_sidecar"] = result.sidecar_write_rows_per_s
    figures["milvus_backfill_docs_per_s"] = result.backfill_docs_per_s
    return figures


def adopt_figures(result: AdoptResult) -> dict[str, float | None]:
    """The adopted-table section's figures, per run (hashing, real)."""
    figures: dict[str, float | None] = {}
    for r in result.runs:
        figures[f"adopt_backfill_docs_per_s_{r.name}"] = r.backfill_docs_per_s
        figures[f"adopt_embed_docs_per_s_{r.name}"] = r.embed_docs_per_s
        figures[f"adopt_db_bulk_rows_per_s_{r.name}"] = r.bulk.bulk_rows_per_s
        figures[f"adopt_db_insert_rows_per_s_{r.name}"] = r.bulk.insert_rows_per_s
        figures[f"adopt_db_full_insert_rows_per_s_{r.name}"] = r.bulk.full_insert_rows_per_s
        figures[f"adopt_backfill_ratio_{r.name}"] = r.ratio
        figures[f"adopt_backfill_insert_ratio_{r.name}"] = r.full_insert_ratio
        figures[f"adopt_peak_storage_ratio_{r.name}"] = r.storage.peak_ratio
        figures[f"adopt_writer_p50_ratio_{r.name}"] = r.writer.p50_ratio
        figures[f"adopt_writer_p99_ratio_{r.name}"] = r.writer.p99_ratio
        figures[f"adopt_ddl_max_writer_ms_{r.name}"] = max((s.writer_max_ms for s in r.ddl), default=None)
        if r.alternative is not None:
            figures[f"adopt_new_column_peak_storage_ratio_{r.name}"] = r.alternative.peak_ratio
            figures[f"adopt_new_column_rows_per_s_{r.name}"] = r.alternative.rows_per_s
    return figures


def recall_curve(run: BenchRun, strategy: str = "calibrated") -> list[list[float]] | None:
    """[coverage, recall@10] of the sidecar's default merge: what `switchyard plan --from-bench` reads."""
    if run.recall is None:
        return None
    return [
        [row.coverage, round(row.recall[strategy], 4)] for row in run.recall.rows if strategy in row.recall
    ]


def recall_curves(run: BenchRun) -> dict[str, list[list[float]]]:
    """Every measured recall curve by column (merges, re-ranking per k', the old index alone): what
    `switchyard plan --from-bench --recall-strategy NAME` picks from."""
    if run.recall is None or not run.recall.rows:
        return {}
    names = list(run.recall.rows[0].recall)
    return {name: recall_curve(run, name) or [] for name in names}


def to_json(run: BenchRun) -> dict[str, Any]:
    return {
        **key_figures(run),
        "recall_curve": recall_curve(run),
        "recall_curves": recall_curves(run),
        "embed_model": "hashing",
        "command": run.command,
        "run": jsonable(run),
    }


def jsonable(value: Any) -> Any:
    """Dataclasses become dicts of their fields (but those marked `metadata={"private": True}`, such as a DSN
    that may hold a password) and properties (ratios, pass/fail), recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.metadata.get("private")
        }
        derived = {
            name: jsonable(getattr(value, name))
            for name, attribute in vars(type(value)).items()
            if isinstance(attribute, property)
        }
        return fields | derived
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    return value


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else round(value, 4)
