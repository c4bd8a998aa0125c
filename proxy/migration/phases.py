"""The migration state machine: phases, the transitions allowed between them, and the checks on each."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from proxy.core.errors import FailedPrecondition


class Phase(StrEnum):
    PLANNED = "planned"
    BACKFILLING = "backfilling"
    VALIDATED = "validated"
    SHIFTING = "shifting"
    CUT_OVER = "cut_over"
    OLD_RETIRED = "old_retired"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"


# Phases where the new index is kept in step with the old one (dual write) and the backfill may run.
DUAL_WRITE_PHASES = frozenset(
    {Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING, Phase.PAUSED, Phase.CUT_OVER, Phase.ROLLED_BACK}
)
_PAUSABLE = frozenset({Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING})
# Phases in which the backfill scans slices; in the others only lazy and repair work runs.
SLICE_PHASES = frozenset({Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING})

ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.PLANNED: frozenset({Phase.BACKFILLING}),
    Phase.BACKFILLING: frozenset({Phase.VALIDATED, Phase.PAUSED, Phase.CUT_OVER, Phase.ROLLED_BACK}),
    Phase.VALIDATED: frozenset({Phase.SHIFTING, Phase.PAUSED, Phase.CUT_OVER, Phase.ROLLED_BACK}),
    Phase.SHIFTING: frozenset({Phase.CUT_OVER, Phase.PAUSED, Phase.ROLLED_BACK}),
    Phase.PAUSED: frozenset({Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING, Phase.ROLLED_BACK}),
    Phase.CUT_OVER: frozenset({Phase.OLD_RETIRED, Phase.ROLLED_BACK}),
    Phase.ROLLED_BACK: frozenset({Phase.BACKFILLING, Phase.SHIFTING}),
    Phase.OLD_RETIRED: frozenset(),
}
# Phases that require the new index to hold the whole corpus (unless forced).
_NEEDS_FULL_COVERAGE = frozenset({Phase.VALIDATED, Phase.CUT_OVER})


@dataclass(frozen=True)
class PhaseChange:
    from_phase: Phase
    to_phase: Phase
    at: float
    reason: str


@dataclass(frozen=True)
class MigrationState:
    phase: Phase = Phase.PLANNED
    paused_from: Phase | None = None
    history: tuple[PhaseChange, ...] = field(default_factory=tuple)


def parse_phase(name: str) -> Phase:
    try:
        return Phase(name)
    except ValueError:
        valid = ", ".join(p.value for p in Phase)
        raise FailedPrecondition(f"unknown phase {name!r}; phases are: {valid}") from None


def transition(
    state: MigrationState,
    to: Phase,
    *,
    coverage: float,
    at: float,
    reason: str = "",
    force: bool = False,
    report_passed: bool = True,
) -> MigrationState:
    """The state after moving to `to`, or FailedPrecondition saying why the move is not allowed now."""
    current = state.phase
    if to not in ALLOWED[current]:
        allowed = ", ".join(sorted(p.value for p in ALLOWED[current])) or "none (final phase)"
        raise FailedPrecondition(
            f"cannot go from {current.value} to {to.value}; allowed from here: {allowed}"
        )
    if current is Phase.PAUSED and to is not Phase.ROLLED_BACK and to is not state.paused_from and not force:
        raise FailedPrecondition(f"paused during {_name(state.paused_from)}: resume to that phase first")
    if to in _NEEDS_FULL_COVERAGE and coverage < 1.0 and not force:
        raise FailedPrecondition(
            f"{to.value} needs the new index to cover the whole corpus; coverage is {coverage:.1%} "
            "(let the backfill finish, or force the transition)"
        )
    if to is Phase.CUT_OVER and not report_passed and not force:
        raise FailedPrecondition(
            "cut_over needs a passing validation report: run `switchyard migrate validate` (or force)"
        )
    change = PhaseChange(current, to, at, reason or ("forced" if force else ""))
    paused_from = current if to is Phase.PAUSED else None
    return replace(state, phase=to, paused_from=paused_from, history=(*state.history, change))


def pause(state: MigrationState, *, at: float, reason: str = "") -> MigrationState:
    if state.phase not in _PAUSABLE:
        raise FailedPrecondition(
            f"cannot pause in phase {state.phase.value}; pausable: backfilling, validated, shifting"
        )
    return transition(state, Phase.PAUSED, coverage=0.0, at=at, reason=reason or "paused by operator")


def resume(state: MigrationState, *, at: float, reason: str = "") -> MigrationState:
    if state.phase is not Phase.PAUSED or state.paused_from is None:
        raise FailedPrecondition(f"not paused (phase is {state.phase.value})")
    # The phase we return to already passed its checks before the pause.
    return transition(
        state, state.paused_from, coverage=0.0, at=at, reason=reason or "resumed by operator", force=True
    )


def _name(phase: Phase | None) -> str:
    return phase.value if phase else "unknown"
