"""The planner's model of a migration: storage, Zipf-distributed query hits, throughput shares, the throttle.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from proxy.planning.inputs import THROTTLE_FLOOR, PlanInput, Strategy

# -- storage ------------------------------------------------------------------------------------------


def bytes_per_doc(dim: int, hnsw_m: int, doc_bytes: float) -> float:
    # float32 vector + hnswlib's level-0 links (2*M neighbour ids of 4 bytes) + the row beside it.
    return dim * 4 + hnsw_m * 2 * 4 + doc_bytes


def index_bytes(inp: PlanInput, old: bool) -> float:
    """Bytes of one full copy of the old (A) or new (B) index."""
    doc = inp.doc_bytes if inp.doc_bytes is not None else 4 * inp.tokens_per_doc + 100
    dim = (inp.old_dim or inp.dim) if old else inp.dim
    return inp.docs * bytes_per_doc(dim, inp.hnsw_m, doc)


def storage_at(inp: PlanInput, coverage: float, retire_as_you_go: bool) -> float:
    """Bytes of A and B together when B covers `coverage` of the corpus."""
    old_share = 1 - coverage if retire_as_you_go else 1.0
    return float(index_bytes(inp, old=True) * old_share + index_bytes(inp, old=False) * coverage)


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
    integral: np.ndarray = np.log(b / a) if s == 1.0 else (b ** (1 - s) - a ** (1 - s)) / (1 - s)
    return integral


def touched_share(bins: ZipfBins, draws: float) -> np.ndarray:
    """Probability that a document of each bin was hit at least once in `draws` independent draws."""
    share: np.ndarray = -np.expm1(draws * np.log1p(-bins.p))
    return share


def lazy_coverage(bins: ZipfBins, draws: float) -> tuple[float, float]:
    """(corpus coverage, traffic coverage) after `draws` hits when only touched documents move."""
    touched = touched_share(bins, draws)
    return float((bins.counts * touched).sum() / bins.docs), float((bins.counts * bins.p * touched).sum())


# -- what each strategy runs, and the throughput it gets ----------------------------------------------


@dataclass(frozen=True)
class Regime:
    backfill: bool
    lazy: bool
    fanout: bool
    """Queries fan out to both indexes, so covered documents are served from B before cut-over."""
    throttled: bool
    """Runs beside live queries: the latency budget limits the worker (backfill and lazy moves)."""


REGIMES: Mapping[Strategy, Regime] = {
    Strategy.OFFLINE: Regime(backfill=True, lazy=False, fanout=False, throttled=False),
    Strategy.BACKFILL: Regime(backfill=True, lazy=False, fanout=False, throttled=True),
    Strategy.LAZY: Regime(backfill=False, lazy=True, fanout=True, throttled=True),
    Strategy.PARALLEL: Regime(backfill=True, lazy=True, fanout=True, throttled=True),
}


@dataclass(frozen=True)
class ResourceLoad:
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
    # float(): a float to a float power may be complex in general; here the base is positive.
    return min(1.0, max(THROTTLE_FLOOR, 1 - float((p99_idle_ms / budget_ms) ** exponent)))


def serving_p99_ms(inp: PlanInput, strategy: Strategy) -> float:
    m = inp.measurements
    return m.dual_p99() if REGIMES[strategy].fanout else m.query_p99_ms


def resource_load(inp: PlanInput, strategy: Strategy) -> ResourceLoad:
    regime, m = REGIMES[strategy], inp.measurements
    share = 1.0
    if regime.throttled:
        share = throttle_share(
            serving_p99_ms(inp, strategy), inp.latency_budget_ms, inp.qps, m.throttle_exponent()
        )
    query_embeds = inp.qps * inp.tokens_per_query / inp.tokens_per_doc if regime.fanout else 0.0
    # Offline runs as fast as it can: the rate limit is the live backfill's setting.
    limit = inp.backfill_rate_limit if regime.throttled else 0.0
    return ResourceLoad(
        m.embed_docs_per_s,
        m.index_insert_docs_per_s,
        m.pipeline_docs_per_s(inp.batch_size),
        inp.write_rate,
        query_embeds,
        share,
        limit,
    )
