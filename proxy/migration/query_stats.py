"""Per-path query outcomes, so promotion gates judge the new path on its own traffic."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from proxy.core.model import RoutingMode
from proxy.core.service import QueryOutcome

_NEW_PATHS = frozenset({RoutingMode.DUAL, RoutingMode.NEW})


@dataclass(frozen=True)
class PathWindow:
    samples: int
    error_rate: float
    """Share of the queries whose new leg failed or timed out."""
    p99_ms: float | None


class QueryStats:
    """Outcomes of queries served on the new path (dual or new), newest last; bounded.

    Times are wall-clock: promotion steps start at a time recorded in shared state by any replica.
    """

    def __init__(
        self, new_index: str, capacity: int = 50_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._new_index = new_index
        self._clock = clock
        self._entries: deque[tuple[float, float, bool]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def record(self, outcome: QueryOutcome, seconds: float) -> None:
        if outcome.served_by not in _NEW_PATHS:
            return
        failed = self._new_index in outcome.failed_legs
        with self._lock:
            self._entries.append((self._clock(), seconds, failed))

    def since(self, start: float) -> PathWindow:
        with self._lock:
            window = [(s, failed) for t, s, failed in self._entries if t >= start]
        if not window:
            return PathWindow(0, 0.0, None)
        latencies = [s * 1000 for s, _ in window]
        errors = sum(failed for _, failed in window)
        return PathWindow(len(window), errors / len(window), float(np.percentile(latencies, 99)))

    def now(self) -> float:
        return self._clock()
