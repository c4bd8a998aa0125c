"""Migration state kept in the shared StateStore, so every replica sees one phase, split and rate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from proxy.errors import FailedPrecondition
from proxy.migration.phases import MigrationState, Phase, PhaseChange
from proxy.ports import StateStore

MIGRATION_KEY = "migration"
HISTORY_KEY = "migration:history"
LAZY_QUEUE = "lazy"


def repair_queue(index: str) -> str:
    return f"repair:{index}"


class MigrationRecord:
    """Reads and writes the migration's shared fields; phase changes are compare-and-set across replicas."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def load(self) -> MigrationState:
        fields = self.store.get_fields(MIGRATION_KEY)
        phase = Phase(fields.get("phase", Phase.PLANNED.value))
        paused_from = Phase(fields["paused_from"]) if fields.get("paused_from") else None
        history = tuple(_change(json.loads(e)) for e in self.store.events(HISTORY_KEY))
        return MigrationState(phase, paused_from, history)

    def change(self, step: Callable[[MigrationState, float], MigrationState]) -> MigrationState:
        """Applies a transition; fails if another replica changed the phase in between."""
        current = self.load()
        updated = step(current, self._clock())
        stored = self.store.get_fields(MIGRATION_KEY).get("phase")
        if not self.store.compare_and_set_field(MIGRATION_KEY, "phase", stored, updated.phase.value):
            raise FailedPrecondition("the migration phase changed concurrently (another replica?); retry")
        self.store.set_fields(
            MIGRATION_KEY, {"paused_from": updated.paused_from.value if updated.paused_from else ""}
        )
        self.store.append_event(HISTORY_KEY, json.dumps(_as_dict(updated.history[-1])))
        return updated

    def get_float(self, name: str, default: float) -> float:
        value = self.store.get_fields(MIGRATION_KEY).get(name)
        return float(value) if value not in (None, "") else default

    def set_float(self, name: str, value: float) -> None:
        self.store.set_fields(MIGRATION_KEY, {name: repr(float(value))})


def _as_dict(change: PhaseChange) -> dict[str, object]:
    return {
        "from": change.from_phase.value,
        "to": change.to_phase.value,
        "at": change.at,
        "reason": change.reason,
    }


def _change(raw: dict[str, object]) -> PhaseChange:
    return PhaseChange(Phase(str(raw["from"])), Phase(str(raw["to"])), float(raw["at"]), str(raw["reason"]))  # type: ignore[arg-type]
