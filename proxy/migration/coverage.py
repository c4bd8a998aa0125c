"""How much of the corpus the new index holds: measured from index counts, reused for a short while."""

from __future__ import annotations

import time
from collections.abc import Callable

from proxy.core.binding import IndexBinding
from proxy.core.errors import Unavailable
from proxy.core.ports import CatchUp
from proxy.migration.retirement import StorageTracker
from proxy.migration.snapshot import STATE_CACHE_S

BELOW_COMPLETE = 0.999999
"""The highest coverage reported while the backfill is not complete: counts alone cannot prove it is."""


class CoverageGauge:
    def __init__(self, old: IndexBinding, new: IndexBinding, storage: StorageTracker) -> None:
        self._old = old
        self._new = new
        self._storage = storage
        self._last: tuple[float, float] | None = None
        """(time.monotonic(), coverage) of the last measurement."""

    def value(self) -> float:
        """The coverage, measured at most every STATE_CACHE_S (queries ask on every request)."""
        now = time.monotonic()
        if self._last is None or now - self._last[0] > STATE_CACHE_S:
            self._last = (now, self._measure())
        return self._last[1]

    def fresh(self) -> float:
        """The coverage measured now (for operators)."""
        self.invalidate()
        return self.value()

    def exact(self, backfill_complete: Callable[[], bool]) -> float:
        """Measured now, and below 1 until the backfill has finished (what a phase change is checked on)."""
        self.invalidate()
        if backfill_complete() or self._old.index.count() == 0:
            return self.value()
        return min(self.value(), BELOW_COMPLETE)

    def rows_behind(self) -> int:
        """Rows of an application's table served in place that lack a current new vector (0 otherwise): counts
        can match while rows written directly still wait for their vector, so the phases that need full
        coverage check this too (`commands`)."""
        return self._new.index.rows_behind() if isinstance(self._new.index, CatchUp) else 0

    def invalidate(self) -> None:
        self._last = None

    def _measure(self) -> float:
        try:
            retired = self._storage.retired_count()
        except Unavailable:
            if self._last is None:
                raise
            return self._last[1]  # the state store is down: the last measurement stands
        # Retired documents left the old index but are part of the corpus (the new index holds them).
        corpus = self._old.index.count() + retired
        return 1.0 if corpus == 0 else min(1.0, self._new.index.count() / corpus)
