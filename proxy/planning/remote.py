"""A remote embedding API's throughput from its limits: requests in flight over the round trip, requests per
minute, tokens per minute. The slowest one binds; the planner shows which, so the user knows what to raise
(more concurrency, a higher usage tier, shorter documents)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteLimit:
    name: str
    docs_per_s: float
    how: str
    """The arithmetic, for the report."""


@dataclass(frozen=True)
class RemoteEmbedding:
    concurrency: int
    round_trip_ms: float
    """One request's answer time at the batch size below (server work included)."""
    batch_size: int = 64
    """Inputs per request."""
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.round_trip_ms <= 0 or self.batch_size < 1:
            raise ValueError(
                "--embed-concurrency, --rtt-ms and --embed-batch must be positive, got "
                f"{self.concurrency}, {self.round_trip_ms}, {self.batch_size}"
            )
        for budget in (self.requests_per_minute, self.tokens_per_minute):
            if budget is not None and budget <= 0:
                raise ValueError(f"--rpm and --tpm must be positive, got {budget}")

    def limits(self, tokens_per_doc: float) -> list[RemoteLimit]:
        rtt_s = self.round_trip_ms / 1000
        found = [
            RemoteLimit(
                "concurrency",
                self.concurrency * self.batch_size / rtt_s,
                f"{self.concurrency} in flight x {self.batch_size} docs / {self.round_trip_ms:g} ms",
            )
        ]
        if self.requests_per_minute is not None:
            rate = self.requests_per_minute / 60 * self.batch_size
            found.append(
                RemoteLimit(
                    "rpm", rate, f"{self.requests_per_minute:,.0f} req/min x {self.batch_size} docs / 60 s"
                )
            )
        if self.tokens_per_minute is not None:
            rate = self.tokens_per_minute / 60 / tokens_per_doc
            found.append(
                RemoteLimit(
                    "tpm",
                    rate,
                    f"{self.tokens_per_minute:,.0f} tokens/min / {tokens_per_doc:g} per doc / 60 s",
                )
            )
        return found

    def binding(self, tokens_per_doc: float) -> RemoteLimit:
        return min(self.limits(tokens_per_doc), key=lambda limit: limit.docs_per_s)

    def needed_concurrency(self, tokens_per_doc: float) -> int:
        """The smallest concurrency at which the per-minute budgets, not the round trip, bind."""
        budgets = [limit.docs_per_s for limit in self.limits(tokens_per_doc) if limit.name != "concurrency"]
        if not budgets:
            return self.concurrency
        per_slot = self.batch_size / (self.round_trip_ms / 1000)
        return max(1, math.ceil(min(budgets) / per_slot))
