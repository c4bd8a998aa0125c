"""Which indexes serve reads and take writes right now; the migration engine supplies a live one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from proxy.core.binding import IndexBinding
from proxy.core.model import RoutingMode


@dataclass(frozen=True)
class Layout:
    """A snapshot of the serving layout, taken once per request so a request sees one consistent view."""

    primary: IndexBinding
    """Source of truth for reads by id, and the first write target."""
    secondary: IndexBinding | None = None
    """Also written (dual write) while a migration is active."""
    old: IndexBinding | None = None
    new: IndexBinding | None = None
    """Old and new index of an active migration; None without one."""
    traffic_percent: float = 0.0
    new_path: RoutingMode = RoutingMode.DUAL
    forced_mode: RoutingMode | None = None
    """Set after cut-over or rollback, when the split no longer applies."""

    @property
    def migrating(self) -> bool:
        return self.old is not None and self.new is not None

    @property
    def write_targets(self) -> tuple[IndexBinding, ...]:
        return (self.primary,) if self.secondary is None else (self.primary, self.secondary)


class Topology(Protocol):
    def layout(self) -> Layout: ...

    def coverage(self) -> float:
        """Share of the old index's documents that the new index holds (1.0 without a migration)."""
        ...

    def record_uncovered(self, ids: Sequence[str]) -> None:
        """Documents a query touched that the new index does not cover yet (lazy re-embed)."""
        ...

    def record_pending(self, index: str, versions: Mapping[str, int]) -> None:
        """A write (id -> version) about to go to the primary and then to `index` as a secondary.

        Called before the primary is written, so that a process killed between the two writes, or a failing
        secondary, leaves a record behind from which `index` is repaired.
        """
        ...

    def reembed_now(self, ids: Sequence[str]) -> int:
        """Moves these documents into the new index before the query answers; returns how many moved."""
        ...


class StaticTopology:
    """One index, no migration."""

    def __init__(self, binding: IndexBinding) -> None:
        self._layout = Layout(primary=binding)

    def layout(self) -> Layout:
        return self._layout

    def coverage(self) -> float:
        return 1.0

    def record_uncovered(self, ids: Sequence[str]) -> None:
        return None

    def record_pending(self, index: str, versions: Mapping[str, int]) -> None:
        raise AssertionError(f"no secondary index exists to repair ({index})")

    def reembed_now(self, ids: Sequence[str]) -> int:
        return 0
