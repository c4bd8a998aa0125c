"""Combines the old and the new leg's hits into one ranking, although their raw scores are not comparable.

Upstream the query path has made the lists coverage-aware: `old_hits` holds only A-hits for documents the
new index does not cover yet, `new_hits` are the new index's hits. Every strategy here shares one contract:

- merged hits are new `Hit` objects with `score` on the merged scale and `raw_score` the index's own score;
- a document in both lists keeps the new leg's hit (the new index is the one being migrated to);
- output is sorted by merged score, descending; ties go to the new leg, then to the smaller id, so the order
  never depends on input order or set iteration;
- either list may be empty.

Strategies differ only in how they put each leg's scores on a common scale: `minmax`, `zscore`, `rrf` and
`calibrated`; pick one by name with `make_merger`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from proxy.core.model import Hit

Scores = npt.NDArray[np.float64]


class ScoreMerger(Protocol):
    name: str

    def merge(self, old_hits: Sequence[Hit], new_hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best `k` hits of both legs on one scale (see the module docstring for the contract)."""
        ...

    def observe(self, old_all: Sequence[Hit], new_all: Sequence[Hit]) -> None:
        """Learns from the raw, unfiltered legs of one dual query; stateless strategies ignore it."""
        ...


# -- the shared ranking step -------------------------------------------------------------------------------


def rank_merged(
    old_hits: Sequence[Hit], old_scores: Scores, new_hits: Sequence[Hit], new_scores: Scores, k: int
) -> list[Hit]:
    """Merges hits whose scores are already on one scale, applying the contract every strategy shares."""
    new_ids = {h.id for h in new_hits}
    entries = [(float(s), True, h) for h, s in zip(new_hits, new_scores, strict=True)]
    entries += [
        (float(s), False, h) for h, s in zip(old_hits, old_scores, strict=True) if h.id not in new_ids
    ]
    entries.sort(key=lambda e: (-e[0], not e[1], e[2].id))
    merged: list[Hit] = []
    seen: set[str] = set()
    for score, _, hit in entries:
        if len(merged) >= k:
            break
        # An index should not repeat an id; if one does, the best-scored copy wins.
        if hit.id not in seen:
            seen.add(hit.id)
            merged.append(
                Hit(hit.id, score, hit.version, hit.metadata, hit.text, hit.index, hit.model, hit.score)
            )
    return merged


def _raw(hits: Sequence[Hit]) -> Scores:
    return np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits))


# -- minmax ------------------------------------------------------------------------------------------------


def min_max(scores: Scores) -> Scores:
    """Scales scores to [0, 1] so each leg's best hit is 1.0 and its worst 0.0.

    A single score or all-equal scores carry no spread to scale; they become 1.0 because each of them is the
    best its leg has to offer, and 0.0 would bury a lone uncovered document under every hit of the other leg.
    """
    if scores.size == 0:
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 0.0:
        return np.ones_like(scores)
    return (scores - low) / (high - low)


class MinMaxMerger:
    name = "minmax"

    def merge(self, old_hits: Sequence[Hit], new_hits: Sequence[Hit], k: int) -> list[Hit]:
        return rank_merged(old_hits, min_max(_raw(old_hits)), new_hits, min_max(_raw(new_hits)), k)

    def observe(self, old_all: Sequence[Hit], new_all: Sequence[Hit]) -> None:
        return None


# -- zscore ------------------------------------------------------------------------------------------------


class RunningScoreStats:
    """Mean and variance of one index's raw scores, weighted towards recent observations.

    The weight of a new score is max(1/n, alpha): exact (Welford) mean and variance for the first 1/alpha
    scores, then an exponential moving estimate, so the statistics follow a drifting query mix without
    the cold-start bias of a plain moving average that starts from zero variance. Not thread-safe on its
    own; ZScoreMerger guards it.
    """

    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be within (0, 1], got {alpha}")
        self._alpha = alpha
        self.count = 0
        self.mean = 0.0
        self.variance = 0.0

    def update(self, scores: Sequence[float]) -> None:
        for score in scores:
            self.count += 1
            weight = max(1.0 / self.count, self._alpha)
            diff = score - self.mean
            self.mean += weight * diff
            self.variance = (1.0 - weight) * (self.variance + weight * diff * diff)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.variance))


def z_scores(scores: Scores, mean: float, std: float) -> Scores:
    # No spread means every score sits at the mean: 0 is its distance, not an error.
    if std <= 1e-12:
        return np.zeros_like(scores)
    return (scores - mean) / std


class ZScoreMerger:
    """Standardizes each leg against the running statistics of its index (keyed by `Hit.index`).

    A result list alone is a poor sample (k scores from the top of the distribution, so the best hit of
    every leg lands near the same z); the index's running statistics say how good a score really is for
    that index. Until an index has `min_observations` scores, the current list's own statistics stand in.
    """

    name = "zscore"

    def __init__(self, alpha: float = 0.001, min_observations: int = 200) -> None:
        self._alpha = alpha
        self._min_observations = min_observations
        self._stats: dict[str, RunningScoreStats] = {}
        # Queries merge and observe concurrently from a thread pool; updates are read-modify-write.
        self._lock = threading.Lock()

    def merge(self, old_hits: Sequence[Hit], new_hits: Sequence[Hit], k: int) -> list[Hit]:
        return rank_merged(old_hits, self._standardize(old_hits), new_hits, self._standardize(new_hits), k)

    def observe(self, old_all: Sequence[Hit], new_all: Sequence[Hit]) -> None:
        with self._lock:
            for hit in (*old_all, *new_all):
                stats = self._stats.setdefault(hit.index, RunningScoreStats(self._alpha))
                stats.update((hit.score,))

    def statistics(self, index: str) -> tuple[float, float, int]:
        """(mean, std, count) of an index's observed scores; (0, 0, 0) before the first observation."""
        with self._lock:
            stats = self._stats.get(index)
            return (stats.mean, stats.std, stats.count) if stats else (0.0, 0.0, 0)

    def _standardize(self, hits: Sequence[Hit]) -> Scores:
        raw = _raw(hits)
        if raw.size == 0:
            return raw
        # One leg comes from one index, so its first hit names the statistics to use.
        mean, std, count = self.statistics(hits[0].index)
        if count < self._min_observations:
            # Summed in sorted order so the result, down to the last bit, does not depend on input order.
            ordered = np.sort(raw)
            mean, std = float(ordered.mean()), float(ordered.std())
        return z_scores(raw, mean, std)


# -- rrf ---------------------------------------------------------------------------------------------------


class ReciprocalRankMerger:
    """score = sum over legs of 1 / (k_rrf + rank), rank 1-based by raw score within each leg.

    Scores are ignored except for ordering, so no scale has to be learnt. A document in both lists keeps the
    new leg's hit but its score is the fused sum over both legs: that sum is what rank fusion means.
    """

    name = "rrf"

    def __init__(self, k_rrf: float = 60.0) -> None:
        if k_rrf < 0:
            raise ValueError(f"k_rrf must be >= 0, got {k_rrf}")
        self._k_rrf = k_rrf

    def merge(self, old_hits: Sequence[Hit], new_hits: Sequence[Hit], k: int) -> list[Hit]:
        old_fused = self._reciprocal_ranks(old_hits)
        new_fused = self._reciprocal_ranks(new_hits)
        old_by_id = {h.id: s for h, s in zip(old_hits, old_fused, strict=True)}
        new_fused += np.array([old_by_id.get(h.id, 0.0) for h in new_hits], dtype=np.float64)
        return rank_merged(old_hits, old_fused, new_hits, new_fused, k)

    def observe(self, old_all: Sequence[Hit], new_all: Sequence[Hit]) -> None:
        return None

    def _reciprocal_ranks(self, hits: Sequence[Hit]) -> Scores:
        # Rank by score, not list position: an upstream filter may keep the order, but nothing forces it to.
        order = sorted(range(len(hits)), key=lambda i: (-hits[i].score, hits[i].id))
        ranks = np.empty(len(hits), dtype=np.float64)
        ranks[order] = np.arange(1, len(hits) + 1, dtype=np.float64)
        return 1.0 / (self._k_rrf + ranks)


# -- calibrated --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class IsotonicMap:
    """A monotone non-decreasing piecewise-linear map; flat (clamped) outside the fitted range."""

    x: Scores
    y: Scores

    def __call__(self, scores: Scores) -> Scores:
        return np.interp(scores, self.x, self.y)


def fit_isotonic(x: Sequence[float] | Scores, y: Sequence[float] | Scores) -> IsotonicMap:
    """Least-squares monotone fit of y on x by pool-adjacent-violators.

    Equal x values are pooled first (their mean y, weighted by count) so the knots are strictly increasing.
    Each fitted block keeps its first and last x as knots; interpolating between blocks turns the PAV step
    function into a continuous map, which keeps near-equal A-scores from jumping across a step.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size == 0 or xs.shape != ys.shape:
        raise ValueError(f"need equally long, non-empty x and y; got {xs.size} and {ys.size} values")
    unique_x, inverse, counts = np.unique(xs, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=ys) / counts
    values, sizes = _pool_adjacent_violators(means, counts.astype(np.float64))
    ends = np.cumsum(sizes) - 1
    starts = ends - sizes + 1
    knots_x = np.column_stack([unique_x[starts], unique_x[ends]]).ravel()
    knots_y = np.repeat(values, 2)
    keep = np.column_stack([np.ones_like(starts, dtype=bool), ends > starts]).ravel()
    return IsotonicMap(knots_x[keep], knots_y[keep])


def _pool_adjacent_violators(values: Scores, weights: Scores) -> tuple[Scores, npt.NDArray[np.int64]]:
    """Block values and block sizes (in input points) of the weighted isotonic fit of sorted `values`."""
    block_values: list[float] = []
    block_weights: list[float] = []
    block_sizes: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        block_values.append(value)
        block_weights.append(weight)
        block_sizes.append(1)
        while len(block_values) > 1 and block_values[-2] > block_values[-1]:
            last_value, last_weight, last_size = block_values.pop(), block_weights.pop(), block_sizes.pop()
            pooled = block_weights[-1] + last_weight
            block_values[-1] = (block_values[-1] * block_weights[-1] + last_value * last_weight) / pooled
            block_weights[-1] = pooled
            block_sizes[-1] += last_size
    return np.array(block_values), np.array(block_sizes, dtype=np.int64)


class CalibratedMerger:
    """Maps A-scores onto B's scale with a monotone fit learnt from documents both indexes returned.

    Each (a_score, b_score) pair is one document scored by both indexes for the same query; an isotonic fit
    over recent pairs turns any A-score into "what B would probably have scored it", and B's raw scores are
    left as they are. Monotone because a better A-score must never map below a worse one, whatever the fit.

    Until `min_pairs` pairs have been seen there is no trustworthy map, and merging falls back to min-max
    (the scores of the fallback are therefore on the [0, 1] scale). After the first fit, the map is refitted
    every `refit_every` new pairs over the last `capacity` pairs, so it follows drift but costs one PAV pass
    per `refit_every` pairs rather than per query. Pairs come from the tops of both lists, so the map is
    best there and clamps below the lowest A-score it has seen.

    A fit over a full window takes milliseconds of Python. Serving, refits are spaced `refit_interval_s`
    apart and handed to `run_fit` (a background thread), one at a time, so a query only appends its pairs;
    by default both are off and every fit runs at once in the caller, which keeps the class deterministic.
    """

    name = "calibrated"

    def __init__(
        self,
        min_pairs: int = 50,
        refit_every: int = 100,
        capacity: int = 5000,
        *,
        refit_interval_s: float = 0.0,
        run_fit: Callable[[Callable[[], None]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_pairs <= capacity or refit_every <= 0:
            raise ValueError("need 0 < min_pairs <= capacity and refit_every > 0")
        self._min_pairs = min_pairs
        self._refit_every = refit_every
        self._refit_interval_s = refit_interval_s
        self._run_fit = run_fit or _call
        self._clock = clock
        self._last_fit_at = -math.inf
        self._fitting = False
        self._pairs: deque[tuple[float, float]] = deque(maxlen=capacity)
        self._since_fit = 0
        self._generation = 0
        self._installed_generation = 0
        self._map: IsotonicMap | None = None
        self._fallback = MinMaxMerger()
        self._lock = threading.Lock()

    @property
    def fitted(self) -> bool:
        return self._map is not None

    def merge(self, old_hits: Sequence[Hit], new_hits: Sequence[Hit], k: int) -> list[Hit]:
        # One attribute read: a concurrent refit swaps in a whole new map, never a half-built one.
        mapping = self._map
        if mapping is None:
            return self._fallback.merge(old_hits, new_hits, k)
        return rank_merged(old_hits, mapping(_raw(old_hits)), new_hits, _raw(new_hits), k)

    def observe(self, old_all: Sequence[Hit], new_all: Sequence[Hit]) -> None:
        self.observe_pairs(shared_document_pairs(old_all, new_all))

    def observe_pairs(self, pairs: Sequence[tuple[float, float]]) -> None:
        if not pairs:
            return
        snapshot = self._record(pairs)
        if snapshot is not None:
            generation, a_scores, b_scores = snapshot
            self._run_fit(lambda: self._install(generation, a_scores, b_scores))

    def map_old_scores(self, scores: Sequence[float]) -> Scores | None:
        """A-scores on B's scale, or None before the first fit."""
        mapping = self._map
        return None if mapping is None else mapping(np.asarray(scores, dtype=np.float64))

    def _record(self, pairs: Sequence[tuple[float, float]]) -> tuple[int, Scores, Scores] | None:
        """Stores pairs; returns a snapshot to fit from when a (re)fit is due."""
        with self._lock:
            self._pairs.extend(pairs)
            self._since_fit += len(pairs)
            due = self._since_fit >= self._refit_every if self._map is not None else True
            spaced = self._clock() - self._last_fit_at >= self._refit_interval_s
            if len(self._pairs) < self._min_pairs or not due or not spaced or self._fitting:
                return None
            self._since_fit = 0
            self._fitting = True
            self._last_fit_at = self._clock()
            self._generation += 1
            data = np.array(self._pairs, dtype=np.float64)
            return self._generation, data[:, 0], data[:, 1]

    def _install(self, generation: int, a_scores: Scores, b_scores: Scores) -> None:
        mapping: IsotonicMap | None = None
        try:
            mapping = fit_isotonic(a_scores, b_scores)  # outside the lock: queries go on merging meanwhile
        finally:
            with self._lock:
                self._fitting = False
                # A slower, older fit must not replace a newer one.
                if mapping is not None and generation > self._installed_generation:
                    self._installed_generation = generation
                    self._map = mapping


def shared_document_pairs(old_all: Sequence[Hit], new_all: Sequence[Hit]) -> list[tuple[float, float]]:
    """(A-score, B-score) of documents both legs returned at the same version.

    A version mismatch means the two indexes embedded different texts, so the pair says nothing about how
    the two models score the same document.
    """
    new_by_id = {h.id: h for h in new_all}
    return [
        (a.score, new_by_id[a.id].score)
        for a in old_all
        if a.id in new_by_id and new_by_id[a.id].version == a.version
    ]


# -- registry ----------------------------------------------------------------------------------------------

SERVING_REFIT_INTERVAL_S = 1.0

_FACTORIES: dict[str, Callable[[], ScoreMerger]] = {
    MinMaxMerger.name: MinMaxMerger,
    ZScoreMerger.name: ZScoreMerger,
    ReciprocalRankMerger.name: ReciprocalRankMerger,
    CalibratedMerger.name: CalibratedMerger,
}

MERGE_STRATEGIES: tuple[str, ...] = tuple(sorted(_FACTORIES))


def make_merger(name: str, *, serving: bool = False) -> ScoreMerger:
    """A fresh merger (with its own learnt state) for a strategy name.

    `serving`: learnt state is refitted in the background and at most once a second (a query path must not
    wait for a fit); without it every fit runs at once, which is what tests and offline evaluation want.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown merge strategy {name!r}; valid: {', '.join(MERGE_STRATEGIES)}")
    if serving and factory is CalibratedMerger:
        return CalibratedMerger(refit_interval_s=SERVING_REFIT_INTERVAL_S, run_fit=_in_background)
    return factory()


def _call(fit: Callable[[], None]) -> None:
    fit()


def _in_background(fit: Callable[[], None]) -> None:
    threading.Thread(target=fit, name="switchyard-calibrate", daemon=True).start()
