"""Runs a query's legs: server-bound ones concurrently under a deadline, in-process ones mostly in place."""

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
    query_vector: Vector | None = None
    """The query in this leg's space (candidate re-ranking scores with the new leg's)."""

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
    return LegResult(leg.binding.name, leg.binding.model, _tagged(hits, leg.binding), latency, "", vector)


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
    """One result per leg, in order; a leg that fails or runs out of time comes back with `error` set.

    Legs that wait on a server start first, each in its index's pool, and are cut `timeout_s` after the
    start. With `inline`, the others run one after the other on the calling thread meanwhile: a lone leg
    (nothing to overlap or fall back to) waits as long as it takes; an in-process leg next to others may
    wait `timeout_s` for its index (a write holding the graph) and then gives up, so a busy index holds an
    answer up by at most that long per in-process leg (a local model's lock, held for another call's
    embedding, is not bounded). With `spare_cores`, in-process legs after the first
    go to their pools too, to run beside it on cores that would idle otherwise; on a busy machine that hop
    only adds work, so the caller says when.
    """
    deadline = time.monotonic() + timeout_s
    bounded = len(legs) > 1
    pooled = [_pooled(n, leg, bounded, inline, spare_cores) for n, leg in enumerate(legs)]
    futures = [
        _submit(leg, pools, tracer, deadline) if to_pool else None
        for leg, to_pool in zip(legs, pooled, strict=True)
    ]
    ran = {
        n: _run_guarded(leg, tracer, timeout_s if bounded else None)
        for n, leg in enumerate(legs)
        if futures[n] is None
    }
    return [
        ran[n] if future is None else _collect(future, leg, deadline)
        for n, (leg, future) in enumerate(zip(legs, futures, strict=True))
    ]


def _pooled(position: int, leg: LegRequest, bounded: bool, inline: bool, spare_cores: bool) -> bool:
    if not inline:
        return True
    if not bounded:
        return False
    return not leg.binding.in_process or (spare_cores and position > 0)


def _submit(leg: LegRequest, pools: LegPools, tracer: Tracer, deadline: float) -> Future[LegResult]:
    # In a copy of the caller's context, so the leg's span is a child of the query's span.
    run = contextvars.copy_context().run
    return pools.for_index(leg.binding.name).submit(run, _run_until, leg, tracer, deadline)


def _run_until(leg: LegRequest, tracer: Tracer, deadline: float) -> LegResult:
    # What is left when a pool thread picks the leg up: an in-process index then stops waiting when the leg
    # is cut, instead of holding the thread.
    return run_leg(leg, tracer, max(0.0, deadline - time.monotonic()))


def _collect(future: Future[LegResult], leg: LegRequest, deadline: float) -> LegResult:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        future.cancel()
        return _failed(leg, "deadline exceeded")
    except Exception as exc:  # a failing leg must degrade the answer, not fail the query
        return _failed(leg, f"{type(exc).__name__}: {exc}")


def _run_guarded(leg: LegRequest, tracer: Tracer, timeout_s: float | None) -> LegResult:
    try:
        return run_leg(leg, tracer, timeout_s)
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
