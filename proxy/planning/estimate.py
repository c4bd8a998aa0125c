"""`plan()`: simulate every strategy, sum each one up over a common window, and recommend one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from proxy.migration.retirement import StoragePolicy
from proxy.planning.inputs import PlanInput, Strategy, recall_at
from proxy.planning.model import (
    REGIMES,
    cost_of,
    index_bytes,
    resource_load,
    serving_p99_ms,
    storage_at,
    zipf_bins,
)
from proxy.planning.notes import strategy_notes
from proxy.planning.recommend import recommend
from proxy.planning.results import Plan, StrategyPlan, TimelinePoint
from proxy.planning.simulate import SimulatedRun, simulate

_TIMELINE_POINTS = 400


def plan(inp: PlanInput) -> Plan:
    bins = zipf_bins(inp.docs, inp.zipf_s)
    runs = {strategy: simulate(inp, strategy, bins) for strategy in Strategy}
    # Compare quality over the time the strategies that set out to finish need; lazy-only may take a year.
    finishes = [r.finished_at for s, r in runs.items() if REGIMES[s].backfill and r.finished_at is not None]
    window = max(finishes) if finishes else inp.horizon_s
    strategies = tuple(_summarize(inp, strategy, run, window) for strategy, run in runs.items())
    recommended, reason = recommend(strategies, inp, window)
    return Plan(inp, strategies, recommended, reason, window, index_bytes(inp, old=True))


def _summarize(inp: PlanInput, strategy: Strategy, run: SimulatedRun, window: float) -> StrategyPlan:
    timeline = _timeline(inp, strategy, run)
    load = resource_load(inp, strategy)
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
        embed_calls=run.embed_calls(inp.batch_size),
        tokens=tokens,
        cost=cost_of(tokens, inp.price_per_1m_tokens),
        mean_recall=time_averaged_recall(timeline, window),
        min_recall=min(p.recall for p in timeline),
        serving_p99_ms=p99,
        latency_ok=p99 <= inp.latency_budget_ms,
        notes=strategy_notes(inp, strategy, run, load),
        timeline=timeline,
    )


def _timeline(inp: PlanInput, strategy: Strategy, run: SimulatedRun) -> tuple[TimelinePoint, ...]:
    regime = REGIMES[strategy]
    retire = inp.storage_policy is StoragePolicy.RETIRE_AS_YOU_GO and regime.fanout
    # Without fan-out, queries stay on A until cut-over: served coverage is 0 until the switch.
    served = run.traffic if regime.fanout else np.zeros_like(run.traffic)
    keep = _thin(len(run.times))
    points = [
        TimelinePoint(
            float(run.times[i]),
            float(run.corpus[i]),
            float(served[i]),
            recall_at(inp.recall_curve, served[i]),
            storage_at(inp, run.corpus[i], retire),
        )
        for i in keep
    ]
    if run.finished_at is not None:
        # Cut-over: B holds everything and takes all traffic (a measured curve may end below 1: ANN misses).
        full = recall_at(inp.recall_curve, 1.0)
        done = TimelinePoint(run.finished_at, 1.0, 1.0, full, storage_at(inp, 1.0, retire))
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
