"""Which path serves a query: an override, no migration, or the sticky percentage split."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from proxy.core.model import RoutingMode

BUCKETS = 10_000
"""Split resolution: one bucket is 0.01 % of traffic."""

_SPLIT_TARGETS = (RoutingMode.DUAL, RoutingMode.NEW)


@dataclass(frozen=True)
class RoutingDecision:
    mode: RoutingMode
    reason: str
    """Why this mode was chosen, for logs, metrics and the response; a proxy must explain its routing."""


def bucket_of(routing_key: str) -> int:
    """Stable bucket in 0..BUCKETS-1 for a routing key.

    blake2b, not `hash()`: Python salts string hashes per process, and every replica of the proxy (and every
    restart) must put a key in the same bucket or users would flip between paths. Changing this function
    reshuffles every user mid-migration, so the tests pin its output.
    """
    digest = hashlib.blake2b(routing_key.encode("utf-8"), digest_size=8).digest()
    # 2**64 buckets folded onto 10_000: the modulo bias is below 1e-15, far under any measurable skew.
    return int.from_bytes(digest, "big") % BUCKETS


def route(
    routing_key: str,
    percent: float,
    new_path: RoutingMode,
    override: RoutingMode | None,
    migration_active: bool,
) -> RoutingDecision:
    """Decides the path for one query.

    A key goes to `new_path` when its bucket is below `percent * 100`. The threshold only grows with the
    percent, so raising the split moves keys from old to new and never back, and a key stays on its side
    for as long as the percent holds (sticky). An empty `routing_key` is hashed like any other key, so
    every keyless request would share one bucket; the service substitutes a random key per request instead.
    """
    _check_split(percent, new_path)
    if not migration_active:
        return RoutingDecision(RoutingMode.OLD, "no migration: the serving index answers")
    if override is not None:
        return RoutingDecision(override, f"override: the request asked for {override.value}")
    return _split(routing_key, percent, new_path)


def _check_split(percent: float, new_path: RoutingMode) -> None:
    # Checked even without a migration so a bad value surfaces when configured, not when a migration starts.
    if math.isnan(percent) or not 0.0 <= percent <= 100.0:
        raise ValueError(f"traffic percent must be within [0, 100], got {percent}")
    if new_path not in _SPLIT_TARGETS:
        valid = ", ".join(m.value for m in _SPLIT_TARGETS)
        raise ValueError(f"new_path must be one of {valid}, got {new_path.value}")


def _split(routing_key: str, percent: float, new_path: RoutingMode) -> RoutingDecision:
    bucket = bucket_of(routing_key)
    threshold = percent * BUCKETS / 100.0
    if bucket < threshold:
        return RoutingDecision(new_path, f"split bucket {bucket} < {threshold:g} ({percent:g}%)")
    return RoutingDecision(RoutingMode.OLD, f"split bucket {bucket} >= {threshold:g} ({percent:g}%)")
