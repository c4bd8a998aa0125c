"""A plan as text (inputs with their provenance, the strategy table, notes, the recommendation) and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from proxy.planning.inputs import TITLES, Measurements, PlanInput
from proxy.planning.model import REGIMES
from proxy.planning.results import Plan
from proxy.planning.units import format_bytes, format_count, format_duration

_COLUMNS = (
    ("strategy", 25),
    ("full coverage", 13),
    ("traffic", 9),
    ("backfill/s", 10),
    ("peak storage", 20),
    ("tokens", 9),
    ("cost", 10),
    ("recall mean/min", 15),
    ("p99 ms", 7),
)


def format_plan(result: Plan) -> str:
    return "\n".join(
        [*_header(result), "", *_inputs(result.input), "", *_table(result), "", *_footer(result)]
    )


def _header(result: Plan) -> list[str]:
    inp = result.input
    return [
        f"Migration plan: {inp.docs:,} docs, {inp.dim}-d, {inp.write_rate:g} writes/s, {inp.qps:g} qps, "
        f"p99 budget {inp.latency_budget_ms:g} ms, storage policy {inp.storage_policy.value}",
        f"One copy of today's index: {format_bytes(result.one_copy_bytes)} "
        f"({result.one_copy_bytes / inp.docs:,.0f} bytes per document)",
    ]


def _inputs(inp: PlanInput) -> list[str]:
    m = inp.measurements
    pipeline_source = (
        m.source_of("backfill_docs_per_s")
        if m.backfill_docs_per_s
        else f"derived: embed + insert + overhead, batches of {inp.batch_size}"
    )
    overhead_source = (
        "not used: backfill measured end to end"
        if m.backfill_docs_per_s
        else m.source_of("batch_overhead_ms")
    )
    dual_source = m.source_of("dual_p99_ms") if m.dual_p99_ms else "derived: dual p50 x single p99/p50"
    curve = " ".join(f"{c:.0%}:{r:.2f}" for c, r in inp.recall_curve)
    rows = [
        ("new-model embedding", f"{m.embed_docs_per_s:,.0f} docs/s", m.source_of("embed_docs_per_s")),
        ("index insert", f"{m.index_insert_docs_per_s:,.0f} docs/s", m.source_of("index_insert_docs_per_s")),
        ("batch overhead", f"{m.batch_overhead_ms:g} ms", overhead_source),
        ("backfill pipeline", f"{m.pipeline_docs_per_s(inp.batch_size):,.0f} docs/s", pipeline_source),
        ("query p50 / p99", f"{m.query_p50_ms:g} / {m.query_p99_ms:g} ms", _pair_source(m, "query")),
        ("dual p50", f"{m.dual_p50_ms:g} ms", m.source_of("dual_p50_ms")),
        ("dual p99", f"{m.dual_p99():.1f} ms", dual_source),
        ("latency throttle", *_throttle_input(m)),
        ("recall@10 by coverage", curve, inp.recall_curve_source),
        ("access skew", f"Zipf s={inp.zipf_s:g}, {inp.hits_per_query} hits/query", "given"),
        ("tokens", f"{inp.tokens_per_doc:g}/doc, {inp.tokens_per_query:g}/query", "given"),
    ]
    rows += _remote_rows(inp)
    return ["Inputs (measured = from a benchmark, given = on the command line, assumed = default):"] + [
        f"  {name:<22} {value:<46} {source}" for name, value, source in rows
    ]


def _remote_rows(inp: PlanInput) -> list[tuple[str, str, str]]:
    """Each limit of the remote API as docs/s, the binding one marked, and what would lift it."""
    if inp.remote is None:
        return []
    binding = inp.remote.binding(inp.tokens_per_doc)
    rows = [
        (
            f"remote: {limit.name}",
            f"{limit.docs_per_s:,.0f} docs/s" + ("  <- binds" if limit.name == binding.name else ""),
            f"given ({limit.how})",
        )
        for limit in inp.remote.limits(inp.tokens_per_doc)
    ]
    if binding.name == "concurrency" and len(rows) > 1:
        needed = inp.remote.needed_concurrency(inp.tokens_per_doc)
        rows.append(
            ("remote: to use budgets", f"--embed-concurrency {needed}", "derived: budgets / per-slot rate")
        )
    return rows


def _throttle_input(m: Measurements) -> tuple[str, str]:
    a = m.throttle_exponent()
    exponent = f"share = 1 - (p99 idle / budget)^{a:.2f}"
    if a == 1.0:
        return exponent, "assumed (a single queue)"
    measured = f"{m.throttled_share:.1%} at {m.throttled_budget_ratio:g}x"
    return f"{exponent} ({measured})", f"fitted to {m.source_of('throttled_share')}"


def _pair_source(m: Measurements, prefix: str) -> str:
    sources = {m.source_of(f"{prefix}_p50_ms"), m.source_of(f"{prefix}_p99_ms")}
    return sources.pop() if len(sources) == 1 else " / ".join(sorted(sources))


def _table(result: Plan) -> list[str]:
    target = f"{result.input.traffic_target:.0%} traffic"
    names = [target if name == "traffic" else name for name, _ in _COLUMNS]
    widths = [max(width, len(name)) for name, (_, width) in zip(names, _COLUMNS, strict=True)]
    lines = [_row(names, widths), _row(["-" * w for w in widths], widths)]
    for sp in result.strategies:
        mark = " *" if sp.strategy is result.recommended else ""
        cells = [
            sp.title + mark,
            format_duration(sp.full_coverage_s),
            format_duration(sp.traffic_target_s),
            f"{sp.backfill_docs_per_s:,.0f}" if REGIMES[sp.strategy].backfill else "-",
            f"{format_bytes(sp.peak_storage_bytes)} ({sp.peak_storage_ratio:.2f}x)",
            format_count(sp.tokens),
            f"${sp.cost:,.2f}",
            f"{sp.mean_recall:.3f}/{sp.min_recall:.3f}",
            f"{sp.serving_p99_ms:.1f}" + ("" if sp.latency_ok else "!"),
        ]
        lines.append(_row(cells, widths))
    return lines


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return f"{first:<{widths[0]}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(rest, widths[1:], strict=True))


def _footer(result: Plan) -> list[str]:
    lines = [
        f"traffic: time until {result.input.traffic_target:.0%} of query traffic is answered from documents "
        "the new model covers; recall: time-averaged over the first "
        f"{format_duration(result.window_s)} (after cut-over: the curve at 100%); ! = over the latency budget",
        "",
        "Notes:",
    ]
    for sp in result.strategies:
        lines += [f"  {sp.title}: {note}" for note in sp.notes]
    title = TITLES[result.recommended]
    return [*lines, "", f"Recommended: {title}. Why: {result.reason}."]


def plan_to_json(result: Plan) -> dict[str, Any]:
    data = asdict(result)
    data["input"]["measurements"]["provenance"] = dict(result.input.measurements.provenance)
    data["input"]["pipeline_docs_per_s"] = result.input.measurements.pipeline_docs_per_s(
        result.input.batch_size
    )
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain
