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
    limit = r.rate_limit
    rows.append(
        [
            "Rate-limited backfill: steady requests/min / limit",
            fmt_ratio(limit.ratio),
            f"{ec.TARGET_RATE_LOW} to 1.0",
            verdict(limit.passed, limit.ratio),
        ]
    )
    return rows


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
        " once and the new index holds every document."
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
    limit = r.rate_limit
    rate = (
        f"Rate limit: the server admits {limit.limit_rpm:.0f} requests a minute (enforced per"
        f" {limit.window_s:g}-second window) and answers the rest 429 with Retry-After and `x-ratelimit-*`"
        f" headers; the client has no budget configured (`max_concurrency: {ec.RATE_LIMIT_CONCURRENCY}`) and"
        f" learns the limit from the answers. {limit.docs:,} documents in {limit.seconds:.1f} s,"
        f" {limit.requests} requests answered, {limit.throttled} of them 429. Over the {limit.complete_windows}"
        f" complete windows: **{limit.steady_rpm:.0f} requests/min, {fmt_ratio(limit.ratio)} of the limit**"
        f" (target {ec.TARGET_RATE_LOW} to 1.0): {verdict(limit.passed, limit.ratio)}; every document embedded"
        f" once: {'yes' if limit.embedded_once else '**no**'}."
    )
    return "\n\n".join(
        [TITLE, intro, table(header, rows), rate, "Alone: `switchyard bench --sections embed_concurrency`."]
    )
