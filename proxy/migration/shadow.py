"""Shadow comparison: the new index answers the same queries in the background; we record how it agrees."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from proxy.core.fanout import LegResult
from proxy.core.quality import overlap_at_k, rank_biased_overlap


@dataclass(frozen=True)
class ShadowSample:
    overlap: float
    rank_agreement: float
    old_latency_s: float
    new_latency_s: float
    old_ok: bool
    new_ok: bool
    coverage: float


@dataclass(frozen=True)
class ShadowSummary:
    samples: int
    overlap: float
    """Mean overlap@k of the new answer with the old one."""
    rank_agreement: float
    """Mean rank-biased overlap (top ranks weigh more)."""
    old_p50_ms: float
    old_p99_ms: float
    new_p50_ms: float
    new_p99_ms: float
    new_error_rate: float
    old_error_rate: float


class ShadowRecorder:
    """Keeps the most recent `window` comparisons; thread-safe (shadow legs finish on pool threads)."""

    def __init__(self, window: int = 2000) -> None:
        self._samples: deque[ShadowSample] = deque(maxlen=window)
        self._lock = threading.Lock()

    def record(self, old: LegResult, new: LegResult, k: int, coverage: float = 1.0) -> None:
        old_ids = [h.id for h in old.hits]
        new_ids = [h.id for h in new.hits]
        both = old.ok and new.ok
        sample = ShadowSample(
            overlap=overlap_at_k(old_ids, new_ids, k) if both else 0.0,
            rank_agreement=rank_biased_overlap(old_ids, new_ids, k) if both else 0.0,
            old_latency_s=old.latency_s,
            new_latency_s=new.latency_s,
            old_ok=old.ok,
            new_ok=new.ok,
            coverage=coverage,
        )
        with self._lock:
            self._samples.append(sample)

    def summary(self) -> ShadowSummary:
        """Over the samples taken at the highest coverage seen: agreement with a half-built index says little."""
        with self._lock:
            samples = list(self._samples)
        if samples:
            best = max(s.coverage for s in samples)
            samples = [s for s in samples if s.coverage >= best - 0.01]
        if not samples:
            return ShadowSummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        compared = [s for s in samples if s.old_ok and s.new_ok]
        old_ms = [s.old_latency_s * 1000 for s in samples if s.old_ok] or [0.0]
        new_ms = [s.new_latency_s * 1000 for s in samples if s.new_ok] or [0.0]
        return ShadowSummary(
            samples=len(samples),
            overlap=float(np.mean([s.overlap for s in compared])) if compared else 0.0,
            rank_agreement=float(np.mean([s.rank_agreement for s in compared])) if compared else 0.0,
            old_p50_ms=float(np.percentile(old_ms, 50)),
            old_p99_ms=float(np.percentile(old_ms, 99)),
            new_p50_ms=float(np.percentile(new_ms, 50)),
            new_p99_ms=float(np.percentile(new_ms, 99)),
            new_error_rate=sum(not s.new_ok for s in samples) / len(samples),
            old_error_rate=sum(not s.old_ok for s in samples) / len(samples),
        )
