"""Renders migrations for the terminal: a progress line with a bar (`migrate status --watch`), the full status
report, and the table of a sidecar's collections (`migrate collections`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from proxy._gen.switchyard.v1 import admin_service_pb2 as pb

BAR_WIDTH = 30
_AT_REST = ("planned", "old_retired", "rolled_back")
"""Phases in which no backfill runs: a watch has nothing to wait for there."""


def format_duration(seconds: float) -> str:
    if seconds < 0:
        return "--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def backfill_finished(status: pb.GetMigrationStatusResponse) -> bool:
    return status.backfill.complete or status.phase in _AT_REST


def progress_tenths(status: pb.GetMigrationStatusResponse) -> int:
    """Tenths of the backfill done: a log (not a terminal) gets a line each time this grows."""
    b = status.backfill
    return int(10 * b.done / b.total) if b.total else 10


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
    if b.direct_writes_pending:
        parts.append(f"direct writes {b.direct_writes_pending}")
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
        f"collection     {status.collection or '(default)'}",
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
        f"direct writes  {b.direct_writes_pending} waiting for their new vector (adopted table)",
        f"storage        old {_mib(status.storage.old_bytes)}, new {_mib(status.storage.new_bytes)}, "
        f"peak {status.storage.peak_ratio:.2f}x one copy ({status.storage.policy}"
        + (f", {status.storage.retired} retired)" if status.storage.retired else ")"),
        f"validation     {'passed' if status.promotion.last_report_passed else 'not passed yet'}",
    ]
    if status.search_index not in ("", "built"):
        lines.append(f"HNSW index     {status.search_index}; validated waits for it (build_index: deferred)")
    if status.HasField("new_model_load"):
        lines.append(f"embedding      {embedder_load_line(status.new_model_load)}")
    lines.append("history:")
    lines += [f"  {c.from_phase} -> {c.to_phase}  {c.reason}" for c in status.history] or ["  (none)"]
    if status.promotion.events:
        lines += ["promotion:"] + [f"  {event}" for event in status.promotion.events[-10:]]
    return "\n".join(lines)


def embedder_load_line(load: pb.EmbedderLoad) -> str:
    """The new model's remote API against its limits: in flight, concurrency, per-minute use, 429s."""
    rpm = f" of {load.requests_per_minute_budget:,.0f}" if load.requests_per_minute_budget else ""
    tpm = f" of {load.tokens_per_minute_budget:,.0f}" if load.tokens_per_minute_budget else ""
    cap = f", server takes {load.batch_cap} per request" if load.batch_cap else ""
    return (
        f"{load.model}: {load.in_flight} in flight, concurrency {load.concurrency}/{load.max_concurrency}, "
        f"{load.requests_last_minute:,} req/min{rpm}, {load.tokens_last_minute:,} tokens/min{tpm}, "
        f"{load.throttled} x 429, {load.retries} retries{cap}"
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def collection_lines(statuses: Mapping[str, pb.GetMigrationStatusResponse | None]) -> list[str]:
    """One progress line per collection, its name first (None: the collection has no migration)."""
    width = max((len(name) for name in statuses), default=0)
    return [
        f"{name:<{width}}  " + ("none (no migration)" if status is None else progress_line(status))
        for name, status in statuses.items()
    ]


def redraw(lines: Sequence[str], drawn: int, columns: int) -> str:
    """Terminal output that replaces the `drawn` lines written last with `lines` (cursor left below them).

    Lines are cut to the terminal's `columns`: a line that wrapped would take two rows, and moving up `drawn`
    rows would then overwrite the wrong ones."""
    up = f"\x1b[{drawn}F" if drawn else ""
    return up + "".join(line[: max(1, columns - 1)] + "\x1b[K\n" for line in lines)


_COLUMNS = ("collection", "default", "serving", "old -> new", "phase", "coverage", "backfill")
_RIGHT_ALIGNED = frozenset({"coverage", "backfill"})


def collections_table(collections: Sequence[pb.CollectionSummary]) -> str:
    """`migrate collections`: one row per collection, `*` marking the one an empty `--collection` acts on."""
    rows = [_COLUMNS] + [_collection_row(c) for c in collections]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column in _RIGHT_ALIGNED else cell.ljust(width)
            for column, cell, width in zip(_COLUMNS, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _collection_row(c: pb.CollectionSummary) -> tuple[str, ...]:
    migrating = bool(c.old_index)
    return (
        c.name,
        "*" if c.is_default else "",
        c.serving_index,
        f"{c.old_index} -> {c.new_index}" if migrating else "-",
        c.phase,
        f"{c.coverage:.1%}",
        f"{c.backfill_done}/{c.backfill_total}" if migrating else "-",
    )
