"""Runs a query's legs: in-process ones on the calling thread, the others concurrently under a deadline."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from proxy.core.binding import IndexBinding
from proxy.core.model import Hit, Metadata, Vector
from proxy.core.tracing import NOOP_TRACER, Tracer


@dataclass(frozen=True)
class LegRequest:
    binding: IndexBinding
    text: str
    vector: Vector | None
    """Caller-supplied query vector in this leg's space; embedded from `text` when None."""
    k: int
    where: Metadata | None
    include_text: bool = False


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


def run_leg(leg: LegRequest, tracer: Tracer = NOOP_TRACER, timeout_s: float | None = None) -> LegResult:
    with tracer.span("switchyard.leg", {"index": leg.binding.name, "model": leg.binding.model}) as span:
        started = time.perf_counter()
        try:
            vector = leg.vector if leg.vector is not None else leg.binding.embedder.embed_query([leg.text])[0]
            hits = leg.binding.index.search(
                vector, leg.k, leg.where, include_text=leg.include_text, timeout_s=timeout_s
            )
        except Exception as exc:
            span.set_attribute("error", f"{type(exc).__name__}: {exc}")
            raise
        latency = time.perf_counter() - started
        span.set_attribute("hits", len(hits))
        span.set_attribute("latency_ms", latency * 1000)
    return LegResult(leg.binding.name, leg.binding.model, _tagged(hits, leg.binding), latency)


class LegPools:
    """A thread pool per index, apart from the pool that runs the requests (a bulkhead).

    A slow or hung index fills only its own pool: the other index's legs still start at once and answer
    within the deadline, and requests waiting for their legs never hold the threads those legs need.
    """

    def __init__(self, workers_per_index: int) -> None:
        self._workers = workers_per_index
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def for_index(self, name: str) -> Executor:
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                pool = ThreadPoolExecutor(self._workers, thread_name_prefix=f"switchyard-leg-{name}")
                self._pools[name] = pool
            return pool

    def shutdown(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


def fan_out(
    legs: Sequence[LegRequest],
    pools: LegPools,
    timeout_s: float,
    tracer: Tracer = NOOP_TRACER,
    *,
    inline: bool = True,
    spare_cores: bool = False,
) -> list[LegResult]:
    """One result per leg, in order; a leg that raises or misses the deadline comes back with `error` set.

    With `inline`, a leg runs on the calling thread when it is the only one (there is nothing to overlap or
    fall back to: it waits as long as it takes) or when it runs in this process; such a leg next to others
    gets what is left of the deadline and its index gives up waiting for writes then. Legs that wait on a
    server go to their index's pool first, so they proceed while the inline legs run, and are cut at the
    deadline here. With `spare_cores`, in-process legs after the first go to their pools too, to run beside
    it on cores that would idle otherwise; on a busy machine that hop only adds work, so callers say when.
    """
    deadline = time.monotonic() + timeout_s
    pooled = [
        not inline or (len(legs) > 1 and (not leg.binding.in_process or (spare_cores and n > 0)))
        for n, leg in enumerate(legs)
    ]
    futures = [
        _submit(leg, pools, tracer) if to_pool else None for leg, to_pool in zip(legs, pooled, strict=True)
    ]
    bounded = len(legs) > 1
    ran = {
        n: _run_guarded(leg, tracer, deadline if bounded else None)
        for n, leg in enumerate(legs)
        if futures[n] is None
    }
    return [
        ran[n] if future is None else _collect(future, leg, deadline)
        for n, (leg, future) in enumerate(zip(legs, futures, strict=True))
    ]


def _submit(leg: LegRequest, pools: LegPools, tracer: Tracer) -> Future[LegResult]:
    # In a copy of the caller's context, so the leg's span is a child of the query's span.
    return pools.for_index(leg.binding.name).submit(contextvars.copy_context().run, run_leg, leg, tracer)


def _collect(future: Future[LegResult], leg: LegRequest, deadline: float) -> LegResult:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        future.cancel()
        return _failed(leg, "deadline exceeded")
    except Exception as exc:  # a failing leg must degrade the answer, not fail the query
        return _failed(leg, f"{type(exc).__name__}: {exc}")


def _run_guarded(leg: LegRequest, tracer: Tracer, deadline: float | None) -> LegResult:
    try:
        return run_leg(leg, tracer, None if deadline is None else max(0.0, deadline - time.monotonic()))
    except Exception as exc:  # same contract as the concurrent path
        return _failed(leg, f"{type(exc).__name__}: {exc}")


def _failed(leg: LegRequest, error: str) -> LegResult:
    return LegResult(leg.binding.name, leg.binding.model, (), 0.0, error)


def _tagged(hits: list[Hit], binding: IndexBinding) -> tuple[Hit, ...]:
    # In place: the index built these hits for this search alone and nobody else has seen them yet, and this
    # runs for every hit of every query (a new Hit each cost about three times as much).
    name, model = binding.name, binding.model
    for hit in hits:
        hit.index, hit.model, hit.raw_score = name, model, hit.score
    return tuple(hits)
