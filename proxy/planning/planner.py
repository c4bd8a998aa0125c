"""Migration planner: how long moving a corpus to a new embedding model takes, what it stores, costs and serves.

`plan(PlanInput)` estimates four strategies and recommends one. They differ in what happens before the
new index B takes all traffic:

- offline, "re-index all at once": build B from a snapshot at full speed, replay the writes made
  meanwhile, then switch. Queries stay on A: answers are the old model's for the whole build (the stale
  window), and nothing protects query latency if the build shares the serving machine.
- backfill, "progressive backfill": dual writes plus Switchyard's throttled backfill; queries stay on A
  until cut-over.
- lazy, "lazy re-embed on read only": dual writes; queries fan out to both indexes, and the documents they
  hit are re-embedded. Without a backfill the cold tail moves only when someone queries it, so the corpus
  may never be fully covered, and cut-over (which needs 100%) may never happen.
- parallel, "both models in parallel" (Switchyard's default): dual writes + backfill + lazy + fan-out/merge.

How the estimates are made (each one a stated assumption, not a measurement):

- Throughput. One backfill worker embeds a batch, inserts it, then reads the next one and checkpoints,
  so its speed is 1 / (1/embed + 1/insert + overhead/batch) unless the end-to-end `backfill_docs_per_s`
  was measured. Foreground work takes its share first: dual writes use embedder and index, fan-out
  queries use the embedder (a query costs tokens_per_query / tokens_per_doc of a document), and the
  worker gets what is left of the scarcer resource. The worker moves lazy documents (ahead of the slices)
  and slices within the same throttle and rate limit.
- Latency throttle. Queries wait behind background work like customers of a single queue: a query's p99
  grows as p99_idle / (1 - u) when the backfill works a share u of the time. The adaptive throttle
  therefore settles at a duty u = 1 - p99_idle / budget (never below its 1/64 floor). Real queries are
  hurt more than that (tails, caches, shared cores): the bench measures the backfill's docs/s beside
  query load under a budget of 1.2x the idle p99, over its docs/s with no load, and with that figure
  (`throttled_share`, `throttled_budget_ratio`) the share becomes 1 - (p99_idle / budget)^a, with a fitted
  to it (a = 1 is the single queue). With no query traffic the
  throttle has nothing to measure and never engages.
- Access skew. Query hits are independent draws from Zipf(s) over the corpus (hits_per_query per query).
  After n draws a document of access probability p has been hit with probability 1 - (1 - p)^n; summing
  that over log-binned ranks gives the expected corpus coverage and, weighted by p, the share of query
  traffic that lands on covered documents. Every document is assumed retrievable: one that no query
  ranks in its top k never moves lazily.
- Writes. Dual writes (or offline's replay) cost new-model throughput but are counted as new documents
  and updates of recent ones, so they do not shrink the backlog of old documents (the cautious reading).
- Quality. Recall@10 of the served answer against a finished migration follows a recall-vs-coverage curve
  (default: proxy/bench/recall.py's calibrated merge; the value at 0 is today's old-model answer). Lazy
  coverage is concentrated on the documents queries hit, so the curve is read at the *traffic* coverage.
- Storage. One copy of an index holds per document a float32 vector, hnswlib's level-0 links (2*M
  neighbours of 4 bytes) and the text and metadata beside it. keep_old holds A whole until the end;
  retire_as_you_go drops a document from A once B holds it, which only works when queries fan out (A is
  still needed for the uncovered rest) and needs index compaction to give the bytes back.

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

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from proxy.migration.retirement import StoragePolicy
from proxy.migration.throttle import AdaptiveThrottle

DAY_S = 86_400.0
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

_MAX_STEPS = 20_000
_TIMELINE_POINTS = 400


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


# -- inputs -------------------------------------------------------------------------------------------


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


def recall_at(curve: Sequence[tuple[float, float]], coverage: float | np.ndarray) -> Any:
    return np.interp(coverage, [c for c, _ in curve], [r for _, r in curve])


# -- storage ------------------------------------------------------------------------------------------


def bytes_per_doc(dim: int, hnsw_m: int, doc_bytes: float) -> float:
    # float32 vector + hnswlib's level-0 links (2*M neighbour ids of 4 bytes) + the row beside it.
    return dim * 4 + hnsw_m * 2 * 4 + doc_bytes


def index_bytes(inp: PlanInput, old: bool) -> float:
    """Bytes of one full copy of the old (A) or new (B) index."""
    doc = inp.doc_bytes if inp.doc_bytes is not None else 4 * inp.tokens_per_doc + 100
    dim = (inp.old_dim or inp.dim) if old else inp.dim
    return inp.docs * bytes_per_doc(dim, inp.hnsw_m, doc)


def storage_at(inp: PlanInput, coverage: float | np.ndarray, retire_as_you_go: bool) -> Any:
    """Bytes of A and B together when B covers `coverage` of the corpus."""
    old_share = 1 - coverage if retire_as_you_go else 1.0
    return index_bytes(inp, old=True) * old_share + index_bytes(inp, old=False) * coverage


def cost_of(tokens: float, price_per_1m_tokens: float) -> float:
    return tokens * price_per_1m_tokens / 1e6


# -- Zipf access --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipfBins:
    """Ranks 1..N in log-spaced bins: every document of a bin gets the bin's mean access probability."""

    counts: np.ndarray
    p: np.ndarray

    @property
    def docs(self) -> float:
        return float(self.counts.sum())


def zipf_bins(docs: int, s: float, max_bins: int = 2000) -> ZipfBins:
    # Small ranks get a bin each (they carry most traffic); a 50M corpus costs 2,000 bins, not 50M.
    edges = np.unique(np.round(np.geomspace(1, docs + 1, max_bins + 1)).astype(np.int64))
    lo, hi = edges[:-1].astype(float), edges[1:].astype(float)
    counts = hi - lo
    # Midpoint-rule integral of x^-s over a wide bin; exact for single-rank bins.
    mass = np.where(counts == 1, lo**-s, _power_integral(lo - 0.5, hi - 0.5, s))
    return ZipfBins(counts, mass / counts / mass.sum())


def _power_integral(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    if s == 1.0:
        return np.log(b / a)
    return (b ** (1 - s) - a ** (1 - s)) / (1 - s)


def touched_share(bins: ZipfBins, draws: float) -> np.ndarray:
    """Probability that a document of each bin was hit at least once in `draws` independent draws."""
    return -np.expm1(draws * np.log1p(-bins.p))


def lazy_coverage(bins: ZipfBins, draws: float) -> tuple[float, float]:
    """(corpus coverage, traffic coverage) after `draws` hits when only touched documents move."""
    touched = touched_share(bins, draws)
    return float((bins.counts * touched).sum() / bins.docs), float((bins.counts * bins.p * touched).sum())


# -- simulation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Regime:
    backfill: bool
    lazy: bool
    fanout: bool
    """Queries fan out to both indexes, so covered documents are served from B before cut-over."""
    throttled: bool
    """Runs beside live queries: the latency budget limits the worker (backfill and lazy moves)."""


_REGIMES: Mapping[Strategy, _Regime] = {
    Strategy.OFFLINE: _Regime(backfill=True, lazy=False, fanout=False, throttled=False),
    Strategy.BACKFILL: _Regime(backfill=True, lazy=False, fanout=False, throttled=True),
    Strategy.LAZY: _Regime(backfill=False, lazy=True, fanout=True, throttled=True),
    Strategy.PARALLEL: _Regime(backfill=True, lazy=True, fanout=True, throttled=True),
}


@dataclass(frozen=True)
class _Load:
    """Docs/s each resource can do, and what foreground work takes of it before any re-embedding."""

    embed: float
    insert: float
    pipeline: float
    writes: float
    query_embeds: float
    """Fan-out queries embedded with the new model, in document equivalents per second."""
    throttle_share: float
    rate_limit: float

    def left_share(self) -> float:
        """Share of embedder and index that foreground work leaves; the scarcer of the two decides."""
        embed_left = 1 - (self.writes + self.query_embeds) / self.embed
        insert_left = 1 - self.writes / self.insert
        return max(0.0, min(embed_left, insert_left))

    def worker_rate(self) -> float:
        """Docs/s the re-embedding worker can do in what foreground work leaves."""
        return self.pipeline * self.left_share()

    def throttled_rate(self) -> float:
        """Docs/s the worker may move (lazy and slices together) under the throttle and the rate limit."""
        rate = min(self.worker_rate(), self.pipeline * self.throttle_share)
        return min(rate, self.rate_limit) if self.rate_limit > 0 else rate

    def backfill_rate(self, lazy_docs_per_s: float = 0.0) -> float:
        # Lazy and slice work share one worker and one throttle: lazy goes first, the slices get the rest.
        return max(0.0, self.throttled_rate() - lazy_docs_per_s)


def throttle_share(p99_idle_ms: float, budget_ms: float, qps: float, exponent: float = 1.0) -> float:
    """Share of its unloaded speed the adaptive throttle leaves the backfill (see the module docstring)."""
    if qps <= 0:
        return 1.0  # no queries: the latency window never fills and the throttle never engages
    return min(1.0, max(THROTTLE_FLOOR, 1 - (p99_idle_ms / budget_ms) ** exponent))


def serving_p99_ms(inp: PlanInput, strategy: Strategy) -> float:
    m = inp.measurements
    return m.dual_p99() if _REGIMES[strategy].fanout else m.query_p99_ms


def _load(inp: PlanInput, strategy: Strategy) -> _Load:
    regime, m = _REGIMES[strategy], inp.measurements
    share = 1.0
    if regime.throttled:
        share = throttle_share(
            serving_p99_ms(inp, strategy), inp.latency_budget_ms, inp.qps, m.throttle_exponent()
        )
    query_embeds = inp.qps * inp.tokens_per_query / inp.tokens_per_doc if regime.fanout else 0.0
    # Offline runs as fast as it can: the rate limit is the live backfill's setting.
    limit = inp.backfill_rate_limit if regime.throttled else 0.0
    return _Load(
        m.embed_docs_per_s,
        m.index_insert_docs_per_s,
        m.pipeline_docs_per_s(inp.batch_size),
        inp.write_rate,
        query_embeds,
        share,
        limit,
    )


@dataclass
class _State:
    """What the simulation tracks; all uncovered documents lie in the part the backfill has not scanned."""

    uncovered: np.ndarray
    """Share of each Zipf bin that B does not hold yet."""
    scanned: float = 0.0
    t: float = 0.0
    reembeds: float = 0.0
    """Old documents embedded with the new model (backfill and lazy)."""
    write_embeds: float = 0.0
    query_embeds: float = 0.0
    lazy_embeds: float = 0.0
    finished_at: float | None = None


@dataclass(frozen=True)
class _Run:
    times: np.ndarray
    corpus: np.ndarray
    traffic: np.ndarray
    """Share of query traffic landing on documents B holds (served from B only if queries fan out)."""
    finished_at: float | None
    reembeds: float
    write_embeds: float
    query_embeds: float
    lazy_embeds: float
    initial_backfill_rate: float


def simulate(inp: PlanInput, strategy: Strategy, bins: ZipfBins) -> _Run:
    regime, load = _REGIMES[strategy], _load(inp, strategy)
    state = _State(np.ones_like(bins.p))
    samples = [(0.0, 0.0, 0.0)]
    for dt in _time_steps(inp, regime, load):
        _step(state, dt, inp, regime, load, bins)
        samples.append((state.t, *_coverage(state, bins)))
        if state.finished_at is not None or state.t >= inp.horizon_s:
            break
    times, corpus, traffic = (np.array(column) for column in zip(*samples, strict=True))
    return _Run(
        times,
        corpus,
        traffic,
        state.finished_at,
        state.reembeds,
        state.write_embeds,
        state.query_embeds,
        state.lazy_embeds,
        load.backfill_rate() if regime.backfill else 0.0,
    )


def _time_steps(inp: PlanInput, regime: _Regime, load: _Load) -> list[float]:
    """Fine steps early (lazy coverage moves in seconds), even steps over the expected run, then more."""
    rate = load.backfill_rate() if regime.backfill else 0.0
    expected = min(inp.horizon_s, inp.docs / rate) if rate > 0 else inp.horizon_s
    marks = np.unique(
        np.concatenate([[0.0], np.geomspace(0.01, expected, 300), np.linspace(0, expected, 400)])
    )
    steps = list(np.diff(marks))
    # A run slower than expected (lazy work taking the backfill's share) continues in even steps.
    tail = max(expected / 400, inp.horizon_s / _MAX_STEPS)
    steps += [tail] * math.ceil((inp.horizon_s - expected) / tail)
    return steps[:_MAX_STEPS]


def _step(state: _State, dt: float, inp: PlanInput, regime: _Regime, load: _Load, bins: ZipfBins) -> None:
    lazy_docs = _lazy_step(state, dt, inp, load, bins) if regime.lazy else 0.0
    state.write_embeds += inp.write_rate * dt
    if regime.fanout:
        state.query_embeds += inp.qps * dt
    if regime.backfill:
        _backfill_step(state, dt, load.backfill_rate(lazy_docs / dt) * dt, bins)
    elif (state.uncovered * bins.counts).sum() < 0.5:
        state.finished_at = state.t + dt  # fewer than half a document left: covered, on average
    state.t += dt


def _lazy_step(state: _State, dt: float, inp: PlanInput, load: _Load, bins: ZipfBins) -> float:
    """Re-embeds the uncovered documents queries hit in `dt`, as far as capacity allows; returns how many."""
    touched = touched_share(bins, inp.qps * inp.hits_per_query * dt)
    demand = float((bins.counts * state.uncovered * touched).sum())
    done = min(demand, load.throttled_rate() * dt)
    if demand > 0:
        # What capacity could not take stays queued; a hot document is hit again soon anyway.
        state.uncovered *= 1 - (done / demand) * touched
    state.reembeds += done
    state.lazy_embeds += done
    return done


def _backfill_step(state: _State, dt: float, budget_docs: float, bins: ZipfBins) -> None:
    region = bins.docs - state.scanned
    uncovered = float((bins.counts * state.uncovered).sum())
    # The backfill skips documents B already holds; only the uncovered ones cost an embedding.
    density = max(uncovered / region, 1e-3) if region > 0 else 1.0
    scan = budget_docs / density
    if scan >= region:
        state.finished_at = state.t + dt * (region / scan if scan > 0 else 1.0)
        scan = region
    share = scan / region if region > 0 else 1.0
    state.reembeds += share * uncovered
    state.uncovered *= 1 - share
    state.scanned += scan


def _coverage(state: _State, bins: ZipfBins) -> tuple[float, float]:
    if state.finished_at is not None:
        return 1.0, 1.0
    covered = 1 - state.uncovered
    return float((bins.counts * covered).sum() / bins.docs), float((bins.counts * bins.p * covered).sum())


# -- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelinePoint:
    t_s: float
    corpus_coverage: float
    traffic_coverage: float
    """Share of query traffic answered from documents the new model covers."""
    recall: float
    storage_bytes: float


@dataclass(frozen=True)
class StrategyPlan:
    strategy: Strategy
    full_coverage_s: float | None
    """None: not within the horizon."""
    traffic_target_s: float | None
    backfill_docs_per_s: float
    """The backfill's rate at the start, after writes, fan-out queries, the throttle and the rate limit."""
    throttle_share: float
    peak_storage_bytes: float
    peak_storage_ratio: float
    """Peak storage over one copy of today's index."""
    reembedded_docs: float
    """Existing documents embedded with the new model (backfill and lazy)."""
    dual_write_docs: float
    """Writes embedded with the new model during the migration (offline: replayed)."""
    query_embeds: float
    """Fanned-out queries embedded with the new model before cut-over."""
    embed_calls: float
    tokens: float
    """All new-model tokens until full coverage (or the horizon): re-embeds, dual writes, fan-out queries."""
    cost: float
    mean_recall: float
    """Time-averaged recall@10 over the comparison window (after cut-over: the curve at full coverage)."""
    min_recall: float
    serving_p99_ms: float
    latency_ok: bool
    notes: tuple[str, ...]
    timeline: tuple[TimelinePoint, ...]

    @property
    def title(self) -> str:
        return TITLES[self.strategy]


@dataclass(frozen=True)
class Plan:
    input: PlanInput
    strategies: tuple[StrategyPlan, ...]
    recommended: Strategy
    reason: str
    window_s: float
    """The common window over which mean recall is compared."""
    one_copy_bytes: float

    def get(self, strategy: Strategy) -> StrategyPlan:
        return next(s for s in self.strategies if s.strategy is strategy)


def plan(inp: PlanInput) -> Plan:
    bins = zipf_bins(inp.docs, inp.zipf_s)
    runs = {strategy: simulate(inp, strategy, bins) for strategy in Strategy}
    # Compare quality over the time the strategies that set out to finish need; lazy-only may take a year.
    finishes = [r.finished_at for s, r in runs.items() if _REGIMES[s].backfill and r.finished_at is not None]
    window = max(finishes) if finishes else inp.horizon_s
    strategies = tuple(_summarize(inp, strategy, run, window) for strategy, run in runs.items())
    recommended, reason = recommend(strategies, inp, window)
    return Plan(inp, strategies, recommended, reason, window, index_bytes(inp, old=True))


def _summarize(inp: PlanInput, strategy: Strategy, run: _Run, window: float) -> StrategyPlan:
    timeline = _timeline(inp, strategy, run)
    load = _load(inp, strategy)
    doc_embeds = run.reembeds + run.write_embeds
    tokens = doc_embeds * inp.tokens_per_doc + run.query_embeds * inp.tokens_per_query
    peak = max(p.storage_bytes for p in timeline)
    p99 = serving_p99_ms(inp, strategy)
    return StrategyPlan(
        strategy=strategy,
        full_coverage_s=run.finished_at,
        traffic_target_s=_first_time_at(timeline, inp.traffic_target),
        backfill_docs_per_s=run.initial_backfill_rate,
        throttle_share=load.throttle_share,
        peak_storage_bytes=peak,
        peak_storage_ratio=peak / index_bytes(inp, old=True),
        reembedded_docs=run.reembeds,
        dual_write_docs=run.write_embeds,
        query_embeds=run.query_embeds,
        embed_calls=_embed_calls(inp, run),
        tokens=tokens,
        cost=cost_of(tokens, inp.price_per_1m_tokens),
        mean_recall=time_averaged_recall(timeline, window),
        min_recall=min(p.recall for p in timeline),
        serving_p99_ms=p99,
        latency_ok=p99 <= inp.latency_budget_ms,
        notes=_notes(inp, strategy, run, load),
        timeline=timeline,
    )


def _timeline(inp: PlanInput, strategy: Strategy, run: _Run) -> tuple[TimelinePoint, ...]:
    regime = _REGIMES[strategy]
    retire = inp.storage_policy is StoragePolicy.RETIRE_AS_YOU_GO and regime.fanout
    # Without fan-out, queries stay on A until cut-over: served coverage is 0 until the switch.
    served = run.traffic if regime.fanout else np.zeros_like(run.traffic)
    keep = _thin(len(run.times))
    points = [
        TimelinePoint(
            float(run.times[i]),
            float(run.corpus[i]),
            float(served[i]),
            float(recall_at(inp.recall_curve, served[i])),
            float(storage_at(inp, run.corpus[i], retire)),
        )
        for i in keep
    ]
    if run.finished_at is not None:
        # Cut-over: B holds everything and takes all traffic (a measured curve may end below 1: ANN misses).
        full = float(recall_at(inp.recall_curve, 1.0))
        done = TimelinePoint(run.finished_at, 1.0, 1.0, full, float(storage_at(inp, 1.0, retire)))
        points = [p for p in points if p.t_s < run.finished_at]
        if not regime.fanout:
            points.append(TimelinePoint(run.finished_at, 1.0, 0.0, inp.baseline_recall(), done.storage_bytes))
        points.append(done)
    return tuple(points)


def _thin(count: int) -> list[int]:
    """Indices of at most _TIMELINE_POINTS samples, always keeping the first and the last."""
    if count <= _TIMELINE_POINTS:
        return list(range(count))
    return sorted({*np.linspace(0, count - 1, _TIMELINE_POINTS).round().astype(int).tolist(), count - 1})


def _first_time_at(timeline: Sequence[TimelinePoint], level: float) -> float | None:
    previous = timeline[0]
    for point in timeline:
        if point.traffic_coverage >= level - 1e-12:
            if point.traffic_coverage == previous.traffic_coverage or point.t_s == previous.t_s:
                return point.t_s
            # Linear between samples: the grid is coarse late in a long run.
            share = (level - previous.traffic_coverage) / (point.traffic_coverage - previous.traffic_coverage)
            return previous.t_s + max(0.0, share) * (point.t_s - previous.t_s)
        previous = point
    return None


def time_averaged_recall(timeline: Sequence[TimelinePoint], window_s: float) -> float:
    """Mean recall over [0, window_s]; past the timeline's end the last recall holds."""
    if window_s <= 0:
        return timeline[0].recall
    t = np.array([p.t_s for p in timeline] + [max(window_s, timeline[-1].t_s)])
    r = np.array([p.recall for p in timeline] + [timeline[-1].recall])
    clipped = np.minimum(t, window_s)
    return float(np.sum(np.diff(clipped) * (r[1:] + r[:-1]) / 2) / window_s)


def _notes(inp: PlanInput, strategy: Strategy, run: _Run, load: _Load) -> tuple[str, ...]:
    regime = _REGIMES[strategy]
    notes = []
    if load.worker_rate() <= 0:
        notes.append(
            "writes (and fan-out query embeddings) alone use up the new model's throughput: no progress"
        )
    if strategy is Strategy.OFFLINE:
        if run.finished_at is not None:
            window = format_duration(run.finished_at)
            notes.append(f"stale window {window}: answers stay on the old model while B is built")
        notes.append("writes made during the build are replayed into B before the switch")
        notes.append(
            "the build runs at full speed: nothing keeps query p99 in budget if it shares the machine"
        )
    if regime.backfill and regime.throttled and load.throttle_share < 1:
        notes.append(
            f"the throttle leaves the backfill {load.throttle_share:.0%} of its unloaded speed to keep p99 "
            f"({serving_p99_ms(inp, strategy):.1f} ms idle) under {inp.latency_budget_ms:g} ms"
        )
    if regime.lazy:
        notes.append(f"lazy re-embeds: {run.lazy_embeds:,.0f} documents moved because queries hit them")
    notes.append(_tokens_note(inp, run))
    if strategy is Strategy.LAZY:
        notes.append(_lazy_note(inp, run))
    if inp.storage_policy is StoragePolicy.RETIRE_AS_YOU_GO:
        notes.append(
            "retire_as_you_go frees A's copy of a document once B holds it (after index compaction)"
            if regime.fanout
            else "retire_as_you_go does not apply: A answers every query until cut-over"
        )
    if serving_p99_ms(inp, strategy) > inp.latency_budget_ms:
        notes.append(
            f"serving p99 {serving_p99_ms(inp, strategy):.1f} ms is over the budget before any backfill"
        )
    return tuple(notes)


def _embed_calls(inp: PlanInput, run: _Run) -> float:
    # Documents go out in batches; each fanned-out query is a call of its own.
    return (run.reembeds + run.write_embeds) / inp.batch_size + run.query_embeds


def _tokens_note(inp: PlanInput, run: _Run) -> str:
    parts = [
        (run.reembeds * inp.tokens_per_doc, "re-embedding the corpus"),
        (run.write_embeds * inp.tokens_per_doc, "dual writes"),
        (run.query_embeds * inp.tokens_per_query, "fan-out queries"),
    ]
    spent = ", ".join(f"{_format_count(t)} {what}" for t, what in parts if t > 0)
    return f"{_format_count(_embed_calls(inp, run))} embedding calls; tokens: {spent}"


def _lazy_note(inp: PlanInput, run: _Run) -> str:
    if run.finished_at is not None:
        return (
            f"the cold tail is covered only after {format_duration(run.finished_at)}, when queries reach it "
            "(a document no query ranks in its top k would never move)"
        )
    return (
        f"never reaches full coverage within {format_duration(inp.horizon_s)}: "
        f"{run.corpus[-1]:.1%} of the corpus, {run.traffic[-1]:.2%} of traffic; cut-over needs 100%, "
        "so A is never retired"
    )


# -- recommendation -----------------------------------------------------------------------------------


def violations(sp: StrategyPlan, inp: PlanInput) -> list[str]:
    """The constraints a strategy breaks, in words."""
    found = []
    if sp.full_coverage_s is None:
        found.append("never reaches full coverage, so the old index can never be retired")
    elif inp.deadline_s is not None and sp.full_coverage_s > inp.deadline_s:
        found.append(f"misses the {format_duration(inp.deadline_s)} deadline")
    if inp.max_cost is not None and sp.cost > inp.max_cost:
        found.append(f"costs ${sp.cost:,.2f}, over the ${inp.max_cost:,.2f} budget")
    if not sp.latency_ok:
        found.append(f"has p99 {sp.serving_p99_ms:.1f} ms, over the {inp.latency_budget_ms:g} ms budget")
    if sp.strategy is Strategy.OFFLINE and not inp.allow_downtime:
        found.append(
            f"serves stale answers for {format_duration(sp.full_coverage_s)} (allow with --allow-downtime)"
        )
    if sp.min_recall < inp.baseline_recall() - 1e-9:
        found.append("answers worse than today's during the migration")
    return found


def recommend(strategies: Sequence[StrategyPlan], inp: PlanInput, window_s: float) -> tuple[Strategy, str]:
    broken = {sp.strategy: violations(sp, inp) for sp in strategies}
    feasible = [sp for sp in strategies if not broken[sp.strategy]]
    if not feasible:
        closest = min(strategies, key=lambda sp: (len(broken[sp.strategy]), sp.full_coverage_s or math.inf))
        return closest.strategy, (
            f"no strategy meets every constraint; {closest.title} comes closest: it "
            + "; ".join(broken[closest.strategy])
        )
    # Best answers while it runs wins; a cheaper or faster one breaks ties.
    best = max(feasible, key=lambda sp: (round(sp.mean_recall, 3), -sp.cost, -(sp.full_coverage_s or 0)))
    rivals = sorted((sp for sp in feasible if sp is not best), key=lambda sp: -sp.mean_recall)
    versus = f" vs {rivals[0].mean_recall:.3f} for {rivals[0].title}" if rivals else ""
    ruled_out = "; ".join(f"{TITLES[s]} {found[0]}" for s, found in broken.items() if found)
    return best.strategy, (
        f"it meets every constraint and serves the best answers while it runs (time-averaged "
        f"recall@10 {best.mean_recall:.3f}{versus} over the first {format_duration(window_s)}), reaching "
        f"full coverage in {format_duration(best.full_coverage_s)} for ${best.cost:,.2f}"
        + (f"; ruled out: {ruled_out}" if ruled_out else "")
    )


# -- presentation -------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", DAY_S), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size * (2 if unit == "d" else 1):
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def format_bytes(count: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def _format_count(count: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count:.0f}"


def format_plan(result: Plan) -> str:
    return "\n".join(
        [*_header(result), "", *_inputs(result.input), "", *_table(result), "", *_footer(result)]
    )


def _header(result: Plan) -> list[str]:
    inp = result.input
    return [
        f"Migration plan: {inp.docs:,} docs, {inp.dim}-d, {inp.write_rate:g} writes/s, {inp.qps:g} qps, "
        f"p99 budget {inp.latency_budget_ms:g} ms, storage policy {inp.storage_policy.value}",
        f"One copy of today's index: {format_bytes(result.one_copy_bytes)} "
        f"({result.one_copy_bytes / inp.docs:,.0f} bytes per document)",
    ]


def _inputs(inp: PlanInput) -> list[str]:
    m = inp.measurements
    pipeline_source = (
        m.source_of("backfill_docs_per_s")
        if m.backfill_docs_per_s
        else f"derived: embed + insert + overhead, batches of {inp.batch_size}"
    )
    overhead_source = (
        "not used: backfill measured end to end"
        if m.backfill_docs_per_s
        else m.source_of("batch_overhead_ms")
    )
    dual_source = m.source_of("dual_p99_ms") if m.dual_p99_ms else "derived: dual p50 x single p99/p50"
    curve = " ".join(f"{c:.0%}:{r:.2f}" for c, r in inp.recall_curve)
    rows = [
        ("new-model embedding", f"{m.embed_docs_per_s:,.0f} docs/s", m.source_of("embed_docs_per_s")),
        ("index insert", f"{m.index_insert_docs_per_s:,.0f} docs/s", m.source_of("index_insert_docs_per_s")),
        ("batch overhead", f"{m.batch_overhead_ms:g} ms", overhead_source),
        ("backfill pipeline", f"{m.pipeline_docs_per_s(inp.batch_size):,.0f} docs/s", pipeline_source),
        ("query p50 / p99", f"{m.query_p50_ms:g} / {m.query_p99_ms:g} ms", _pair_source(m, "query")),
        ("dual p50", f"{m.dual_p50_ms:g} ms", m.source_of("dual_p50_ms")),
        ("dual p99", f"{m.dual_p99():.1f} ms", dual_source),
        ("latency throttle", *_throttle_input(m)),
        ("recall@10 by coverage", curve, inp.recall_curve_source),
        ("access skew", f"Zipf s={inp.zipf_s:g}, {inp.hits_per_query} hits/query", "given"),
        ("tokens", f"{inp.tokens_per_doc:g}/doc, {inp.tokens_per_query:g}/query", "given"),
    ]
    return ["Inputs (measured = from a benchmark, given = on the command line, assumed = default):"] + [
        f"  {name:<22} {value:<46} {source}" for name, value, source in rows
    ]


def _throttle_input(m: Measurements) -> tuple[str, str]:
    a = m.throttle_exponent()
    exponent = f"share = 1 - (p99 idle / budget)^{a:.2f}"
    if a == 1.0:
        return exponent, "assumed (a single queue)"
    measured = f"{m.throttled_share:.1%} at {m.throttled_budget_ratio:g}x"
    return f"{exponent} ({measured})", f"fitted to {m.source_of('throttled_share')}"


def _pair_source(m: Measurements, prefix: str) -> str:
    sources = {m.source_of(f"{prefix}_p50_ms"), m.source_of(f"{prefix}_p99_ms")}
    return sources.pop() if len(sources) == 1 else " / ".join(sorted(sources))


_COLUMNS = (
    ("strategy", 25),
    ("full coverage", 13),
    ("traffic", 9),
    ("backfill/s", 10),
    ("peak storage", 20),
    ("tokens", 9),
    ("cost", 10),
    ("recall mean/min", 15),
    ("p99 ms", 7),
)


def _table(result: Plan) -> list[str]:
    target = f"{result.input.traffic_target:.0%} traffic"
    names = [target if name == "traffic" else name for name, _ in _COLUMNS]
    widths = [max(width, len(name)) for name, (_, width) in zip(names, _COLUMNS, strict=True)]
    lines = [_row(names, widths), _row(["-" * w for w in widths], widths)]
    for sp in result.strategies:
        mark = " *" if sp.strategy is result.recommended else ""
        cells = [
            sp.title + mark,
            format_duration(sp.full_coverage_s),
            format_duration(sp.traffic_target_s),
            f"{sp.backfill_docs_per_s:,.0f}" if _REGIMES[sp.strategy].backfill else "-",
            f"{format_bytes(sp.peak_storage_bytes)} ({sp.peak_storage_ratio:.2f}x)",
            _format_count(sp.tokens),
            f"${sp.cost:,.2f}",
            f"{sp.mean_recall:.3f}/{sp.min_recall:.3f}",
            f"{sp.serving_p99_ms:.1f}" + ("" if sp.latency_ok else "!"),
        ]
        lines.append(_row(cells, widths))
    return lines


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return f"{first:<{widths[0]}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(rest, widths[1:], strict=True))


def _footer(result: Plan) -> list[str]:
    lines = [
        f"traffic: time until {result.input.traffic_target:.0%} of query traffic is answered from documents "
        "the new model covers; recall: time-averaged over the first "
        f"{format_duration(result.window_s)} (after cut-over: the curve at 100%); ! = over the latency budget",
        "",
        "Notes:",
    ]
    for sp in result.strategies:
        lines += [f"  {sp.title}: {note}" for note in sp.notes]
    title = TITLES[result.recommended]
    return [*lines, "", f"Recommended: {title}. Why: {result.reason}."]


def plan_to_json(result: Plan) -> dict[str, Any]:
    data = asdict(result)
    data["input"]["measurements"]["provenance"] = dict(result.input.measurements.provenance)
    data["input"]["pipeline_docs_per_s"] = result.input.measurements.pipeline_docs_per_s(
        result.input.batch_size
    )
    return json.loads(json.dumps(data, default=str))


# -- command line edge: files and the plot --------------------------------------------------------------


def measurements_from_bench(raw: Mapping[str, Any], source: str) -> Measurements:
    """Measurements from a bench JSON object; missing keys keep the assumed defaults."""
    values = {k: float(raw[k]) for k in BENCH_KEYS if raw.get(k) is not None}
    return Measurements(**values, provenance={k: f"measured ({source})" for k in values})


def curve_from_bench(raw: Mapping[str, Any]) -> tuple[tuple[float, float], ...] | None:
    curve = raw.get("recall_curve")
    return tuple((float(c), float(r)) for c, r in curve) if curve else None


def parse_curve(text: str) -> tuple[tuple[float, float], ...]:
    """'0:0.66,0.5:0.78,1:1' -> ((0.0, 0.66), (0.5, 0.78), (1.0, 1.0))."""
    try:
        return tuple((float(c), float(r)) for c, r in (pair.split(":") for pair in text.split(",")))
    except ValueError as exc:
        raise ValueError(f"--recall-curve wants coverage:recall pairs like 0:0.66,1:1, got {text!r}") from exc


def input_from_args(args: argparse.Namespace) -> PlanInput:
    measurements, curve, curve_source = Measurements(), DEFAULT_RECALL_CURVE, PlanInput.recall_curve_source
    if args.from_bench:
        raw = json.loads(Path(args.from_bench).read_text())
        measurements = measurements_from_bench(raw, Path(args.from_bench).name)
        if curve_from_bench(raw):
            curve, curve_source = curve_from_bench(raw), f"measured ({Path(args.from_bench).name})"  # type: ignore[assignment]
    if args.embed_rate:
        measurements = _with(measurements, "embed_docs_per_s", args.embed_rate, "given (--embed-rate)")
    if args.insert_rate:
        measurements = _with(
            measurements, "index_insert_docs_per_s", args.insert_rate, "given (--insert-rate)"
        )
    if args.recall_curve:
        curve, curve_source = parse_curve(args.recall_curve), "given (--recall-curve)"
    return PlanInput(
        docs=args.docs,
        dim=args.dim,
        write_rate=args.write_rate,
        qps=args.qps,
        latency_budget_ms=args.latency_budget_ms,
        measurements=measurements,
        tokens_per_doc=args.tokens_per_doc,
        tokens_per_query=args.tokens_per_query,
        price_per_1m_tokens=args.price_per_1m_tokens,
        zipf_s=args.zipf,
        hits_per_query=args.hits_per_query,
        old_dim=args.old_dim,
        storage_policy=StoragePolicy(args.storage_policy),
        backfill_rate_limit=args.backfill_rate_limit,
        recall_curve=curve,
        recall_curve_source=curve_source,
        traffic_target=args.traffic_target / 100,
        horizon_s=args.horizon_days * DAY_S,
        deadline_s=args.deadline_days * DAY_S if args.deadline_days else None,
        max_cost=args.max_cost,
        allow_downtime=args.allow_downtime,
    )


def _with(m: Measurements, name: str, value: float, source: str) -> Measurements:
    values = {f.name: getattr(m, f.name) for f in fields(m)}
    values.update({name: value, "provenance": {**m.provenance, name: source}})
    return Measurements(**values)


def run_plan_command(args: argparse.Namespace) -> int:
    try:
        inp = input_from_args(args)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"switchyard plan: {exc}", file=sys.stderr)
        return 2
    result = plan(inp)
    print(format_plan(result))
    if args.json:
        Path(args.json).write_text(json.dumps(plan_to_json(result), indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.plot:
        try:
            write_plot(result, Path(args.plot))
        except ModuleNotFoundError:
            print(
                "switchyard plan: --plot needs matplotlib; install the extra: pip install 'switchyard[plot]'",
                file=sys.stderr,
            )
            return 2
        print(f"wrote {args.plot}")
    return 0


_COLORS: Mapping[Strategy, str] = {
    Strategy.OFFLINE: "#7f7f7f",
    Strategy.BACKFILL: "#1f77b4",
    Strategy.LAZY: "#ff7f0e",
    Strategy.PARALLEL: "#2ca02c",
}


def write_plot(result: Plan, path: Path) -> None:
    """Coverage of corpus and traffic, recall and storage over time; the recommended strategy solid."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; must precede pyplot
    import matplotlib.pyplot as plt

    horizon = result.window_s * 1.15
    unit, scale = _time_unit(horizon)
    panels = (
        ("corpus coverage", lambda p: p.corpus_coverage * 100, "% of documents in B"),
        ("query traffic served from covered docs", lambda p: p.traffic_coverage * 100, "% of query hits"),
        ("recall@10 of served answers", lambda p: p.recall, "recall@10"),
        ("storage, A + B", lambda p: p.storage_bytes / 1e9, "GB"),
    )
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5), sharex=True)
    for axis, (title, value, label) in zip(axes.flat, panels, strict=True):
        for sp in result.strategies:
            _plot_strategy(axis, sp, value, horizon, scale, sp.strategy is result.recommended)
        axis.set_title(title)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.set_xlim(0, horizon / scale)
    for axis in axes[1]:
        axis.set_xlabel(f"time since start ({unit})")
    axes[0][0].legend(loc="lower right", fontsize=9)
    _mark_traffic_target(axes[0][1], result, horizon, scale)
    inp = result.input
    figure.suptitle(
        f"{inp.docs:,} docs, {inp.dim}-d, {inp.write_rate:g} writes/s, {inp.qps:g} qps, "
        f"{inp.storage_policy.value} - recommended: {TITLES[result.recommended]} (solid)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _mark_traffic_target(axis: Any, result: Plan, horizon: float, scale: float) -> None:
    """Points at when the recommended strategy serves the target share of traffic: the early rise is steep."""
    chosen, target = result.get(result.recommended), result.input.traffic_target
    if chosen.traffic_target_s is None or chosen.traffic_target_s > horizon:
        return
    axis.annotate(
        f"{target:.0%} of traffic after {format_duration(chosen.traffic_target_s)}",
        xy=(chosen.traffic_target_s / scale, target * 100),
        xytext=(horizon * 0.3 / scale, 45),
        arrowprops={"arrowstyle": "->", "color": _COLORS[result.recommended]},
        color=_COLORS[result.recommended],
    )


def _plot_strategy(
    axis: Any, sp: StrategyPlan, value: Any, horizon: float, scale: float, chosen: bool
) -> None:
    # One point past the edge keeps a long run's line going to the axis (xlim clips it).
    beyond = [p for p in sp.timeline if p.t_s > horizon][:1]
    points = [p for p in sp.timeline if p.t_s <= horizon] + beyond
    last = sp.timeline[-1]
    if last.t_s < horizon:
        points.append(TimelinePoint(horizon, *(getattr(last, f) for f in _VALUE_FIELDS)))  # type: ignore[arg-type]
    label = sp.title + (" (recommended)" if chosen else "")
    axis.plot(
        [p.t_s / scale for p in points],
        [value(p) for p in points],
        color=_COLORS[sp.strategy],
        linestyle="-" if chosen else "--",
        linewidth=2.6 if chosen else 1.4,
        label=label,
    )


_VALUE_FIELDS = ("corpus_coverage", "traffic_coverage", "recall", "storage_bytes")


def _time_unit(horizon_s: float) -> tuple[str, float]:
    if horizon_s >= 3 * DAY_S:
        return "days", DAY_S
    if horizon_s >= 3 * 3600:
        return "hours", 3600.0
    return ("minutes", 60.0) if horizon_s >= 180 else ("seconds", 1.0)
