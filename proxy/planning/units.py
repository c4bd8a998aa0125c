"""Durations, byte counts and large counts in the words the planner's report and notes use."""

from __future__ import annotations

DAY_S = 86_400.0


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", DAY_S), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size * (2 if unit == "d" else 1):
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def format_bytes(count: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def format_count(count: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count:.0f}"
