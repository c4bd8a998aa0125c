"""How many embedding requests may go out now: a provider's limits, kept by the client.

A remote embedder runs several requests at once (a GPU server batches concurrent requests, a hosted API
answers each in one round trip whatever else is in flight), within three limits:

- a concurrency that adapts (AIMD): halved when the server answers 429, raised by one after a round of
  successes, between 1 and the configured maximum. Flows that share one limit converge to fair shares under
  this rule, and it finds the server's real capacity without being told it;
- requests-per-minute and tokens-per-minute budgets, each a token bucket refilled continuously (OpenAI's
  limits are per minute but enforced over shorter intervals, so a minute's budget spent in a burst is
  answered with 429s);
- the server's own word: `Retry-After` and `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` hold every new
  request until the time the server named.

`RequestLimiter.try_acquire` is pure bookkeeping over a clock it is given (unit-tested without sleeping);
`acquire` waits on a condition for the time it names.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.core.model import EmbedderLoad

_WINDOW_S = 60.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class ProviderLimits:
    max_concurrency: int = 1
    """Requests in flight at most; the adaptive concurrency starts here and never goes above it."""
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    """Budgets the client keeps itself to (None: only the server's answers limit it)."""
    decrease_cooldown_s: float = 1.0
    """A burst of 429s from requests sent together halves the concurrency once, not once per answer."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        for budget in (self.requests_per_minute, self.tokens_per_minute):
            if budget is not None and budget <= 0:
                raise ValueError(f"per-minute budgets must be positive, got {budget}")


def estimate_tokens(text: str) -> int:
    """About four bytes of UTF-8 per token for English-like text under BPE tokenizers; at least one.

    An estimate on purpose: counting exactly needs the provider's tokenizer, and the budget only has to keep
    the client near the limit; the server's remaining-tokens header corrects the rest.
    """
    return max(1, math.ceil(len(text.encode()) / 4))


def parse_duration(value: str) -> float | None:
    """`x-ratelimit-reset-*` as seconds: OpenAI writes "1s", "6m0s", "20ms", "1h2m3.5s"; others a number."""
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


class _Bucket:
    """A per-minute budget refilled continuously; a request larger than the bucket may run it into debt."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.rate = per_minute / _WINDOW_S
        # One second's worth, at least one request: a budget is spread over the minute, not spent at once.
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.at = now

    def wait(self, cost: float, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, cost: float) -> None:
        self.level -= cost


class RequestLimiter:
    """Admits requests under the adaptive concurrency, the budgets and the server's hints; thread-safe."""

    def __init__(self, limits: ProviderLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        now = clock()
        self._requests = _Bucket(limits.requests_per_minute, now) if limits.requests_per_minute else None
        self._tokens = _Bucket(limits.tokens_per_minute, now) if limits.tokens_per_minute else None
        self._concurrency = limits.max_concurrency
        self._in_flight = 0
        self._successes = 0
        self._last_decrease = -math.inf
        self._hold_until = -math.inf
        self._urgent_waiting = 0
        self._sent: deque[tuple[float, int]] = deque()
        self._throttled = 0
        self._retries = 0
        self._batch_cap: int | None = None
        self._changed = threading.Condition()

    # -- admission -------------------------------------------------------------------------------------

    def try_acquire(self, tokens: int, urgent: bool = False) -> float:
        """0.0: the request may go now (it is counted in flight); else seconds to wait before asking again.

        A wait for a free slot is reported as `math.inf`: it ends when a request finishes, not at a time.
        While an urgent request waits (a query's embedding), no other takes a slot before it.
        """
        with self._changed:
            now = self._clock()
            if now < self._hold_until:
                return self._hold_until - now
            if self._in_flight >= self._concurrency or (self._urgent_waiting and not urgent):
                return math.inf
            waits = [b.wait(cost, now) for b, cost in ((self._requests, 1), (self._tokens, tokens)) if b]
            if waits and max(waits) > 0:
                return max(waits)
            for bucket, cost in ((self._requests, 1), (self._tokens, tokens)):
                if bucket is not None:
                    bucket.take(cost)
            self._in_flight += 1
            self._sent.append((now, tokens))
            self._forget_old(now)
            return 0.0

    def acquire(self, tokens: int, urgent: bool = False) -> None:
        """Waits until `try_acquire` lets the request go; `urgent` goes ahead of the others waiting (a query
        must not queue behind a backfill page's batches)."""
        # One hold of the lock from asking to waiting: a slot freed in between would otherwise wake nobody.
        with self._changed:
            self._urgent_waiting += urgent
            try:
                while (wait := self.try_acquire(tokens, urgent)) > 0:
                    self._changed.wait(None if math.isinf(wait) else wait)
            finally:
                self._urgent_waiting -= urgent
                self._changed.notify_all()

    # -- outcomes --------------------------------------------------------------------------------------

    def succeeded(self, headers: Mapping[str, str] | None = None) -> None:
        """Additive increase: one more slot after a round (as many successes as slots) without a 429."""
        with self._changed:
            self._finish()
            self._successes += 1
            if self._successes >= self._concurrency and self._concurrency < self.limits.max_concurrency:
                self._concurrency += 1
                self._successes = 0
            self._read_hints(headers or {})

    def throttled(self, retry_after: float | None, headers: Mapping[str, str] | None = None) -> None:
        """Multiplicative decrease on a 429, and every new request held for the time the server asked."""
        with self._changed:
            self._finish()
            self._throttled += 1
            self._successes = 0
            now = self._clock()
            if now - self._last_decrease >= self.limits.decrease_cooldown_s:
                self._concurrency = max(1, self._concurrency // 2)
                self._last_decrease = now
            if retry_after is not None:
                self._hold(now + retry_after)
            self._read_hints(headers or {})

    def failed(self) -> None:
        """Any other end (an error, a timeout): the slot is free, the concurrency unchanged."""
        with self._changed:
            self._finish()

    def retrying(self) -> None:
        with self._changed:
            self._retries += 1

    def refused_as_too_large(self, sent: int) -> int:
        """Remembers that a batch of `sent` inputs was too large; returns the size to send from now on."""
        with self._changed:
            cap = max(1, sent // 2)
            self._batch_cap = cap if self._batch_cap is None else min(self._batch_cap, cap)
            return self._batch_cap

    def batch_size(self, configured: int) -> int:
        """The configured batch size, or less once the server refused a larger one."""
        with self._changed:
            return configured if self._batch_cap is None else min(configured, self._batch_cap)

    # -- reading ---------------------------------------------------------------------------------------

    def stats(self) -> EmbedderLoad:
        with self._changed:
            self._forget_old(self._clock())
            return EmbedderLoad(
                in_flight=self._in_flight,
                concurrency=self._concurrency,
                max_concurrency=self.limits.max_concurrency,
                requests_last_minute=len(self._sent),
                tokens_last_minute=sum(t for _, t in self._sent),
                requests_per_minute=self.limits.requests_per_minute,
                tokens_per_minute=self.limits.tokens_per_minute,
                throttled=self._throttled,
                retries=self._retries,
                batch_cap=self._batch_cap,
            )

    # -- internals (called holding the lock) -----------------------------------------------------------

    def _finish(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        self._changed.notify_all()

    def _hold(self, until: float) -> None:
        self._hold_until = max(self._hold_until, until)
        self._changed.notify_all()

    def _read_hints(self, headers: Mapping[str, str]) -> None:
        """Holds new requests until the server's reset when what remains would be used up by those in flight
        (they were sent before the server counted its remaining budget, or answered after it)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        now = self._clock()
        for kind in ("requests", "tokens"):
            remaining = lowered.get(f"x-ratelimit-remaining-{kind}")
            reset = lowered.get(f"x-ratelimit-reset-{kind}")
            if remaining is None or reset is None:
                continue
            try:
                left = float(remaining)
            except ValueError:
                continue
            seconds = parse_duration(reset)
            needed = self._in_flight + 1 if kind == "requests" else 1
            if seconds is not None and left < needed:
                self._hold(now + seconds)

    def _forget_old(self, now: float) -> None:
        while self._sent and now - self._sent[0][0] > _WINDOW_S:
            self._sent.popleft()
