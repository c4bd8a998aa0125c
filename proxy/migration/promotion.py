"""Progressive promotion: hold each traffic step until its gates pass, advance, or roll back and say why.

Steps and gates are data (settings), the decision is a pure function, in the manner of Argo Rollouts'
canary analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from proxy.migration.settings import PromotionSettings
from proxy.migration.validation import Gate


class Action(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    ROLLBACK = "rollback"
    COMPLETE = "complete"


@dataclass(frozen=True)
class Decision:
    action: Action
    to_percent: float
    reason: str


def next_step(steps: tuple[float, ...], percent: float) -> float | None:
    """The first configured step above the current split, or None at the last one."""
    return next((s for s in steps if s > percent), None)


def decide(
    percent: float,
    dwell_s: float,
    samples: int,
    gates: list[Gate],
    settings: PromotionSettings,
) -> Decision:
    """What to do with the current step, given how long it has run, how much it saw, and its gates."""
    failed = [g for g in gates if not g.passed and g.value is not None]
    if failed:
        reasons = "; ".join(f"{g.name} {g.detail}" for g in failed)
        return Decision(Action.ROLLBACK, 0.0, f"gate failed at {percent:g}%: {reasons}")
    if dwell_s < settings.min_dwell_s or samples < settings.min_samples:
        return Decision(
            Action.HOLD,
            percent,
            f"step {percent:g}%: {dwell_s:.0f}/{settings.min_dwell_s:.0f}s, {samples}/{settings.min_samples} samples",
        )
    missing = [g for g in gates if g.value is None]
    if missing:
        return Decision(Action.HOLD, percent, "waiting for data: " + ", ".join(g.name for g in missing))
    target = next_step(settings.steps, percent)
    if target is None:
        return Decision(Action.COMPLETE, percent, f"all steps passed at {percent:g}%")
    return Decision(
        Action.ADVANCE, target, f"gates passed at {percent:g}% ({samples} samples): advance to {target:g}%"
    )
