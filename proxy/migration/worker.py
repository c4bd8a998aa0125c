"""This replica's backfill thread: a unit of work per round as the phase allows, and the jobs between rounds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from proxy.core.binding import IndexBinding
from proxy.core.errors import Unavailable
from proxy.migration.backfill import Backfiller
from proxy.migration.index_build import SearchIndexBuild
from proxy.migration.phases import SLICE_PHASES, Phase
from proxy.migration.retirement import OldCopyRetirer, StorageTracker
from proxy.migration.snapshot import SharedState
from proxy.migration.status import ProgressRate
from proxy.migration.throttle import AdaptiveThrottle

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 30.0
RESTING_PHASES = frozenset({Phase.PLANNED, Phase.PAUSED})
"""Phases without backfill work (only repairs, while paused)."""
DROP_BATCHES = 8
"""After `old_retired`, what is left of the old index is deleted in batches this many times the backfill's."""

PeriodicJob = Callable[[], object]
"""Work run between backfill rounds (automatic promotion); what it returns is not used."""


def may_backfill(stop: threading.Event, shared: SharedState) -> Callable[[], bool]:
    """The backfill's `may_continue`: not stopping, and in a phase with backfill work."""
    return lambda: not stop.is_set() and shared.phase() not in RESTING_PHASES


class BackfillWorker:
    def __init__(
        self,
        shared: SharedState,
        backfiller: Backfiller,
        throttle: AdaptiveThrottle,
        storage: StorageTracker,
        retirer: OldCopyRetirer,
        progress: ProgressRate,
        index_build: SearchIndexBuild,
        old: IndexBinding,
        new: IndexBinding,
        *,
        batch_size: int,
        stop: threading.Event,
        periodic: Sequence[PeriodicJob] = (),
    ) -> None:
        """`stop` is also the backfill's sleep: setting it ends a throttle wait at once."""
        self._shared = shared
        self._backfiller = backfiller
        self._throttle = throttle
        self._storage = storage
        self._retirer = retirer
        self._progress = progress
        self._index_build = index_build
        self._old = old
        self._new = new
        self._batch_size = batch_size
        self._stop = stop
        self._periodic = tuple(periodic)
        self._thread: threading.Thread | None = None
        self._resting = True
        """Not started yet, or paused: the next working round resumes the throttle (a slow start)."""
        self._last_flush = time.monotonic()

    def run_once(self) -> int:
        """One unit of backfill work if the phase allows it; returns the documents processed."""
        phase = self._shared.phase()
        if phase in RESTING_PHASES:
            self._resting = True
            self._throttle.pause()
            # Dual writes go on while paused; their repair entries must not pile up until the resume.
            return self._backfiller.drain_repairs()[0] if phase is Phase.PAUSED else 0
        if self._resting:
            self._resting = False
            self._throttle.resume()
        if phase is Phase.OLD_RETIRED:
            # An application's table served in place is still written directly: its new rows need vectors.
            return (
                self._storage.drop_batch(self._batch_size * DROP_BATCHES)
                + self._backfiller.follow_changes()[0]
            )
        result = self._backfiller.step(include_slices=phase in SLICE_PHASES)
        retired = self._retirer.sweep() if self._retirer.traffic_on_new(phase) else 0
        self._index_build.tick(phase)
        return result.processed + retired

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="switchyard-backfill", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        self._last_flush = time.monotonic()
        while not self._stop.is_set():
            try:
                processed = self.run_once()
                self._progress.observe(self._backfiller.done_and_total()[0])
                self._flush_now_and_then()
                self._storage.sample()
                for job in self._periodic:
                    job()
            except Unavailable as exc:
                # The state store or an index is down: known, and the message says which; no traceback.
                log.warning("backfill step failed: %s; retrying in 1s", exc)
                processed = 0
                self._stop.wait(1.0)
            except Exception:
                # A failing target pauses the work, not the sidecar; the next round retries.
                log.exception("backfill step failed; retrying in 1s")
                processed = 0
                self._stop.wait(1.0)
            if processed == 0:
                self._stop.wait(0.2)

    def _flush_now_and_then(self) -> None:
        """Saves both graphs every FLUSH_INTERVAL_S: restarts replay less, and storage counts the whole graph."""
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_INTERVAL_S:
            self._last_flush = now
            self._old.index.flush()
            self._new.index.flush()
