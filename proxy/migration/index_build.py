"""The new index's deferred search structure (pgvector `build_index: deferred`), built once by the worker.

The backfill fills the new index without it; once the backfill completes (or reaches the index's `build_at`),
the worker starts the build on a thread of its own, so repairs, lazy moves and dual writes go on meanwhile.
The database keeps the build's state (a valid index, a build running, or neither), so a restarted sidecar, or
another replica, picks it up where it stands: builds it, waits for a build still running, or rebuilds what a
dead build left. `validated`, `shifting`, `cut_over` and a validation report wait for it (`commands`,
`promoter`): the validation's checks must run on the graph that will serve, not on the table scan that answers
meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from proxy.core.ports import DeferredSearchIndex, SearchIndexState, VectorIndex
from proxy.migration.phases import Phase

log = logging.getLogger(__name__)

BUILD_PHASES = frozenset({Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING, Phase.CUT_OVER})
"""Phases in which the worker builds it: not while paused (the operator stopped the background work), nor
after a rollback (the new index no longer matters)."""
LOG_EVERY_S = 10.0
"""How often a running build's progress is logged."""
RETRY_AFTER_S = 30.0
"""After a failed build, the wait before the next try: a cause that persists (memory, disk) must not turn
into a loop of builds."""


class SearchIndexBuild:
    def __init__(
        self, index: VectorIndex, progress: Callable[[], tuple[int, int]], complete: Callable[[], bool]
    ):
        """`progress`: the backfill's (done, total); `complete`: whether it has finished."""
        self._index = index if isinstance(index, DeferredSearchIndex) else None
        self._progress = progress
        self._complete = complete
        self._built = self._index is None
        self._thread: threading.Thread | None = None
        self._logged_at = 0.0
        self._retry_at = 0.0

    def pending(self) -> SearchIndexState | None:
        """The state while the index is not built (read from the database now); None once it is, or when the
        new index has nothing deferred."""
        if self._built or self._index is None:
            return None
        state = self._index.search_index_state()
        self._built = state.built
        return None if state.built else state

    def describe(self) -> str:
        """For status: "built", or what is happening to it."""
        state = self.pending()
        return "built" if state is None else state.describe()

    def tick(self, phase: Phase) -> None:
        """Starts the build when it is due and none runs here; logs a running one's progress now and then."""
        if self._built or self._index is None or phase not in BUILD_PHASES:
            return
        if self._thread is not None and self._thread.is_alive():
            self._log_progress()
            return
        if time.monotonic() < self._retry_at or not self._due(self._index.build_at):
            return
        state = self.pending()
        if state is None or state.building:
            # Built, or a build runs in another session (a replica, or a server finishing a dead sidecar's).
            return
        log.info("new index: the backfill reached its build point; building the HNSW index (CONCURRENTLY)")
        self._thread = threading.Thread(target=self._build, name="switchyard-index-build", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> None:
        """Waits for a build this replica started (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _due(self, build_at: float) -> bool:
        done, total = self._progress()
        return (total > 0 and done / total >= build_at) or self._complete()

    def _build(self) -> None:
        assert self._index is not None
        started = time.monotonic()
        try:
            built = self._index.build_search_index()
        except Exception:
            # A failed or cancelled build leaves an INVALID index; the next tick drops and rebuilds it.
            log.exception(
                "new index: the HNSW index build failed; the worker tries again in %.0f s", RETRY_AFTER_S
            )
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            return
        if built:
            self._built = True
            log.info("new index: HNSW index built in %.1f s", time.monotonic() - started)

    def _log_progress(self) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            state = self.pending()
            log.info("new index: HNSW index %s", "built" if state is None else state.describe())
