"""The plan as a PNG: coverage of corpus and traffic, recall and storage over time (needs matplotlib)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.planning.inputs import TITLES, Strategy
from proxy.planning.results import Plan, StrategyPlan, TimelinePoint
from proxy.planning.units import DAY_S, format_duration

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
    panels: tuple[tuple[str, Callable[[TimelinePoint], float], str], ...] = (
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
    axis: Any,
    sp: StrategyPlan,
    value: Callable[[TimelinePoint], float],
    horizon: float,
    scale: float,
    chosen: bool,
) -> None:
    # One point past the edge keeps a long run's line going to the axis (xlim clips it).
    beyond = [p for p in sp.timeline if p.t_s > horizon][:1]
    points = [p for p in sp.timeline if p.t_s <= horizon] + beyond
    last = sp.timeline[-1]
    if last.t_s < horizon:
        points.append(replace(last, t_s=horizon))  # the last state holds to the edge of the plot
    label = sp.title + (" (recommended)" if chosen else "")
    axis.plot(
        [p.t_s / scale for p in points],
        [value(p) for p in points],
        color=_COLORS[sp.strategy],
        linestyle="-" if chosen else "--",
        linewidth=2.6 if chosen else 1.4,
        label=label,
    )


def _time_unit(horizon_s: float) -> tuple[str, float]:
    if horizon_s >= 3 * DAY_S:
        return "days", DAY_S
    if horizon_s >= 3 * 3600:
        return "hours", 3600.0
    return ("minutes", 60.0) if horizon_s >= 180 else ("seconds", 1.0)
