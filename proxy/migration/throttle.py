"""Backfill pacing: a docs/s limit, and a share of the time the backfill may work that backs off while query
latency is over its budget (gh-ost's throttle, with pt-online-schema-change's chunk-time batches)."""

from __future__ import annotations

import math
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_SAMPLES = 20
"""Fewer queries than this in a window tell nothing about its p99: an idle service must not throttle."""


class _Series:
    """Timestamped values in arrival order, kept in flat arrays: a window of a few thousand queries a
    second is read in C (bisect, numpy) rather than one Python tuple at a time while the GIL is held."""

    def __init__(self) -> None:
        self._times = array("d")
        self._values = array("d")
        self._head = 0

    def append(self, at: float, value: float) -> None:
        self._times.append(at)
        self._values.append(value)

    def drop_before(self, horizon: float) -> None:
        self._head = bisect_left(self._times, horizon, self._head)
        if self._head > len(self._times) // 2:
            del self._times[: self._head], self._values[: self._head]
            self._head = 0

    def after(self, since: float) -> np.ndarray:
        start = bisect_right(self._times, since, self._head)
        return np.frombuffer(self._values[start:], dtype=np.float64)


class LatencyWindow:
    """Query latencies of the last `window_s` seconds, and how late the event loop ran; the throttle reads
    their p99.

    A query's latency is measured from its handler's start, but a request that arrives while the event loop
    is late (a backfill batch holding the GIL) waits for it before its handler starts. So the p99 the
    throttle sees is the queries' p99 plus the loop lag's p99: an estimate of what callers wait.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples = _Series()
        self._lags = _Series()
        self._lock = threading.Lock()

    def record(self, latency_s: float) -> None:
        self._add(self._samples, latency_s)

    def record_loop_lag(self, lag_s: float) -> None:
        self._add(self._lags, lag_s)

    def _add(self, series: _Series, value: float) -> None:
        with self._lock:
            now = self._clock()
            series.append(now, value)
            series.drop_before(now - self.window_s)

    def p99(self, since: float = -math.inf) -> float | None:
        """p99 of the window, or of its part after clock time `since`; None with too few queries there."""
        with self._lock:
            horizon = self._clock() - self.window_s
            self._samples.drop_before(horizon)
            self._lags.drop_before(horizon)
            samples = self._samples.after(since)
            if samples.size < MIN_SAMPLES:
                return None
            lags = self._lags.after(since)
            lag = float(np.percentile(lags, 99)) if lags.size else 0.0
            return float(np.percentile(samples, 99)) + lag


@dataclass(frozen=True)
class ThrottleState:
    duty: float
    """Share of the time the backfill may spend working (1: all of it)."""
    reason: str
    """Why the duty is below 1, and the duty; empty when it is not."""


class AdaptiveThrottle:
    """Decides when the next backfill batch may start and how many documents it may take.

    Two limits, the stricter one wins. `rate_limit` caps documents per second. With a `latency_budget_s`,
    the backfill may work only a share of the time, its duty: after a batch that worked w seconds it rests
    w * (1 - duty) / duty. The duty halves while the recent query p99 is over the budget (at most once a
    second, and judged again only on queries answered after the last halving, since older ones cannot show
    its effect, as after a resume). After a resume it begins small and doubles every second (TCP's slow start) up to where it
    was last halved to or, if higher, where it stood when paused (TCP's ssthresh: what the queries bore),
    then grows by INCREASE_PER_S each second. A duty, not a rate: the backfill's share of the machine is
    what the queries feel, whatever the model's speed. And with a budget a batch of a local model takes
    only as many documents as fit in `batch_time_s` (pt-online-schema-change's chunk time), so each burst
    the queries meet is short and the duty is kept in small steps rather than by one batch of a slow model
    running for seconds (a local model embeds about as fast one document at a time as in batches of 32:
    measured, e5-small 26 vs 32 docs/s). While paused it judges nothing: queries slow for other reasons
    must not lower the duty of a backfill that is not running.
    """

    MIN_DUTY = 1 / 64
    START_DUTY = 1 / 16
    INCREASE_PER_S = 0.02
    DECREASE_SPACING_S = 1.0
    MAX_GROWTH = 2
    """A batch takes at most this many times the documents of the one before."""

    def __init__(
        self,
        rate_limit: float,
        latency_budget_s: float | None,
        window: LatencyWindow,
        clock: Callable[[], float] = time.monotonic,
        batch_time_s: float = 0.1,
    ) -> None:
        self.rate_limit = rate_limit
        self.latency_budget_s = latency_budget_s
        self.batch_time_s = batch_time_s
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._duty = 1.0
        self._slow_start = False
        self._ceiling = 1.0
        """Where slow start ends: the duty the last halving left, or the duty when last paused."""
        self._paused = False
        self._reason = "too few recent queries to judge by"
        """The last judgement of the latency window."""
        self._updated_at = clock()
        self._last_decrease = -math.inf
        self._judged_since = -math.inf
        """Only queries answered after this count: the last halving's, or the last resume's, effect."""
        self._doc_s: float | None = None
        """Seconds per re-embedded document, averaged over recent batches."""
        self._last_size = 0
        self._last_batch = (-math.inf, -math.inf, 0.0, 0)
        """(start, end, seconds of work, documents embedded) of the last batch: the rest its work owes and
        the wait its documents owe follow the duty and the rate limit as they are when asked."""

    def set_rate_limit(self, docs_per_second: float) -> None:
        """Documents per second from the next batch on (0: unlimited)."""
        with self._lock:
            self.rate_limit = docs_per_second

    def set_latency_budget(self, budget_s: float | None) -> None:
        """The query p99 to keep under (None: no latency throttling, the duty goes back to 1)."""
        with self._lock:
            self.latency_budget_s = budget_s

    def set_batch_time(self, batch_time_s: float) -> None:
        """How long one batch of a local model may work, with a latency budget."""
        with self._lock:
            self.batch_time_s = batch_time_s

    def pause(self) -> None:
        """The backfill stopped (paused, or not started): nothing to judge until `resume`."""
        with self._lock:
            self._update(self._clock())
            self._paused = True

    def resume(self) -> None:
        """The backfill starts or resumes: with a latency budget it begins at a small duty (slow start)."""
        with self._lock:
            self._paused = False
            self._updated_at = self._judged_since = self._clock()
            if self.latency_budget_s is not None:
                self._ceiling = max(self._ceiling, self._duty)
                self._duty = min(self._duty, self.START_DUTY)
                self._slow_start = True

    def state(self) -> ThrottleState:
        with self._lock:
            self._update(self._clock())
            if self._duty >= 1.0:
                return ThrottleState(1.0, "")
            start = "starting slowly: " if self._slow_start else ""
            reason = f"{self._reason}; {start}the backfill works {self._duty:.0%} of the time"
            return ThrottleState(self._duty, reason)

    def batch_size(self, largest: int) -> int:
        """Documents the next batch of a local model may take, out of a configured `largest`."""
        with self._lock:
            if self.latency_budget_s is None:
                return largest
            if self._doc_s is None:
                return 1  # speed not known yet: one document measures it
            fits = int(self.batch_time_s / max(self._doc_s, 1e-9))
            return max(1, min(largest, fits, self.MAX_GROWTH * max(1, self._last_size)))

    def record_batch(self, scanned: int, embedded: int, work_s: float) -> None:
        """A batch looked at `scanned` documents, re-embedded `embedded` of them and took `work_s` seconds,
        ending now; the rest it owes to its duty and the wait it owes to the rate limit (which counts
        re-embedded documents) follow from that. `work_s` is wall time: where the backfill's stages overlap
        (one batch written while the next is embedded), a second of both counts once."""
        with self._lock:
            now, work_s = self._clock(), max(work_s, 0.0)
            self._last_size = scanned
            if embedded > 0:
                # Per embedded document: documents the new index already holds cost a version lookup, and a
                # stretch of them must not make the next batch of real work look cheap.
                per_doc = work_s / embedded
                self._doc_s = per_doc if self._doc_s is None else 0.7 * self._doc_s + 0.3 * per_doc
            self._update(now)
            self._last_batch = (now - work_s, now, work_s, embedded)

    def delay(self) -> float:
        """Seconds until the next batch may start (0: now); ask again after waiting, the duty moves."""
        with self._lock:
            now = self._clock()
            self._update(now)
            started, ended, work_s, embedded = self._last_batch
            rest_until = ended + work_s * (1.0 - self._duty) / self._duty
            rate = self.rate_limit  # read once: set from other threads
            # As if the batch had waited for its slot before it started: the rate holds whatever it took.
            free_at = started + embedded / rate if rate > 0 else -math.inf
            return max(0.0, rest_until - now, free_at - now)

    def _update(self, now: float) -> None:
        elapsed, self._updated_at = max(0.0, now - self._updated_at), now
        budget = self.latency_budget_s
        if budget is None:
            self._duty, self._slow_start = 1.0, False
            return
        if self._paused:
            return
        fresh = self._window.p99(since=max(self._judged_since, now - self._window.window_s))
        if fresh is not None:
            verdict = "over" if fresh > budget else "within"
            self._reason = f"query p99 {fresh * 1000:.1f}ms {verdict} budget {budget * 1000:.1f}ms"
        if fresh is not None and fresh > budget:
            if now - self._last_decrease >= self.DECREASE_SPACING_S:
                self._duty = self._ceiling = max(self.MIN_DUTY, self._duty / 2)
                self._slow_start = False
                self._last_decrease = self._judged_since = now
        elif fresh is not None or self._window.p99() is None:
            # Under budget, or too little traffic in the whole window to judge by: the backfill may take more.
            # (Traffic that has not yet answered enough queries since a halving or a resume waits for them.)
            if fresh is None:
                self._reason = "too few recent queries to judge by"
            if self._slow_start:
                self._duty = max(self._duty, min(self._ceiling, self._duty * 2.0**elapsed))
                self._slow_start = self._duty < self._ceiling
            else:
                self._duty = min(1.0, self._duty + self.INCREASE_PER_S * elapsed)
            if self._duty >= 1.0:
                self._slow_start = False
