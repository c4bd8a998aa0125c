"""What one migration is told to do: plain values, read from the config by the app (proxy.app.wiring).

The migration package sees these rather than the pydantic config, so it depends on nothing above the core;
the config holds the defaults and the validation, and these hold only what the migration reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.migration.retirement import StoragePolicy


@dataclass(frozen=True)
class BackfillSettings:
    batch_size: int
    rate_limit: float
    """Documents per second; 0 means unlimited."""
    latency_budget_ms: float | None
    """Back off while query p99 over the recent window exceeds this; None: no latency throttling."""
    batch_time_ms: float
    """With a latency budget, a batch of a local model takes only as many documents as fit in this time."""
    lease_ttl_s: float
    slice_size: int


@dataclass(frozen=True)
class LazySettings:
    enabled: bool
    """Queue the documents queries touch that the new index does not cover yet, to move them first."""


@dataclass(frozen=True)
class GateSettings:
    """Thresholds a validation report and each promotion step must meet; None disables a gate."""

    min_coverage: float
    min_health_recall: float | None
    max_quality_drop: float | None
    max_error_rate: float | None
    max_p99_ms: float | None
    min_shadow_overlap: float | None


@dataclass(frozen=True)
class ValidationSettings:
    k: int
    health_sample: int
    """Documents of the new index used as self-queries to check its approximate search."""
    gates: GateSettings


@dataclass(frozen=True)
class PromotionSettings:
    auto: bool
    """Advance and roll back by itself while the migration is in phase `shifting`."""
    steps: tuple[float, ...]
    """Increasing traffic percentages."""
    min_dwell_s: float
    min_samples: int
    """New-path queries a step must see before it may advance."""
    interval_s: float


@dataclass(frozen=True)
class MigrationSettings:
    backfill: BackfillSettings
    lazy: LazySettings
    validation: ValidationSettings
    promotion: PromotionSettings
    storage_policy: StoragePolicy
