"""The graph's reader/writer lock: searches share the hnswlib graph, a commit changes it alone.

hnswlib allows concurrent searches, but no search during an insert, delete-mark or resize (nmslib/hnswlib#29,
#562: searches take no locks, for speed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


class SharedExclusiveLock:
    """Many shared holders or one exclusive holder.

    A waiting exclusive holder blocks new shared ones, so a steady stream of searches cannot starve writes.
    Every search takes the shared side, so it is a plain context object over a non-reentrant lock rather than
    a generator over the default RLock: that halves its cost.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._shared_side = _SharedSide(self)

    def shared(self, timeout_s: float | None = None) -> AbstractContextManager[None]:
        """The shared side; with `timeout_s`, entering raises TimeoutError after waiting that long."""
        return self._shared_side if timeout_s is None else _SharedSide(self, timeout_s)

    def acquire_shared(self, timeout_s: float | None = None) -> bool:
        with self._cond:
            if not self._free_for_shared() and not self._cond.wait_for(self._free_for_shared, timeout_s):
                return False
            self._shared += 1
        return True

    def _free_for_shared(self) -> bool:
        return not (self._exclusive or self._exclusive_waiting)

    def release_shared(self) -> None:
        with self._cond:
            self._shared -= 1
            if self._shared == 0 and self._exclusive_waiting:
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._exclusive_waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class _SharedSide(AbstractContextManager[None]):
    def __init__(self, lock: SharedExclusiveLock, timeout_s: float | None = None) -> None:
        self._lock = lock
        self._timeout_s = timeout_s

    def __enter__(self) -> None:
        if not self._lock.acquire_shared(self._timeout_s):
            assert self._timeout_s is not None
            raise TimeoutError(
                f"a write held the graph longer than the {self._timeout_s * 1000:.0f} ms this search had left"
            )

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release_shared()
