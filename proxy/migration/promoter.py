"""Validation reports and progressive promotion of the new index, manual or automatic."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from proxy.core.binding import IndexBinding
from proxy.core.errors import FailedPrecondition
from proxy.core.ports import StateStore
from proxy.migration.commands import MigrationCommands
from proxy.migration.phases import MigrationState, Phase
from proxy.migration.promotion import Action, Decision, decide, next_step
from proxy.migration.query_stats import QueryStats
from proxy.migration.settings import PromotionSettings, ValidationSettings
from proxy.migration.shadow import ShadowRecorder
from proxy.migration.state import MigrationRecord
from proxy.migration.validation import (
    GoldenQuery,
    GoldenScore,
    ValidationReport,
    build_report,
    evaluate_gates,
    index_health,
    score_golden,
)

log = logging.getLogger(__name__)

PROMOTION_KEY = "promotion"
PROMOTION_LEASE = "promotion"
PROMOTION_EVENTS = "promotion:events"


class Promoter:
    def __init__(
        self,
        commands: MigrationCommands,
        record: MigrationRecord,
        store: StateStore,
        owner: str,
        old: IndexBinding,
        new: IndexBinding,
        measure_coverage: Callable[[], float],
        validation: ValidationSettings,
        promotion: PromotionSettings,
        stats: QueryStats,
        shadow: ShadowRecorder,
        golden: Sequence[GoldenQuery],
    ) -> None:
        """`measure_coverage` measures it now (a report must not quote a cached value)."""
        self._commands = commands
        self._record = record
        self._store = store
        self._owner = owner
        self._old = old
        self._new = new
        self._measure_coverage = measure_coverage
        self.validation = validation
        self.promotion = promotion
        self.stats = stats
        self.shadow = shadow
        self.golden = list(golden)
        self._step_checks: dict[float, tuple[float | None, GoldenScore | None, GoldenScore | None]] = {}
        self._last_tick = 0.0

    # -- validation -----------------------------------------------------------------------------------

    def validate(self, golden: Sequence[GoldenQuery] | None = None) -> ValidationReport:
        """Builds the report and records whether it passed: cut-over requires a passing one."""
        if (unbuilt := self._commands.search_index_pending()) is not None:
            # Before the build the new index answers exactly, from a scan: a report would measure a recall the
            # graph that serves afterwards may not reach.
            raise FailedPrecondition(
                f"validation measures the new index's HNSW index, whose build was deferred; it is"
                f" {unbuilt.describe()}: validate once it is built (`switchyard migrate status`)"
            )
        v = self.validation
        report = build_report(
            self._old,
            self._new,
            coverage=self._measure_coverage(),
            shadow=self.shadow.summary(),
            golden=list(golden) if golden else self.golden,
            gates=v.gates,
            k=v.k,
            health_sample=v.health_sample,
        )
        self._record.record_validation(report.passed, report.at)
        return report

    def report_passed(self) -> bool:
        return self._record.validation_passed()

    # -- promotion ------------------------------------------------------------------------------------

    def promote(self, reason: str = "promoted by operator") -> float:
        """Moves traffic to the next configured step, entering `shifting` if needed."""
        phase = self._record.load().phase
        if phase in (Phase.BACKFILLING, Phase.VALIDATED, Phase.ROLLED_BACK):
            self._commands.transition(Phase.SHIFTING.value, reason=reason)
        elif phase is not Phase.SHIFTING:
            raise FailedPrecondition(
                f"cannot promote in phase {phase.value}; promote from validated or shifting"
            )
        target = next_step(self.promotion.steps, self._commands.traffic_percent())
        if target is None:
            raise FailedPrecondition("already at the last step; cut over next (`switchyard migrate cutover`)")
        self._enter_step(target, reason)
        return target

    def rollback(self, reason: str, force: bool = False) -> MigrationState:
        """All traffic back to the old index at once, and the reason recorded in the history."""
        state = self._commands.transition(Phase.ROLLED_BACK.value, force=force, reason=reason)
        self._commands.set_traffic_percent(0.0)
        self._event(f"rollback: {reason}")
        log.warning("migration rolled back: %s", reason)
        return state

    def step_started_at(self) -> float:
        return float(self._store.get_fields(PROMOTION_KEY).get("step_started_at", "0") or 0)

    def events(self) -> list[str]:
        return self._store.events(PROMOTION_EVENTS)

    def tick(self) -> Decision | None:
        """One automatic promotion decision, at most every `interval_s`, by the replica holding the lease."""
        cfg = self.promotion
        now = time.time()
        if not cfg.auto or now - self._last_tick < cfg.interval_s:
            return None
        self._last_tick = now
        if self._record.load().phase is not Phase.SHIFTING:
            return None
        if not self._store.try_lease(PROMOTION_LEASE, self._owner, cfg.interval_s * 3):
            return None
        decision = self.evaluate(now)
        self._act(decision)
        return decision

    def evaluate(self, now: float) -> Decision:
        percent = self._commands.traffic_percent()
        started = self.step_started_at() or now
        window = self.stats.since(started)
        health, golden_old, golden_new = self._checks_for(percent, window.samples)
        gates = evaluate_gates(
            self.validation.gates,
            coverage=None,
            health_recall=health,
            golden_old=golden_old,
            golden_new=golden_new,
            error_rate=window.error_rate if window.samples else None,
            p99_ms=window.p99_ms,
            shadow_overlap=None,
        )
        return decide(percent, now - started, window.samples, gates, self.promotion)

    def _checks_for(
        self, percent: float, samples: int
    ) -> tuple[float | None, GoldenScore | None, GoldenScore | None]:
        """Index health and golden-set quality, computed once per step (they are costly and change slowly)."""
        if percent not in self._step_checks:
            v = self.validation
            health = index_health(self._new, v.health_sample, v.k)
            golden = self.golden
            old = score_golden(self._old, golden, v.k) if golden else None
            new = score_golden(self._new, golden, v.k) if golden else None
            self._step_checks = {percent: (health, old, new)}
        return self._step_checks[percent]

    def _act(self, decision: Decision) -> None:
        if decision.action is Action.ADVANCE:
            self._enter_step(decision.to_percent, decision.reason)
        elif decision.action is Action.ROLLBACK:
            self.rollback(decision.reason, force=True)
        elif decision.action is Action.COMPLETE:
            self._event(decision.reason)

    def _enter_step(self, percent: float, reason: str) -> None:
        self._commands.set_traffic_percent(percent)
        self._store.set_fields(PROMOTION_KEY, {"step_started_at": repr(time.time())})
        self._event(f"step {percent:g}%: {reason}")
        log.info("promotion: %s", reason)

    def _event(self, text: str) -> None:
        self._store.append_event(PROMOTION_EVENTS, f"{time.time():.3f} {text}")
