"""Migration state kept in the shared StateStore, so every replica sees one phase, split and rate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.core.errors import FailedPrecondition
from proxy.core.ports import StateStore
from proxy.migration.phases import MigrationState, Phase, PhaseChange

MIGRATION_KEY = "migration"
HISTORY_KEY = "migration:history"
LAZY_QUEUE = "lazy"
VALIDATION_KEY = "validation"


# Every entry of a repair queue has this priority: entries are taken first in, first out.
REPAIR_PRIORITY = 0.0


def repair_queue(index: str) -> str:
    """Writes to `index` as the secondary that are not known to have landed there (see PendingWrite)."""
    return f"repair:{index}"


@dataclass(frozen=True)
class PendingWrite:
    """One id of a dual write, queued for its secondary index before the primary is written.

    A process killed between the primary's and the secondary's write, or a secondary that fails, leaves the
    entry behind, and the backfill worker brings the secondary up to the primary. The version makes the
    repair exact: only the write that carried it is carried over, never an unrelated tombstone (a retired
    old copy) or a later write (it has its own entry).
    """

    id: str
    version: int
    at: float
    """Wall-clock time of queueing: an entry whose write has not reached the primary yet is young."""

    def member(self) -> str:
        # The id goes last: it may itself contain the separator.
        return f"{self.version}|{self.at:.3f}|{self.id}"

    @staticmethod
    def parse(member: str) -> PendingWrite:
        version, at, doc_id = member.split("|", 2)
        return PendingWrite(doc_id, int(version), float(at))

    @staticmethod
    def members(versions: Mapping[str, int], at: float) -> list[str]:
        return [PendingWrite(doc_id, version, at).member() for doc_id, version in versions.items()]


class MigrationRecord:
    """Reads and writes the migration's shared fields; phase changes are compare-and-set across replicas."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def load(self) -> MigrationState:
        return self.snapshot()[0]

    def snapshot(self) -> tuple[MigrationState, dict[str, str]]:
        """The state and the raw shared fields (split, rate; no `phase` field: never started, or lost)."""
        fields = self.store.get_fields(MIGRATION_KEY)
        phase = Phase(fields.get("phase", Phase.PLANNED.value))
        paused_from = Phase(fields["paused_from"]) if fields.get("paused_from") else None
        history = tuple(_change(json.loads(e)) for e in self.store.events(HISTORY_KEY))
        return MigrationState(phase, paused_from, history), fields

    def restore(self, state: MigrationState, values: Mapping[str, str], reason: str) -> bool:
        """Writes a state a replica remembers back into a store that lost it (Redis restarted empty).

        Returns False when the store holds a phase again (another replica restored it first).
        """
        if not self.store.compare_and_set_field(MIGRATION_KEY, "phase", None, state.phase.value):
            return False
        paused_from = state.paused_from.value if state.paused_from else ""
        # A field set since the loss (an operator's new split) is newer than the remembered one.
        present = self.store.get_fields(MIGRATION_KEY)
        missing = {k: v for k, v in {**values, "paused_from": paused_from}.items() if k not in present}
        self.store.set_fields(MIGRATION_KEY, missing)
        restored = PhaseChange(state.phase, state.phase, self._clock(), reason)
        for change in (*state.history, restored):
            self.store.append_event(HISTORY_KEY, json.dumps(_as_dict(change)))
        return True

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

    def record_validation(self, passed: bool, at: float) -> None:
        """The verdict of the last validation report: cut-over requires a passing one."""
        self.store.set_fields(VALIDATION_KEY, {"passed": "1" if passed else "0", "at": repr(at)})

    def validation_passed(self) -> bool:
        return self.store.get_fields(VALIDATION_KEY).get("passed") == "1"

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
