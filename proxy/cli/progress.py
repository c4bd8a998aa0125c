"""Renders a migration's status as one terminal line with a progress bar (for `migrate status --watch`)."""

from __future__ import annotations

from proxy._gen.switchyard.v1 import admin_service_pb2 as pb

BAR_WIDTH = 30


def format_duration(seconds: float) -> str:
    if seconds < 0:
        return "--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_line(status: pb.GetMigrationStatusResponse) -> str:
    b = status.backfill
    fraction = 1.0 if b.total == 0 else min(1.0, b.done / b.total)
    filled = int(fraction * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    parts = [
        f"{status.phase:<11}",
        f"[{bar}] {fraction:6.1%}",
        f"{b.done}/{b.total} docs",
        f"{b.rate:7.1f} docs/s",
        f"ETA {format_duration(b.eta_seconds)}",
        f"coverage {status.coverage:6.1%}",
        f"split {status.traffic_percent:.0f}%",
    ]
    if b.lazy_queue_depth:
        parts.append(f"lazy {b.lazy_queue_depth}")
    if b.pending_repairs:
        parts.append(f"repairs {b.pending_repairs}")
    if b.throttle_reason:
        parts.append(f"throttled: {b.throttle_reason}")
    return "  ".join(parts)


def _p99(b: pb.BackfillProgress) -> str:
    measured = f"{b.query_p99_ms:.1f} ms" if b.query_p99_ms else "too few queries yet"
    budget = f"budget {b.latency_budget_ms:g} ms" if b.latency_budget_ms else "no latency budget"
    return f"{measured} over the last 10 s ({budget})"


def status_report(status: pb.GetMigrationStatusResponse) -> str:
    b = status.backfill
    lines = [
        f"migration      {status.migration_id}",
        f"phase          {status.phase}",
        f"backfill       {b.done}/{b.total} docs, {b.rate:.1f} docs/s, ETA {format_duration(b.eta_seconds)}"
        + (" (complete)" if b.complete else ""),
        f"rate limit     {'unlimited' if b.rate_limit == 0 else f'{b.rate_limit:g} docs/s'}"
        + (f", throttled: {b.throttle_reason}" if b.throttle_reason else ""),
        f"query p99      {_p99(b)}",
        f"coverage       {status.coverage:.1%}",
        f"traffic split  {status.traffic_percent:g}% on the new path",
        f"lazy queue     {b.lazy_queue_depth}",
        f"repairs        {b.pending_repairs}",
        f"storage        old {_mib(status.storage.old_bytes)}, new {_mib(status.storage.new_bytes)}, "
        f"peak {status.storage.peak_ratio:.2f}x one copy ({status.storage.policy}"
        + (f", {status.storage.retired} retired)" if status.storage.retired else ")"),
        f"validation     {'passed' if status.promotion.last_report_passed else 'not passed yet'}",
        "history:",
    ]
    lines += [f"  {c.from_phase} -> {c.to_phase}  {c.reason}" for c in status.history] or ["  (none)"]
    if status.promotion.events:
        lines += ["promotion:"] + [f"  {event}" for event in status.promotion.events[-10:]]
    return "\n".join(lines)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
