"""What a plan says: each strategy's figures and timeline, and the recommendation."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.planning.inputs import TITLES, PlanInput, Strategy


@dataclass(frozen=True)
class TimelinePoint:
    t_s: float
    corpus_coverage: float
    traffic_coverage: float
    """Share of query traffic answered from documents the new model covers."""
    recall: float
    storage_bytes: float


@dataclass(frozen=True)
class StrategyPlan:
    strategy: Strategy
    full_coverage_s: float | None
    """None: not within the horizon."""
    traffic_target_s: float | None
    backfill_docs_per_s: float
    """The backfill's rate at the start, after writes, fan-out queries, the throttle and the rate limit."""
    throttle_share: float
    peak_storage_bytes: float
    peak_storage_ratio: float
    """Peak storage over one copy of today's index."""
    reembedded_docs: float
    """Existing documents embedded with the new model (backfill and lazy)."""
    dual_write_docs: float
    """Writes embedded with the new model during the migration (offline: replayed)."""
    query_embeds: float
    """Fanned-out queries embedded with the new model before cut-over."""
    embed_calls: float
    tokens: float
    """All new-model tokens until full coverage (or the horizon): re-embeds, dual writes, fan-out queries."""
    cost: float
    mean_recall: float
    """Time-averaged recall@10 over the comparison window (after cut-over: the curve at full coverage)."""
    min_recall: float
    serving_p99_ms: float
    latency_ok: bool
    notes: tuple[str, ...]
    timeline: tuple[TimelinePoint, ...]

    @property
    def title(self) -> str:
        return TITLES[self.strategy]


@dataclass(frozen=True)
class Plan:
    input: PlanInput
    strategies: tuple[StrategyPlan, ...]
    recommended: Strategy
    reason: str
    window_s: float
    """The common window over which mean recall is compared."""
    one_copy_bytes: float

    def get(self, strategy: Strategy) -> StrategyPlan:
        return next(s for s in self.strategies if s.strategy is strategy)
