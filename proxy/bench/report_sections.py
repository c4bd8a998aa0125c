"""The seven measured sections of BENCHMARKS.md, one function each, and the Markdown cells and tables they share.

Every figure comes from the run object; nothing here is typed in by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from proxy.bench import backfill, fanout, overhead, second_collection
from proxy.bench.results import BenchRun
from proxy.bench.stats import LatencySummary, ratio

# -- cells and tables ---------------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def fmt_ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def side_by_side_cells(concurrency: int, a: LatencySummary, b: LatencySummary) -> list[str]:
    """The columns every side-by-side table opens with: clients, a's p50/p99/QPS, b's, and b over a."""
    return [
        str(concurrency),
        fmt_ms(a.p50_ms),
        fmt_ms(a.p99_ms),
        fmt_rate(a.qps),
        fmt_ms(b.p50_ms),
        fmt_ms(b.p99_ms),
        fmt_rate(b.qps),
        fmt_ratio(ratio(b.p50_ms, a.p50_ms)),
        fmt_ratio(ratio(b.p99_ms, a.p99_ms)),
        fmt_ratio(ratio(b.qps, a.qps)),
    ]


def verdict(passed: bool, value: float) -> str:
    return "n/a" if math.isnan(value) else ("pass" if passed else "**miss**")


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def failure_notes(measured: Iterable[tuple[str, LatencySummary]]) -> str:
    """A note under a table for every measurement where calls failed: failures are results too."""
    notes = [
        f"\n\n**{name}: {m.errors:,} of {m.errors + m.count:,} calls failed** (first: `{m.first_error}`)."
        for name, m in measured
        if m.errors
    ]
    return "".join(notes)


def missing_note(run: BenchRun, section: str) -> str | None:
    if section in run.errors:
        return f"**Failed in this run:** `{run.errors[section]}`"
    if section not in run.settings.sections:
        return f"Not run (`--sections` left out `{section}`)."
    return None


# -- sections -----------------------------------------------------------------------------------------


def overhead_section(run: BenchRun) -> str:
    title = "## 1. Proxy overhead"
    missing = missing_note(run, "overhead")
    if missing or run.overhead is None:
        return f"{title}\n\n{missing}"
    r = run.overhead
    intro = (
        f"Vector queries (k=10, caller-supplied hash-a vectors) against {r.corpus:,} documents, dim {r.dim}:"
        " a sidecar process in `old` mode (no migration config) vs. `proxy/bench/baseline_server.py`, a bare"
        " grpc.aio server running `knn_query` on the same graph file (same M, ef_construction, ef_search)"
        " off the event loop and returning ids and scores. Both use the same request/response messages;"
        " the load generator is a separate process (grpc.aio, N concurrent tasks)."
    )
    rows = [
        [
            *side_by_side_cells(x.concurrency, x.baseline, x.sidecar),
            f"{x.baseline.server_cpu_ms_per_request:.2f} / {x.sidecar.server_cpu_ms_per_request:.2f}",
            verdict(x.passed, x.p50_ratio),
        ]
        for x in r.rows
    ]
    header = [
        "clients",
        "bare p50 ms",
        "bare p99 ms",
        "bare QPS",
        "sidecar p50 ms",
        "sidecar p99 ms",
        "sidecar QPS",
        "p50 ratio",
        "p99 ratio",
        "QPS ratio",
        "server CPU ms/query (bare / sidecar)",
        f"p50 <= {overhead.TARGET_P50_RATIO}",
    ]
    failures = failure_notes(
        (f"{side}, {x.concurrency} client(s)", m)
        for x in r.rows
        for side, m in (("bare", x.baseline), ("sidecar", x.sidecar))
    )
    return f"{title}\n\n{intro}\n\n{table(header, rows)}{failures}"


def fanout_section(run: BenchRun) -> str:
    title = "## 2. Fan-out"
    missing = missing_note(run, "fanout")
    if missing or run.fanout is None:
        return f"{title}\n\n{missing}"
    r = run.fanout
    intro = (
        f"Text queries (k=10) against a migration with both indexes complete ({r.corpus:,} documents each,"
        f" dim {r.dim}, backfill finished), pinned per request to `old`, `new` and `dual`"
        f" (merge `{r.merge}`). Each leg embeds the text with its own model, so `dual` embeds twice."
        " Vector queries cannot fan out: a vector belongs to one model's space, so only its own leg runs."
        " The legs overlap only on a core that would idle otherwise: once the clients keep every core busy"
        " (the load generator shares them), a query waits mostly for CPU, so the p50 ratio follows the CPU"
        " ratio, and a dual query does two embeddings and two graph searches where a single leg does one."
    )
    rows = [
        [
            str(x.concurrency),
            fmt_ms(x.old.p50_ms),
            fmt_ms(x.new.p50_ms),
            fmt_ms(x.dual.p50_ms),
            fmt_ms(x.dual.p99_ms),
            fmt_rate(x.dual.qps),
            " / ".join(f"{leg.server_cpu_ms_per_request:.2f}" for leg in (x.old, x.new, x.dual)),
            fmt_ratio(x.cpu_ratio),
            fmt_ratio(x.p50_ratio),
            verdict(x.passed, x.p50_ratio),
        ]
        for x in r.rows
    ]
    header = [
        "clients",
        "old p50 ms",
        "new p50 ms",
        "dual p50 ms",
        "dual p99 ms",
        "dual QPS",
        "sidecar CPU ms/query (old / new / dual)",
        "dual / slower leg CPU",
        "dual / slower leg p50",
        f"<= {fanout.TARGET_P50_RATIO}",
    ]
    failures = failure_notes(
        (f"{mode}, {x.concurrency} client(s)", getattr(x, mode)) for x in r.rows for mode in fanout.MODES
    )
    return f"{title}\n\n{intro}\n\n{table(header, rows)}{failures}"


def backfill_section(run: BenchRun) -> str:
    title = "## 3. Backfill"
    missing = missing_note(run, "backfill")
    if missing or run.backfill is None:
        return f"{title}\n\n{missing}"
    r = run.backfill
    insert = run.base.insert_docs_per_s if run.base else None
    throughput = table(
        [
            "new model",
            "docs",
            "batch",
            "raw embed docs/s",
            "backfill docs/s",
            "ratio",
            f">= {backfill.TARGET_THROUGHPUT_RATIO}",
            "raw insert docs/s",
            "backfill / (embed, then insert)",
            "wall s",
        ],
        [
            [
                v.model,
                f"{v.throughput.docs:,}",
                str(v.throughput.batch_size),
                fmt_rate(v.throughput.embed_docs_per_s),
                fmt_rate(v.throughput.backfill_docs_per_s),
                fmt_ratio(v.throughput.ratio),
                verdict(v.throughput.passed, v.throughput.ratio),
                fmt_rate(insert) if insert else "-",
                fmt_ratio(v.throughput.stage_ratio(insert)) if insert else "-",
                f"{v.throughput.backfill_wall_s:.1f}",
            ]
            for v in r.variants
        ],
    )
    throttled = table(
        [
            "new model",
            "batch",
            "budget ms",
            "rate limit",
            "clients",
            "idle p50 ms",
            "idle p99 ms",
            "busy p50 ms",
            "busy p99 ms",
            "p99 ratio",
            f"<= {backfill.TARGET_P99_RATIO}",
            "p99 ratio per round",
            "backfill docs/s while busy",
            "share of unloaded docs/s",
            "duty after each busy phase",
            "throttle at the end",
        ],
        [
            [
                v.model,
                str(q.batch_size),
                f"{q.latency_budget_ms:g}",
                f"{q.rate_limit:g}" if q.rate_limit else "none",
                str(q.clients),
                fmt_ms(q.idle.p50_ms),
                fmt_ms(q.idle.p99_ms),
                fmt_ms(q.busy.p50_ms),
                fmt_ms(q.busy.p99_ms),
                fmt_ratio(q.p99_ratio),
                verdict(q.passed, q.p99_ratio),
                " / ".join(fmt_ratio(r) for r in q.round_ratios),
                fmt_rate(q.backfill_docs_per_s_busy),
                f"{v.throttled_share:.1%}" if math.isfinite(v.throttled_share) else "n/a: rate-limited",
                " / ".join(f"{d:.0%}" for d in q.duties),
                q.last_reason + ("" if q.overlapped else " (backfill ended early)"),
            ]
            for v in r.variants
            for q in [v.throttled]
        ],
    )
    intro = (
        "Throughput: a sidecar re-embeds index A into an empty B with no query load (docs/s from the first"
        " progress to `complete`, so the first batch is left out); the raw figure is a fresh embedder of the"
        " same model embedding the same texts in the same batches in the benchmark process, and nothing"
        " else (its first batch left out too, as a warm-up), once before the backfill and once after, combined."
        " A backfill embeds a batch and then inserts it, so"
        " when the embedder is faster than the index (the hashing model) the insert bounds it: raw insert is"
        ' the base corpus load through the same adapter (under "Time per section"), and the last ratio'
        " compares the backfill with both stages run one after the other, 1 / (1/embed + 1/insert)."
    )
    during = (
        "Query latency: vector queries on the old path from several concurrent clients; idle phases (before"
        " the start, and while paused) alternate with busy phases (backfill running), at the config's default"
        " batch size. `backfill.latency_budget_ms` is set as an operator would, before the backfill starts and"
        f" through the config file (hot reload), to {backfill.BUDGET_OVER_IDLE:g} times the query p99 the"
        " sidecar reports after the first idle phase (`migrate status`: from the gRPC handler to the"
        " response, waiting for a worker thread included, so below the client-side figures here), after an"
        " unmeasured warm-up as long as the sidecar's latency window. With the budget the throttle sets the"
        " backfill's duty (the share of the time it works) and sizes batches to `batch_time_ms` (100 ms), so"
        " the batch column is only their upper bound. The p99 ratio is over all rounds together; the ratio of"
        " each round on its own shows how far one 5-s figure moves. The share of unloaded docs/s (busy docs/s"
        " over the throughput run's) is what `switchyard plan --from-bench` fits its latency throttle to; a"
        f" single queue would predict 1 - 1/{backfill.BUDGET_OVER_IDLE:g} ="
        f" {1 - 1 / backfill.BUDGET_OVER_IDLE:.1%}. A rate limit is set only when the corpus is too small for"
        " the backfill to outlast the busy phases."
    )
    notes = "".join(f"\n\n_{n}_" for n in r.notes)
    notes += failure_notes(
        (f"{v.model}, {name}", m)
        for v in r.variants
        for name, m in (("idle", v.throttled.idle), ("busy", v.throttled.busy))
    )
    return f"{title}\n\n{intro}\n\n{throughput}\n\n{during}\n\n{throttled}{notes}"


def storage_section(run: BenchRun) -> str:
    title = "## 5. Storage"
    missing = missing_note(run, "storage")
    if missing or run.storage is None:
        return f"{title}\n\n{missing}"
    r = run.storage
    intro = (
        f"Bytes on disk of index A plus index B (every file in each index directory, as"
        f" `HnswIndex.storage_bytes()` counts them), sampled every 0.1 s during a backfill of {r.corpus:,}"
        f" documents (dim {r.dim}) and once more after the sidecar saved its graphs on stop. One copy is A"
        " before the migration. `keep_old` reuses the backfill section's throughput run (or runs on its"
        " own); `retire_as_you_go` runs with the whole traffic split on the new path (old copies are retired"
        " only then) and is sampled until retiring stops. The sidecar's own storage tracker"
        " (`status.storage`) is shown as a cross-check."
    )
    rows = [
        [
            s.policy,
            fmt_bytes(s.one_copy_bytes),
            fmt_bytes(s.peak_bytes),
            fmt_bytes(s.final_bytes),
            fmt_ratio(s.peak_ratio),
            fmt_ratio(s.sidecar_peak_ratio),
            f"{s.retired:,}",
            f"{s.samples} samples",
        ]
        for s in r.rows
    ]
    header = [
        "policy",
        "one copy",
        "peak A+B",
        "A+B after stop",
        "peak / one copy",
        "sidecar's own peak ratio",
        "old copies retired",
        "note",
    ]
    return f"{title}\n\n{intro}\n\n{table(header, rows)}"


def scale_section(run: BenchRun) -> str:
    title = "## 6. Scale"
    missing = missing_note(run, "scale")
    if missing or run.scale is None:
        return f"{title}\n\n{missing}"
    r = run.scale
    dims = sorted({x.dim for x in r.rows})
    intro = (
        "Random unit vectors with synthetic texts, written through `HnswIndex.upsert` in batches of 10,000"
        f" (dims used: {', '.join(map(str, dims))}; sizes above {run.settings.large_threshold:,} use dim"
        f" {run.settings.large_dim} to keep load time and memory sane). B is a copy of A, so `dual` runs two"
        " equally large legs. Queries go through a sidecar process: vector queries on one leg (1 client, and"
        " the number in brackets for QPS), text queries for old/new/dual (1 client). Backfill docs/s is"
        f" measured over the first {r.backfill_window_s:g} s of a real backfill of A into an empty B."
    )
    figures = table(
        [
            "vectors",
            "dim",
            "insert docs/s",
            "bytes/vector",
            "single p50 ms",
            "single p99 ms",
            "single QPS (many clients)",
            "dual p50 ms (text)",
            "dual / slower leg",
            "backfill docs/s",
        ],
        [
            [
                f"{x.size:,}",
                str(x.dim),
                fmt_rate(x.insert_docs_per_s),
                f"{x.bytes_per_vector:,.0f}",
                fmt_ms(x.single.p50_ms),
                fmt_ms(x.single.p99_ms),
                f"{fmt_rate(x.single_loaded.qps)} ({x.loaded_clients})",
                fmt_ms(x.dual.p50_ms),
                fmt_ratio(x.dual_ratio),
                fmt_rate(x.backfill_docs_per_s),
            ]
            for x in r.rows
        ],
    )
    loading = table(
        ["vectors", "build s (vectors, upsert, save graph)", "copy A to B s", "sidecar open s"],
        [[f"{x.size:,}", f"{x.build_s:.1f}", f"{x.copy_s:.1f}", f"{x.open_s:.1f}"] for x in r.rows],
    )
    failures = failure_notes(
        (f"{x.size:,} vectors, {name}", m)
        for x in r.rows
        for name, m in (
            ("single leg", x.single),
            ("single leg, many clients", x.single_loaded),
            ("old", x.old_text),
            ("new", x.new_text),
            ("dual", x.dual),
        )
    )
    return f"{title}\n\n{intro}\n\n{figures}{failures}\n\nLoading time:\n\n{loading}"


def collections_section(run: BenchRun) -> str:
    title = "## 7. Collections"
    missing = missing_note(run, "collections")
    if missing or run.collections is None:
        return f"{title}\n\n{missing}"
    r = run.collections
    intro = (
        f"Vector queries (k=10, hash-a vectors) against collection `{second_collection.QUERIED}`"
        f" ({r.corpus:,} documents, dim {r.dim}) of two sidecar processes running side by side: one serves"
        f" that collection alone, the other serves it and a second collection, `{second_collection.IDLE}`,"
        f" with an index of its own ({r.idle_docs:,} documents, its own model) and a migration in phase"
        f" `{r.idle_phase}`: its models, index, controller and worker are there, nothing queries it. Every"
        " request names its collection. The load generator alternates between the two sidecars, rotating"
        f" which goes first, {r.rounds} x {r.round_s:g} s on each per client count. Resident memory after"
        f" the load: {r.rss_mib[0]:.0f} MiB (one collection), {r.rss_mib[1]:.0f} MiB (two)."
    )
    rows = [
        [
            *side_by_side_cells(x.concurrency, x.one, x.two),
            f"{x.one.server_cpu_ms_per_request:.2f} / {x.two.server_cpu_ms_per_request:.2f}",
            verdict(x.passed, x.p50_ratio),
            " / ".join(fmt_ratio(r) for r in x.round_ratios),
        ]
        for x in r.rows
    ]
    header = [
        "clients",
        "one p50 ms",
        "one p99 ms",
        "one QPS",
        "two p50 ms",
        "two p99 ms",
        "two QPS",
        "p50 ratio (two / one)",
        "p99 ratio",
        "QPS ratio",
        "sidecar CPU ms/query (one / two)",
        f"p50 <= {second_collection.TARGET_P50_RATIO}",
        "p50 ratio per round",
    ]
    failures = failure_notes(
        (f"{side}, {x.concurrency} client(s)", m)
        for x in r.rows
        for side, m in (("one", x.one), ("two", x.two))
    )
    targets = "\n".join(
        f"- target: p50 ratio <= {second_collection.TARGET_P50_RATIO} at {x.concurrency} client(s):"
        f" {fmt_ratio(x.p50_ratio)}, {verdict(x.passed, x.p50_ratio)}"
        for x in r.rows
    )
    command = "Alone: `switchyard bench --sections collections`."
    return f"{title}\n\n{intro}\n\n{table(header, rows)}{failures}\n\n{targets}\n\n{command}"
