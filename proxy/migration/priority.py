"""Runs the backfill's embedding on a thread the OS schedules after the threads that serve queries."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class LowPriorityRunner:
    """Calls functions on one thread of raised niceness, like a database's compaction threads.

    A local model embeds a batch on every core for a while, with the GIL released; at normal priority the
    queries that meet it share the cores with it, at niceness 19 they get the cores whenever they want them
    and the batch runs on what is left. Threads an OpenMP or torch model starts from this thread inherit its
    niceness. Only the embedding runs here: the backfill's Python around it holds the GIL and stays at
    normal priority, so a waiting query never waits for a descheduled low-priority thread to let go of it.
    """

    def __init__(self, nice: int) -> None:
        """`nice`: how much lower than the rest of the process the thread runs (0-19; 0 runs calls in place)."""
        self._nice = nice
        self._pool: ThreadPoolExecutor | None = None
        if nice > 0 and sys.platform.startswith("linux"):
            # Linux sets niceness per thread; elsewhere setpriority would renice the whole sidecar.
            self._pool = ThreadPoolExecutor(
                1, thread_name_prefix="switchyard-backfill-embed", initializer=self._lower_priority
            )

    def run(self, fn: Callable[[], T]) -> T:
        if self._pool is None:
            return fn()
        return self._pool.submit(fn).result()

    def close(self) -> None:
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


def run_directly(fn: Callable[[], T]) -> T:
    return fn()
