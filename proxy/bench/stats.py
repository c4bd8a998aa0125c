"""Latency summaries: the one place that turns samples into p50/p99/QPS, so every section reports alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    count: int
    errors: int
    seconds: float
    """Wall time the samples were taken over (sum over rounds), for QPS."""
    p50_ms: float
    p99_ms: float
    mean_ms: float
    server_cpu_s: float = 0.0
    """CPU time the server process used over the samples (0: not recorded)."""
    first_error: str = ""
    """The first failed call's status and message, when `errors` is not 0."""

    @property
    def qps(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.count if self.count else 0.0


def summarize(
    latencies_ms: Sequence[float],
    seconds: float,
    errors: int = 0,
    server_cpu_s: float = 0.0,
    first_error: str = "",
) -> LatencySummary:
    if not latencies_ms:
        return LatencySummary(0, errors, seconds, 0.0, 0.0, 0.0, server_cpu_s, first_error)
    samples = np.asarray(latencies_ms, dtype=np.float64)
    return LatencySummary(
        count=len(samples),
        errors=errors,
        seconds=seconds,
        p50_ms=float(np.percentile(samples, 50)),
        p99_ms=float(np.percentile(samples, 99)),
        mean_ms=float(samples.mean()),
        server_cpu_s=server_cpu_s,
        first_error=first_error,
    )


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or NaN when the denominator is missing (reported as n/a, never as 0)."""
    return numerator / denominator if denominator > 0 else float("nan")
