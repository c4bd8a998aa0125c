"""Runs query legs concurrently, each under its own deadline, and collects what came back in time."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

from proxy.core.binding import IndexBinding
from proxy.core.model import Hit, Metadata, Vector


@dataclass(frozen=True)
class LegRequest:
    binding: IndexBinding
    text: str
    vector: Vector | None
    """Caller-supplied query vector in this leg's space; embedded from `text` when None."""
    k: int
    where: Metadata | None


@dataclass(frozen=True)
class LegResult:
    index: str
    model: str
    hits: tuple[Hit, ...]
    latency_s: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def run_leg(leg: LegRequest) -> LegResult:
    started = time.perf_counter()
    vector = leg.vector if leg.vector is not None else leg.binding.embedder.embed([leg.text])[0]
    hits = leg.binding.index.search(vector, leg.k, leg.where)
    tagged = tuple(_tag(hit, leg.binding) for hit in hits)
    return LegResult(leg.binding.name, leg.binding.model, tagged, time.perf_counter() - started)


def fan_out(legs: Sequence[LegRequest], executor: Executor, timeout_s: float) -> list[LegResult]:
    """One result per leg, in order; a leg that raises or misses the deadline comes back with `error` set.

    A single leg runs on the calling thread: there is nothing to overlap, and a hop to the pool would only
    add latency to the common no-migration path.
    """
    if len(legs) == 1:
        return [_run_guarded(legs[0])]
    started = time.monotonic()
    futures = [executor.submit(run_leg, leg) for leg in legs]
    return [_collect(f, leg, started + timeout_s) for f, leg in zip(futures, legs, strict=True)]


def _collect(future: Future[LegResult], leg: LegRequest, deadline: float) -> LegResult:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        future.cancel()
        return _failed(leg, "deadline exceeded")
    except Exception as exc:  # a failing leg must degrade the answer, not fail the query
        return _failed(leg, f"{type(exc).__name__}: {exc}")


def _run_guarded(leg: LegRequest) -> LegResult:
    try:
        return run_leg(leg)
    except Exception as exc:  # same contract as the concurrent path
        return _failed(leg, f"{type(exc).__name__}: {exc}")


def _failed(leg: LegRequest, error: str) -> LegResult:
    return LegResult(leg.binding.name, leg.binding.model, (), 0.0, error)


def _tag(hit: Hit, binding: IndexBinding) -> Hit:
    return replace(hit, index=binding.name, model=binding.model, raw_score=hit.score)
