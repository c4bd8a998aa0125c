"""Section 4 of BENCHMARKS.md (recall against a full re-index) and its summary rows: the coverage guard's
low-coverage check, candidate re-ranking against its exact ceiling and the best merge, embeddings per query,
added latency and the budget. Every figure comes from the run object."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.bench.recall import NAIVE, OLD_ONLY, RecallRow, format_embedded_table, format_table
from proxy.bench.report_sections import fmt_ratio, missing_note, table, verdict
from proxy.bench.rerank import CEILING, RerankLatency, rerank_column
from proxy.bench.results import BenchRun, RecallResult
from proxy.core.merge import MERGE_STRATEGIES

LOW_COVERAGES = (0.01, 0.02, 0.05, 0.1)
CEILING_COVERAGE = 0.25
TARGET_CEILING_RATIO = 0.9
TARGET_BUDGET_RATIO = 1.1
RERANK_K = 50


def worst_low_coverage_ratio(rows: Sequence[RecallRow]) -> float:
    """The lowest merge recall / old-only recall at 1, 2, 5 and 10% coverage (>= 1: never worse)."""
    return min(
        row.recall[m] / row.recall[OLD_ONLY]
        for row in rows
        if any(abs(row.coverage - c) < 1e-9 for c in LOW_COVERAGES)
        for m in MERGE_STRATEGIES
        if m in row.recall
    )


def ceiling_ratio(rows: Sequence[RecallRow]) -> float:
    row = next(r for r in rows if abs(r.coverage - CEILING_COVERAGE) < 1e-9)
    return row.recall[rerank_column(RERANK_K)] / row.recall[CEILING]


def margin_over_best_merge(rows: Sequence[RecallRow]) -> float:
    """min over coverages of (re-rank k'=50 recall - the best merge's): >= 0 means never worse."""
    return min(
        row.recall[rerank_column(RERANK_K)] - max(row.recall[m] for m in MERGE_STRATEGIES if m in row.recall)
        for row in rows
    )


def rerank_summary_rows(run: BenchRun) -> list[list[str]]:
    r = run.recall
    if r is None:
        return []
    tables = [("hashing", r.rows)] + ([("real models", r.real.rows)] if r.real else [])
    rows = []
    for name, recall in tables:
        if OLD_ONLY not in recall[0].recall:
            continue
        low = worst_low_coverage_ratio(recall)
        rows.append(
            [
                f"Every merge / old index alone, recall@10 at 1-10% coverage, worst ({name})",
                fmt_ratio(low),
                ">= 1.00",
                verdict(low >= 1.0 - 1e-9, low),
            ]
        )
        ceiling = ceiling_ratio(recall)
        rows.append(
            [
                f"Re-rank k'={RERANK_K} / its exact ceiling, recall@10 at 25% coverage ({name})",
                fmt_ratio(ceiling),
                f">= {TARGET_CEILING_RATIO}",
                verdict(ceiling >= TARGET_CEILING_RATIO, ceiling),
            ]
        )
        margin = margin_over_best_merge(recall)
        rows.append(
            [
                f"Re-rank k'={RERANK_K} - best merge, recall@10, worst coverage ({name})",
                f"{margin:+.3f}",
                ">= 0",
                verdict(margin >= -1e-9, margin),
            ]
        )
    for row in r.latency:
        if row.over_budget_share:
            ratio = row.over_budget_p99_ms / row.budget_ms
            rows.append(
                [
                    f"Re-rank budget: p99 of queries over it / budget ({row.embedder})",
                    fmt_ratio(ratio),
                    f"<= {TARGET_BUDGET_RATIO}",
                    verdict(ratio <= TARGET_BUDGET_RATIO, ratio),
                ]
            )
    return rows


def rerank_part(rows: Sequence[RecallRow], latency: Sequence[RerankLatency]) -> str:
    if not rows or OLD_ONLY not in rows[0].recall:
        return ""
    embedded = format_embedded_table(rows)
    intro = (
        "Re-rank columns: candidate re-ranking (`query.rerank`), the old leg's top k' and the new leg's hits"
        " ranked by the new model's score, candidates embedded at query time. `"
        + CEILING
        + "` is the offline"
        " figure it can reach: the old index's exact top 50 plus every covered document, ranked by exact"
        f" new-model score. `{OLD_ONLY}` is the old index alone, `{NAIVE}` the new index alone. Candidates"
        " that re-ranking embeds per query with a cold cache (a warm cache embeds each (id, version) once):"
    )
    text = f"\n\n{intro}\n\n{embedded}"
    if latency:
        text += "\n\n" + latency_table(latency)
    return text


def latency_table(latency: Sequence[RerankLatency]) -> str:
    intro = (
        "Added latency (`proxy/bench/rerank.py`, `latency_rows`): dual queries at 25% coverage, 2,000 synthetic"
        " documents, the merge and re-ranking interleaved query by query, cold cache (every uncovered"
        " candidate embedded by the query itself). The remote model is `proxy/bench/embed_server.py` on a"
        " thread of the bench process (OpenAI dialect, answering after a fixed delay). Over budget: share of"
        " queries whose embeddings missed the budget (the merge answered) and the p99 of their re-ranking time."
    )
    rows = [
        [
            r.embedder,
            str(r.candidates),
            f"{r.embedded_per_query:.1f}",
            f"{r.merge_p50_ms:.2f}",
            f"{r.rerank_p50_ms:.2f}",
            f"{r.added_p50_ms:+.2f}",
            "-" if r.budget_ms >= 600_000 else f"{r.budget_ms:.0f}",
            f"{r.over_budget_share:.0%}",
            f"{r.over_budget_p99_ms:.1f}" if r.over_budget_share else "-",
        ]
        for r in latency
    ]
    header = [
        "embedder",
        "k'",
        "embedded / query",
        "merge p50 ms",
        "re-rank p50 ms",
        "added p50 ms",
        "budget ms",
        "over budget",
        "over-budget p99 ms",
    ]
    return intro + "\n\n" + table(header, rows)


def recall_section(run: BenchRun) -> str:
    title = "## 4. Recall@10 against a full re-index"
    missing = missing_note(run, "recall")
    if missing or run.recall is None:
        return f"{title}\n\n{missing}"
    r = run.recall
    intro = (
        f"`proxy/bench/recall.py`: {r.corpus:,} documents, {r.queries} queries, dim {r.dim}, two hashing models"
        " (seeds 1 and 2). At each coverage a random share of the corpus is in B; each query runs through"
        " the real query path in `dual` mode per merge strategy, and `naive new` queries B alone. Truth is"
        " the exact top 10 under model B over the whole corpus."
    )
    rerank = rerank_part(r.rows, r.latency)
    return f"{title}\n\n{intro}\n\n{format_table(r.rows)}{rerank}{_real_recall(r)}"


def _real_recall(r: RecallResult) -> str:
    title = "\n\n### 4b. Recall@10 with two real models"
    if r.real is None:
        return f"{title}\n\n_Not run: {r.real_skipped}_" if r.real_skipped else ""
    m = r.real
    intro = (
        f"Old model {m.old_model}, new model {m.new_model} (both offline, from the `models` extra), {m.corpus}"
        f" real sentences (first lines of stdlib docstrings, `proxy/real_corpus.py`), {m.queries} queries"
        " (the hand-written ones, cycled). Truth: the exact top 10 under the new model over the whole corpus."
        f" Same procedure as above; {m.seconds / 60:.1f} min. Alone: `python -m proxy.bench.recall --real-models`."
    )
    return f"{title}\n\n{intro}\n\n{format_table(m.rows)}{rerank_part(m.rows, [])}"
