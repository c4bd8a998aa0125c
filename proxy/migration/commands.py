"""Operator commands on the migration: start, pause, resume, phase changes, rate, split, latency budget."""

from __future__ import annotations

import logging
from collections.abc import Callable

from proxy.core.binding import IndexBinding
from proxy.core.errors import FailedPrecondition, InvalidArgument
from proxy.core.ports import SearchIndexState
from proxy.migration.coverage import CoverageGauge
from proxy.migration.phases import MigrationState, Phase, parse_phase, pause, resume, transition
from proxy.migration.retirement import StorageTracker
from proxy.migration.snapshot import SharedState
from proxy.migration.state import MigrationRecord
from proxy.migration.throttle import AdaptiveThrottle

log = logging.getLogger(__name__)

_NEED_SEARCH_INDEX = frozenset({Phase.VALIDATED, Phase.SHIFTING, Phase.CUT_OVER})
"""Phases refused while the new index's deferred HNSW index is not built (`index_build`)."""

Step = Callable[[MigrationState, float], MigrationState]
"""A phase change: (current state, wall-clock time) -> new state."""


class MigrationCommands:
    """Changes to the shared state go to the store (every replica follows); the throttle's budget and batch
    time are this replica's own."""

    def __init__(
        self,
        record: MigrationRecord,
        shared: SharedState,
        storage: StorageTracker,
        coverage: CoverageGauge,
        throttle: AdaptiveThrottle,
        old: IndexBinding,
        backfill_complete: Callable[[], bool],
        default_traffic_percent: float,
        search_index_pending: Callable[[], SearchIndexState | None] = lambda: None,
    ) -> None:
        """`search_index_pending`: the new index's deferred HNSW index while it is not built (`index_build`)."""
        self._record = record
        self._shared = shared
        self._storage = storage
        self._coverage = coverage
        self._throttle = throttle
        self._old = old
        self._backfill_complete = backfill_complete
        self._default_percent = default_traffic_percent
        self._search_index_pending = search_index_pending

    def start(self) -> MigrationState:
        state = self._shared.read(fresh=True).state
        if state.phase is Phase.PAUSED:
            return self.resume()
        if state.phase in (Phase.BACKFILLING, Phase.VALIDATED, Phase.SHIFTING):
            return state
        self._storage.start()
        return self._change(Phase.BACKFILLING, "started by operator")

    def pause(self) -> MigrationState:
        return self._apply(lambda s, at: pause(s, at=at))

    def resume(self) -> MigrationState:
        return self._apply(lambda s, at: resume(s, at=at))

    def transition(self, to_phase: str, force: bool = False, reason: str = "") -> MigrationState:
        return self._change(parse_phase(to_phase), reason, force)

    def set_rate(self, docs_per_second: float) -> float:
        if docs_per_second < 0:
            raise InvalidArgument(f"docs_per_second must be >= 0 (0 = unlimited), got {docs_per_second}")
        self._record.set_float("rate_limit", docs_per_second)
        self._throttle.set_rate_limit(docs_per_second)
        return docs_per_second

    def set_latency_budget(self, budget_ms: float | None) -> None:
        """This replica's query p99 budget for the backfill (None: no latency throttling).

        Not shared through the state store like the rate limit: each replica throttles on its own latency.
        """
        if budget_ms is not None and not budget_ms > 0:
            raise InvalidArgument(f"latency budget must be > 0 ms, got {budget_ms}")
        self._throttle.set_latency_budget(None if budget_ms is None else budget_ms / 1000)

    def set_batch_time(self, batch_time_ms: float) -> None:
        """How long one backfill batch of a local model may work under a latency budget (this replica)."""
        if not batch_time_ms > 0:
            raise InvalidArgument(f"batch time must be > 0 ms, got {batch_time_ms}")
        self._throttle.set_batch_time(batch_time_ms / 1000)

    def set_traffic_percent(self, percent: float) -> float:
        if not 0.0 <= percent <= 100.0:
            raise InvalidArgument(f"percent must be between 0 and 100, got {percent}")
        self._record.set_float("traffic_percent", percent)
        self._shared.expire()
        return percent

    def traffic_percent(self) -> float:
        return self._record.get_float("traffic_percent", self._default_percent)

    def report_passed(self) -> bool:
        return self._record.validation_passed()

    def search_index_pending(self) -> SearchIndexState | None:
        """The new index's deferred HNSW index while it is not built; None once it is (or none is deferred)."""
        return self._search_index_pending()

    def _change(self, to: Phase, reason: str, force: bool = False) -> MigrationState:
        if to is Phase.ROLLED_BACK and not force and self._storage.retired_count():
            raise FailedPrecondition(
                f"{self._storage.retired_count()} documents were retired from {self._old.name} "
                "(storage_policy retire_as_you_go): the old index alone would miss them; force to roll back anyway"
            )
        if to in (Phase.VALIDATED, Phase.CUT_OVER) and not force and (behind := self._coverage.rows_behind()):
            raise FailedPrecondition(
                f"{to.value} needs a current new-model vector for every row of the adopted table; {behind} rows"
                " were written directly since the backfill passed them (or deleted) and wait for the worker,"
                " which catches up within seconds: check `switchyard migrate status` and try again"
            )
        if (
            # Shifting too: it sends traffic to the new index, which answers from a table scan until the build.
            to in _NEED_SEARCH_INDEX and not force and (unbuilt := self._search_index_pending())
        ):
            raise FailedPrecondition(
                f"{to.value} needs the new index's HNSW index, whose build was deferred to the end of the"
                f" backfill; it is {unbuilt.describe()}. The worker builds it once the backfill completes: check"
                " `switchyard migrate status` and try again"
            )
        coverage = self._coverage.exact(self._backfill_complete)
        passed = self.report_passed()
        return self._apply(
            lambda s, at: transition(
                s, to, coverage=coverage, at=at, reason=reason, force=force, report_passed=passed
            )
        )

    def _apply(self, step: Step) -> MigrationState:
        self._shared.read(fresh=True)  # a store that lost its state gets it back before it is changed
        state = self._record.change(step)
        self._shared.expire()
        log.info("migration phase -> %s", state.phase.value)
        return state
