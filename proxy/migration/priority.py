"""The backfill's own instance of a local model, embedding on a thread the OS schedules after the queries."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from proxy.core.model import Vector
from proxy.core.ports import Embedder

T = TypeVar("T")
log = logging.getLogger(__name__)


class LowPriorityRunner:
    """Calls functions on one thread of raised niceness, as databases run compaction threads.

    Threads that OpenMP or torch start from this thread inherit its niceness. Linux sets niceness per thread;
    elsewhere `setpriority` would renice the whole sidecar, so there calls run in place.
    """

    def __init__(self, nice: int) -> None:
        """`nice`: how much lower than the rest of the process the thread runs (0-19; 0 runs calls in place)."""
        self._nice = nice
        self._pool: ThreadPoolExecutor | None = None
        if nice > 0 and sys.platform.startswith("linux"):
            self._pool = ThreadPoolExecutor(
                1, thread_name_prefix="switchyard-backfill-embed", initializer=self._lower_priority
            )

    def run(self, fn: Callable[[], T]) -> T:
        """`fn()`'s result, or its exception, once it has run on the low-priority thread."""
        if self._pool is None:
            return fn()
        return self._pool.submit(fn).result()

    def close(self) -> None:
        """Lets the thread end once the call it runs returns; calls after this raise RuntimeError."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _lower_priority(self) -> None:
        thread = threading.get_native_id()
        try:
            # An increment, as with `nice -n`: relative to the priority the sidecar itself was started with.
            os.setpriority(
                os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + self._nice)
            )
        except OSError as exc:
            log.warning(
                "cannot lower the backfill embedding thread's priority (%s); it runs at normal priority", exc
            )


class BackfillEmbedder:
    """A second instance of a local model for the backfill alone, whose calls run at lower priority.

    A local model embeds a batch on every core for a while with the GIL released; at normal priority the
    queries that meet it share the cores with it, at lower priority they get the cores when they want them
    and the batch runs on what is left. Its own instance, because each local model serializes its calls
    with a lock: a query embedding with a shared instance would wait for the whole batch, and longer still
    with the batch at low priority. Only for models that compute with the GIL released: a pure-Python
    embedder at low priority would hold the GIL while descheduled and stall every thread of the sidecar.
    """

    def __init__(self, inner: Embedder, nice: int) -> None:
        self._inner = inner
        self._runner = LowPriorityRunner(nice)

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def in_process(self) -> bool:
        return self._inner.in_process

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        return self._runner.run(lambda: self._inner.embed(texts))

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        return self._runner.run(lambda: self._inner.embed_query(texts))

    def close(self) -> None:
        self._runner.close()
