"""Backfill pacing: a docs/s limit, and backing off while query latency is over its budget (gh-ost style)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class LatencyWindow:
    """Query latencies of the last `window_s` seconds, and how late the event loop ran; the throttle reads
    their p99.

    A query's latency is measured from its handler's start, but a request that arrives while the event loop
    is late (a backfill batch holding the GIL) waits for it before its handler starts. So the p99 the
    throttle sees is the queries' p99 plus the loop lag's p99: an estimate of what callers wait.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()
        self._lags: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def record(self, latency_s: float) -> None:
        with self._lock:
            self._samples.append((self._clock(), latency_s))
            self._expire()

    def record_loop_lag(self, lag_s: float) -> None:
        with self._lock:
            self._lags.append((self._clock(), lag_s))
            self._expire()

    def p99(self) -> float | None:
        with self._lock:
            self._expire()
            if len(self._samples) < 20:
                return None  # too few queries to judge; an idle service must not throttle
            lag = float(np.percentile([s for _, s in self._lags], 99)) if self._lags else 0.0
            return float(np.percentile([s for _, s in self._samples], 99)) + lag

    def _expire(self) -> None:
        horizon = self._clock() - self._window_s
        for samples in (self._samples, self._lags):
            while samples and samples[0][0] < horizon:
                samples.popleft()


@dataclass(frozen=True)
class ThrottleState:
    effective_rate: float
    """Docs/s the backfill may use now; 0 means unlimited."""
    reason: str
    """Why the rate is below the limit; empty when it is not."""


class AdaptiveThrottle:
    """Multiplicative back-off while p99 exceeds the budget, gradual recovery while it does not (AIMD)."""

    MIN_FACTOR = 1 / 64

    def __init__(
        self,
        rate_limit: float,
        latency_budget_s: float | None,
        window: LatencyWindow,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate_limit = rate_limit
        self.latency_budget_s = latency_budget_s
        self._window = window
        self._clock = clock
        self._sleep = sleep
        self._factor = 1.0
        self._base = rate_limit
        self._next_free = clock()
        self._reason = ""

    def state(self) -> ThrottleState:
        return ThrottleState(self._effective_rate(), self._reason)

    def adjust(self, unthrottled_rate: float) -> None:
        """Re-reads the latency window; call once per batch. `unthrottled_rate` is what the backfill can do."""
        p99 = self._window.p99()
        over = self.latency_budget_s is not None and p99 is not None and p99 > self.latency_budget_s
        if over:
            self._factor = max(self.MIN_FACTOR, self._factor / 2)
            assert p99 is not None and self.latency_budget_s is not None
            self._reason = f"query p99 {p99 * 1000:.1f}ms over budget {self.latency_budget_s * 1000:.1f}ms"
        else:
            self._factor = min(1.0, self._factor + 0.1)
            if self._factor >= 1.0:
                self._reason = ""
        # Back-off needs a base even without a configured limit: the backfill's own unthrottled speed.
        self._base = self.rate_limit or unthrottled_rate

    def wait_for(self, docs: int) -> float:
        """Sleeps until `docs` more documents fit the rate; returns the seconds slept."""
        rate = self._effective_rate()
        if rate <= 0:
            return 0.0
        now = self._clock()
        start = max(now, self._next_free)
        self._next_free = start + docs / rate
        delay = start - now
        if delay > 0:
            self._sleep(delay)
        return delay

    def _effective_rate(self) -> float:
        if self._factor >= 1.0:
            return self.rate_limit
        return self._base * self._factor
