"""Argument checks shared by the StateStore adapters, so every backend rejects the same calls."""

from __future__ import annotations

import math


def require_positive(value: int, name: str) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def require_number(priority: float) -> None:
    # NaN has no order: Redis rejects it and SQLite would store it as NULL.
    if math.isnan(priority):
        raise ValueError("priority must be a number, got NaN")


def require_ttl(ttl_s: float) -> float:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    return ttl_s
