"""Which strategy to recommend: the constraints each one breaks, then the best answers while it runs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from proxy.planning.inputs import TITLES, PlanInput, Strategy
from proxy.planning.results import StrategyPlan
from proxy.planning.units import format_duration


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
