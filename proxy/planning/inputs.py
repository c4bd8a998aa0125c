"""What the planner is told: the corpus and its traffic, measured or assumed throughputs, the recall curve.

Bench results: `switchyard plan --from-bench FILE.json` reads one flat JSON object; every key is
optional and a missing one falls back to the assumed default in `Measurements`:

    {
      "embed_docs_per_s": 950.0,         # new model, batched, documents of tokens_per_doc tokens
      "index_insert_docs_per_s": 4200.0, # upserts into the new index
      "batch_overhead_ms": 1.5,          # a backfill batch's reads, lease and checkpoint
      "backfill_docs_per_s": 610.0,      # end to end; overrides the three above
      "query_p50_ms": 4.1, "query_p99_ms": 11.8,  # a query through one leg
      "dual_p50_ms": 6.3, "dual_p99_ms": 17.5,    # a query fanned out to both indexes and merged
      "throttled_share": 0.04, "throttled_budget_ratio": 1.2,  # backfill beside queries, budget 1.2x p99
      "recall_curve": [[0.0, 0.66], [0.5, 0.78], [1.0, 1.0]]  # coverage -> recall@10
    }
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from proxy.migration.retirement import StoragePolicy
from proxy.migration.throttle import AdaptiveThrottle
from proxy.planning.remote import RemoteEmbedding
from proxy.planning.units import DAY_S

THROTTLE_FLOOR = AdaptiveThrottle.MIN_DUTY
"""The adaptive throttle's smallest duty: the planner's throttle never holds the backfill below it."""

DEFAULT_RECALL_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 0.66),
    (0.25, 0.70),
    (0.5, 0.78),
    (0.75, 0.86),
    (1.0, 1.0),
)
"""proxy/bench/recall.py, calibrated merge, two 384-d hashing models, 1,500 docs, 80 queries."""


class Strategy(StrEnum):
    OFFLINE = "offline"
    BACKFILL = "backfill"
    LAZY = "lazy"
    PARALLEL = "parallel"


TITLES: Mapping[Strategy, str] = {
    Strategy.OFFLINE: "(a) offline re-index",
    Strategy.BACKFILL: "(b) progressive backfill",
    Strategy.LAZY: "(c) lazy on read only",
    Strategy.PARALLEL: "(d) parallel (default)",
}


@dataclass(frozen=True)
class Measurements:
    """Throughputs and latencies on the user's machine; the defaults are assumptions, see `provenance`."""

    embed_docs_per_s: float = 1000.0
    """A small 384-d model (MiniLM / e5-small class) batched on one mid-range GPU, 200-token documents."""
    index_insert_docs_per_s: float = 3000.0
    """hnswlib (M=16, ef_construction=200) plus its SQLite rows, 384-d, one writer."""
    batch_overhead_ms: float = 2.0
    """A backfill batch's work besides embedding and inserting: reading the source, checking versions,
    renewing the lease, checkpointing (a local Redis and the embedded index: 1-2 ms on an idle machine)."""
    backfill_docs_per_s: float | None = None
    """End-to-end backfill speed if measured; otherwise derived from the three above."""
    query_p50_ms: float = 5.0
    query_p99_ms: float = 15.0
    dual_p50_ms: float = 7.0
    dual_p99_ms: float | None = None
    """When absent: dual_p50 scaled by the single leg's p99/p50 (the fan-out keeps the tail's shape)."""
    throttled_share: float | None = None
    """A backfill's docs/s beside query load under a latency budget, over its docs/s with no load."""
    throttled_budget_ratio: float | None = None
    """That budget over the idle query p99 it was set from."""
    provenance: Mapping[str, str] = field(default_factory=dict)
    """Field name -> where its value came from ("measured (bench.json)", "given (--embed-rate)")."""

    def __post_init__(self) -> None:
        for name in BENCH_KEYS:
            value = getattr(self, name)
            least = 0 if name == "batch_overhead_ms" else math.ulp(0)
            if value is not None and not (math.isfinite(value) and value >= least):
                raise ValueError(
                    f"{name} must be a {'non-negative' if least == 0 else 'positive'} number, got {value!r}"
                )

    def pipeline_docs_per_s(self, batch_size: int) -> float:
        if self.backfill_docs_per_s is not None:
            return self.backfill_docs_per_s
        # One worker embeds a batch, inserts it, then does its bookkeeping: the times add up.
        seconds_per_doc = 1 / self.embed_docs_per_s + 1 / self.index_insert_docs_per_s
        return 1.0 / (seconds_per_doc + self.batch_overhead_ms / 1000 / batch_size)

    def throttle_exponent(self) -> float:
        """a in share = 1 - (p99_idle / budget)^a: 1 for a single queue, or fitted to a measured run."""
        share, ratio = self.throttled_share, self.throttled_budget_ratio
        if share is None or ratio is None or ratio <= 1:
            return 1.0
        share = min(max(share, THROTTLE_FLOOR), 0.999)
        return math.log(1 - share) / math.log(1 / ratio)

    def dual_p99(self) -> float:
        if self.dual_p99_ms is not None:
            return self.dual_p99_ms
        return self.dual_p50_ms * self.query_p99_ms / self.query_p50_ms

    def source_of(self, name: str) -> str:
        return self.provenance.get(name, "assumed (default)")


BENCH_KEYS = (
    "embed_docs_per_s",
    "index_insert_docs_per_s",
    "batch_overhead_ms",
    "backfill_docs_per_s",
    "query_p50_ms",
    "query_p99_ms",
    "dual_p50_ms",
    "dual_p99_ms",
    "throttled_share",
    "throttled_budget_ratio",
)


@dataclass(frozen=True)
class PlanInput:
    docs: int
    dim: int
    write_rate: float
    """Documents written per second (inserts and updates), dual-written during the migration."""
    qps: float
    latency_budget_ms: float
    """Query p99 the backfill's throttle protects."""
    measurements: Measurements = field(default_factory=Measurements)
    tokens_per_doc: float = 200.0
    tokens_per_query: float = 16.0
    price_per_1m_tokens: float = 0.02
    zipf_s: float = 1.1
    hits_per_query: int = 10
    old_dim: int | None = None
    """Dimension of the old model's vectors; None: same as `dim`."""
    hnsw_m: int = 16
    doc_bytes: float | None = None
    """Text and metadata stored per document; None: 4 bytes per token plus 100 bytes of id and metadata."""
    storage_policy: StoragePolicy = StoragePolicy.KEEP_OLD
    backfill_rate_limit: float = 0.0
    """The backfill's configured docs/s limit (0: unlimited)."""
    batch_size: int = 64
    recall_curve: tuple[tuple[float, float], ...] = DEFAULT_RECALL_CURVE
    recall_curve_source: str = "assumed (proxy/bench/recall.py, calibrated merge)"
    traffic_target: float = 0.9
    """Report when this share of query traffic lands on documents B covers."""
    horizon_s: float = 365 * DAY_S
    deadline_s: float | None = None
    max_cost: float | None = None
    allow_downtime: bool = False
    """Whether the offline strategy's stale window (old answers for the whole build) is acceptable."""
    remote: RemoteEmbedding | None = None
    """The new model behind a remote API: its limits set the embedding rate (the report shows which binds)."""

    def __post_init__(self) -> None:
        _require(
            self.docs > 0 and self.dim > 0, f"docs and dim must be positive, got {self.docs}, {self.dim}"
        )
        for name in ("write_rate", "qps", "tokens_per_query", "price_per_1m_tokens", "backfill_rate_limit"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("latency_budget_ms", "tokens_per_doc", "zipf_s", "horizon_s"):
            _require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        _require(self.hits_per_query > 0 and self.batch_size > 0, "hits_per_query and batch_size must be > 0")
        _require(0 < self.traffic_target <= 1, f"traffic_target must be in (0, 1], got {self.traffic_target}")
        _check_curve(self.recall_curve)

    def baseline_recall(self) -> float:
        """Recall of today's answers (old index only) against a finished migration."""
        return recall_at(self.recall_curve, 0.0)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_curve(curve: Sequence[tuple[float, float]]) -> None:
    coverages = [c for c, _ in curve]
    _require(len(curve) >= 2, "recall curve needs at least two points")
    _require(coverages == sorted(coverages), "recall curve points must be sorted by coverage")
    _require(
        coverages[0] == 0.0 and coverages[-1] == 1.0, "recall curve must start at coverage 0 and end at 1"
    )
    _require(all(0 <= r <= 1 for _, r in curve), "recall values must be between 0 and 1")


def recall_at(curve: Sequence[tuple[float, float]], coverage: float) -> float:
    """Recall@10 at `coverage`, linear between the curve's points."""
    return float(np.interp(coverage, [c for c, _ in curve], [r for _, r in curve]))
