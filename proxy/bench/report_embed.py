"""Section 9 of BENCHMARKS.md: the backfill against a remote embedding server, by requests in flight and under a
requests-per-minute limit. Every figure comes from the run object."""

from __future__ import annotations

from proxy.bench import embed_concurrency as ec
from proxy.bench.report_sections import fmt_rate, fmt_ratio, missing_note, table, verdict
from proxy.bench.results import BenchRun

TITLE = "## 9. Remote embedding: concurrency and rate limits"


def embed_summary_rows(run: BenchRun) -> list[list[str]]:
    r = run.embed_concurrency
    if r is None:
        return []
    rows = [
        [
            f"Remote-embedder backfill / C x batch / delay, C = {row.concurrency}",
            fmt_ratio(row.ratio),
            f">= {ec.TARGET_THROUGHPUT_RATIO}",
            verdict(row.passed, row.ratio),
        ]
        for row in r.rows
    ]
    rows += [
        [
            f"Rate-limited backfill: steady requests/min / limit ({_told(limit)})",
            fmt_ratio(limit.ratio),
            f"{ec.TARGET_RATE_LOW} to 1.0",
            verdict(limit.passed, limit.ratio),
        ]
        for limit in r.rate_limits
    ]
    return rows


def _told(limit: ec.RateLimitRow) -> str:
    return "429 + rate-limit headers" if limit.headers else "429 + Retry-After only"


def embed_section(run: BenchRun) -> str:
    missing = missing_note(run, "embed_concurrency")
    if missing or run.embed_concurrency is None:
        return f"{TITLE}\n\n{missing}"
    r = run.embed_concurrency
    first = r.rows[0]
    intro = (
        "A backfill (Backfiller, hnswlib indexes, local state store, in the bench process) re-embeds through the"
        " OpenAI-compatible embedder, built from a `kind: openai` config with `max_concurrency: C`, against a"
        f" local server in a process of its own that answers each batch of {first.batch} after"
        f" {first.delay_ms:.0f} ms and serves at most C requests at once (the rest queue). The ceiling is"
        " C x batch / delay documents per second. *Once*: the server counted every document's text exactly"
        " once and the new index holds every document. Client and server are Python processes on this"
        " machine's cores: each request costs both some CPU, which lengthens every round trip when many are in"
        " flight on few cores (a GPU server's CPU is not the client's)."
    )
    rows = [
        [
            str(row.concurrency),
            f"{row.docs:,}",
            f"{row.seconds:.2f}",
            fmt_rate(row.docs_per_s),
            fmt_rate(row.ceiling_docs_per_s),
            fmt_ratio(row.ratio),
            str(row.peak_in_flight),
            "yes" if row.embedded_once else "**no**",
            verdict(row.passed, row.ratio),
        ]
        for row in r.rows
    ]
    header = ["C", "docs", "seconds", "docs/s", "ceiling docs/s", "ratio", "peak in flight", "once", "result"]
    first_limit = r.rate_limits[0]
    rate = (
        f"Rate limit: the server admits {first_limit.limit_rpm:.0f} requests a minute (enforced per"
        f" {first_limit.window_s:g}-second window) and answers the rest 429 with Retry-After; in the first run"
        " it also sends OpenAI's `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` headers on every answer, in"
        " the second only the 429s tell. The client has no budget configured (`max_concurrency:"
        f" {ec.RATE_LIMIT_CONCURRENCY}`). Steady rate: requests admitted per minute over the complete windows."
    )
    limit_rows = [
        [
            _told(limit),
            f"{limit.docs:,}",
            f"{limit.seconds:.1f}",
            str(limit.requests),
            str(limit.throttled),
            str(limit.complete_windows),
            f"{limit.steady_rpm:.0f}",
            fmt_ratio(limit.ratio),
            "yes" if limit.embedded_once else "**no**",
            verdict(limit.passed, limit.ratio),
        ]
        for limit in r.rate_limits
    ]
    limit_header = ["server tells", "docs", "seconds", "requests", "429s", "windows", "req/min", "/ limit"]
    limit_table = table([*limit_header, "once", "result"], limit_rows)
    return "\n\n".join(
        [
            TITLE,
            intro,
            table(header, rows),
            rate,
            limit_table,
            "Alone: `switchyard bench --sections embed_concurrency`.",
        ]
    )
