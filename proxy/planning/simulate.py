"""The time-stepped simulation of one strategy: coverage of corpus and traffic, and what was embedded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from proxy.planning.inputs import PlanInput, Strategy
from proxy.planning.model import REGIMES, Regime, ResourceLoad, ZipfBins, resource_load, touched_share

_MAX_STEPS = 20_000


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
class SimulatedRun:
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

    def embed_calls(self, batch_size: int) -> float:
        # Documents go out in batches; each fanned-out query is a call of its own.
        return (self.reembeds + self.write_embeds) / batch_size + self.query_embeds


def simulate(inp: PlanInput, strategy: Strategy, bins: ZipfBins) -> SimulatedRun:
    regime, load = REGIMES[strategy], resource_load(inp, strategy)
    state = _State(np.ones_like(bins.p))
    samples = [(0.0, 0.0, 0.0)]
    for dt in _time_steps(inp, regime, load):
        _step(state, dt, inp, regime, load, bins)
        samples.append((state.t, *_coverage(state, bins)))
        if state.finished_at is not None or state.t >= inp.horizon_s:
            break
    times, corpus, traffic = (np.array(column) for column in zip(*samples, strict=True))
    return SimulatedRun(
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


def _time_steps(inp: PlanInput, regime: Regime, load: ResourceLoad) -> list[float]:
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


def _step(
    state: _State, dt: float, inp: PlanInput, regime: Regime, load: ResourceLoad, bins: ZipfBins
) -> None:
    lazy_docs = _lazy_step(state, dt, inp, load, bins) if regime.lazy else 0.0
    state.write_embeds += inp.write_rate * dt
    if regime.fanout:
        state.query_embeds += inp.qps * dt
    if regime.backfill:
        _backfill_step(state, dt, load.backfill_rate(lazy_docs / dt) * dt, bins)
    elif (state.uncovered * bins.counts).sum() < 0.5:
        state.finished_at = state.t + dt  # fewer than half a document left: covered, on average
    state.t += dt


def _lazy_step(state: _State, dt: float, inp: PlanInput, load: ResourceLoad, bins: ZipfBins) -> float:
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
