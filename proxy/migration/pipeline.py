"""The backfill's two stages overlapped: while one batch is written on a thread of its own, the next one is
embedded on the caller's, so the backfill runs at the slower stage's rate rather than at the sum of both.

Both stages spend their heavy parts with the GIL released (hnswlib's inserts and SQLite, PostgreSQL's round
trips, torch, an HTTP embedder's wait), so the overlap is real even in one process.

Batches wait here in the order they were embedded and are written in that order, one at a time, each write
finished before the next begins: whoever checkpoints after a write never moves past a batch that is not written.
A batch whose write failed stays first in line with the vectors it has, so the next beat writes exactly it
again, and nothing the pipeline embedded is embedded a second time.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

B = TypeVar("B")
R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Beat(Generic[B, R]):
    """What one beat did."""

    written: B | None
    """The batch whose write finished (None: nothing was waiting, or its write failed)."""
    result: R | None
    """What the write returned."""
    embedded: B | None
    """The batch embedded meanwhile (None: none was, or there was nothing left to embed)."""
    error: Exception | None
    """The write's failure, else the embedding's: the caller raises it once it has taken in the rest, so a
    failure in either stage surfaces from the step as it did when the stages ran one after the other."""


class WriteBehind(Generic[B, R]):
    """Embedded batches waiting for their write, and the thread that writes them."""

    def __init__(self, depth: int = 2, thread_name: str = "switchyard-backfill-write") -> None:
        """`depth`: how many batches may wait at once. Two: the one being written and the one embedded
        meanwhile. After a failed write both wait, and the next beat only writes."""
        self._depth = depth
        self._thread_name = thread_name
        self._waiting: deque[B] = deque()
        self._writer: ThreadPoolExecutor | None = None
        """Started by the first beat (a migration that never backfills here needs no thread)."""

    def waiting(self) -> tuple[B, ...]:
        """The batches embedded and not yet written, oldest (next to be written) first."""
        return tuple(self._waiting)

    def push(self, batch: B) -> None:
        self._waiting.append(batch)

    def forget(self, stale: Callable[[B], bool]) -> None:
        """Drops the waiting batches that `stale` picks (their work is someone else's now); not during a beat."""
        self._waiting = deque(b for b in self._waiting if not stale(b))

    def beat(self, write: Callable[[B], R], embed: Callable[[], B | None]) -> Beat[B, R]:
        """Writes the oldest waiting batch on the write thread while `embed()` makes the next one here.

        `embed` is skipped when `depth` batches already wait; it returns None when there is nothing left to
        embed. Both stages are over when this returns, whatever either raised.
        """
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix=self._thread_name)
        head = self._waiting[0] if self._waiting else None
        pending = self._writer.submit(write, head) if head is not None else None
        embedded: B | None = None
        embed_error: Exception | None = None
        if len(self._waiting) < self._depth:
            try:
                embedded = embed()
            except Exception as exc:
                embed_error = exc
        # The write is waited for even when embedding failed: no write may outlive the step that began it,
        # or its checkpoint would land while the worker already counts the step as over (paused, stopping).
        result: R | None = None
        write_error: Exception | None = None
        if pending is not None:
            try:
                result = pending.result()
                self._waiting.popleft()
            except Exception as exc:
                write_error = exc
        if embedded is not None:
            self._waiting.append(embedded)
        if write_error is not None and embed_error is not None:
            log.warning("backfill embedding failed as well: %s", embed_error)
        written = head if pending is not None and write_error is None else None
        return Beat(written, result, embedded, write_error or embed_error)

    def close(self) -> None:
        """Lets the write thread end once its write is done (a later beat starts another)."""
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None
