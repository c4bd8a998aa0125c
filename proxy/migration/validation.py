"""Validation before cut-over: is the new index healthy, is it as good as the old one, does it agree?"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from proxy.core.binding import IndexBinding
from proxy.core.errors import InvalidArgument
from proxy.core.quality import ndcg_at_k, recall_at_k
from proxy.migration.settings import GateSettings
from proxy.migration.shadow import ShadowSummary


@dataclass(frozen=True)
class GoldenQuery:
    text: str
    gains: dict[str, float]
    """Relevant document ids and their graded relevance (1.0 for a plain list)."""


@dataclass(frozen=True)
class GoldenScore:
    queries: int
    recall: float
    ndcg: float


@dataclass(frozen=True)
class Gate:
    name: str
    value: float | None
    threshold: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class ValidationReport:
    at: float
    old_index: str
    new_index: str
    coverage: float
    k: int
    health_recall: float | None
    golden_old: GoldenScore | None
    golden_new: GoldenScore | None
    shadow: ShadowSummary
    gates: list[Gate] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed}, indent=2)


def parse_golden_lines(lines: Sequence[str], source: str) -> list[GoldenQuery]:
    queries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            relevant = entry["relevant"]
            gains = (
                {str(i): 1.0 for i in relevant}
                if isinstance(relevant, list)
                else {str(i): float(g) for i, g in relevant.items()}
            )
            queries.append(GoldenQuery(str(entry["query"]), gains))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(
                f'{source}:{number}: expected {{"query": text, "relevant": [ids] or {{id: gain}}}} ({exc})'
            ) from None
    if not queries:
        raise InvalidArgument(f"{source}: the golden set is empty")
    return queries


def load_golden_set(path: Path) -> list[GoldenQuery]:
    try:
        return parse_golden_lines(path.read_text().splitlines(), str(path))
    except OSError as exc:
        raise InvalidArgument(f"cannot read golden set {path}: {exc.strerror}") from None


def score_golden(binding: IndexBinding, queries: Sequence[GoldenQuery], k: int) -> GoldenScore:
    """recall@k and nDCG@10 of one index answering the golden queries on its own."""
    vectors = binding.embedder.embed_query([q.text for q in queries])
    recalls, ndcgs = [], []
    for query, vector in zip(queries, vectors, strict=True):
        found = [h.id for h in binding.index.search(vector, max(k, 10))]
        recalls.append(recall_at_k(found, query.gains, k))
        ndcgs.append(ndcg_at_k(found, query.gains, 10))
    return GoldenScore(len(queries), float(np.mean(recalls)), float(np.mean(ndcgs)))


def index_health(binding: IndexBinding, sample: int, k: int, seed: int = 0) -> float | None:
    """recall@k of approximate against exact search, using sampled documents' own texts as queries.

    It catches an index that is badly built or mis-parameterized (too small ef, broken graph), whatever
    the model: both searches run over the same vectors.
    """
    total = binding.index.count()
    if total == 0:
        return None
    rng = random.Random(seed)
    docs = binding.index.scan(None, min(total, sample * 4))
    chosen = rng.sample(docs, min(sample, len(docs)))
    vectors = binding.embedder.embed([d.text for d in chosen])
    recalls = [
        recall_at_k(
            [h.id for h in binding.index.search(v, k)], [h.id for h in binding.index.exact_search(v, k)], k
        )
        for v in vectors
    ]
    return float(np.mean(recalls))


def evaluate_gates(
    gates: GateSettings,
    *,
    coverage: float | None,
    health_recall: float | None,
    golden_old: GoldenScore | None,
    golden_new: GoldenScore | None,
    error_rate: float | None,
    p99_ms: float | None,
    shadow_overlap: float | None,
) -> list[Gate]:
    """Each configured gate with its observed value; a gate without data passes only if it is not required."""
    results = []
    if coverage is not None:
        results.append(_at_least("coverage", coverage, gates.min_coverage))
    if gates.min_health_recall is not None:
        results.append(_at_least("health_recall", health_recall, gates.min_health_recall))
    if gates.max_quality_drop is not None and golden_old is not None and golden_new is not None:
        drop = golden_old.ndcg - golden_new.ndcg
        results.append(_at_most("quality_drop_ndcg10", drop, gates.max_quality_drop))
    if gates.max_error_rate is not None and error_rate is not None:
        results.append(_at_most("new_leg_error_rate", error_rate, gates.max_error_rate))
    if gates.max_p99_ms is not None and p99_ms is not None:
        results.append(_at_most("new_path_p99_ms", p99_ms, gates.max_p99_ms))
    if gates.min_shadow_overlap is not None and shadow_overlap is not None:
        results.append(_at_least("shadow_overlap", shadow_overlap, gates.min_shadow_overlap))
    return results


def _at_least(name: str, value: float | None, threshold: float) -> Gate:
    if value is None:
        return Gate(name, None, threshold, False, f"no data to check {name} >= {threshold:g}")
    passed = value >= threshold
    return Gate(name, value, threshold, passed, f"{value:.4g} {'>=' if passed else '<'} {threshold:g}")


def _at_most(name: str, value: float, threshold: float) -> Gate:
    passed = value <= threshold
    return Gate(name, value, threshold, passed, f"{value:.4g} {'<=' if passed else '>'} {threshold:g}")


def build_report(
    old: IndexBinding,
    new: IndexBinding,
    *,
    coverage: float,
    shadow: ShadowSummary,
    golden: Sequence[GoldenQuery],
    gates: GateSettings,
    k: int,
    health_sample: int,
) -> ValidationReport:
    health = index_health(new, health_sample, k)
    golden_old = score_golden(old, golden, k) if golden else None
    golden_new = score_golden(new, golden, k) if golden else None
    checked = evaluate_gates(
        gates,
        coverage=coverage,
        health_recall=health,
        golden_old=golden_old,
        golden_new=golden_new,
        error_rate=shadow.new_error_rate if shadow.samples else None,
        p99_ms=shadow.new_p99_ms if shadow.samples else None,
        shadow_overlap=shadow.overlap if shadow.samples else None,
    )
    return ValidationReport(
        time.time(), old.name, new.name, coverage, k, health, golden_old, golden_new, shadow, checked
    )


def report_table(report: ValidationReport) -> str:
    """The report as a table for a terminal."""
    s = report.shadow
    rows = [
        ("coverage", f"{report.coverage:.1%}"),
        (f"index health recall@{report.k}", _fmt(report.health_recall)),
        (f"golden recall@{report.k} old / new", _pair(report.golden_old, report.golden_new, "recall")),
        ("golden nDCG@10 old / new", _pair(report.golden_old, report.golden_new, "ndcg")),
        ("shadow samples", str(s.samples)),
        (f"shadow overlap@{report.k} / rank agreement", f"{s.overlap:.3f} / {s.rank_agreement:.3f}"),
        ("latency p50 old / new (ms)", f"{s.old_p50_ms:.2f} / {s.new_p50_ms:.2f}"),
        ("latency p99 old / new (ms)", f"{s.old_p99_ms:.2f} / {s.new_p99_ms:.2f}"),
        ("new leg error rate", f"{s.new_error_rate:.2%}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"validation of {report.old_index} -> {report.new_index}", ""]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines += ["", "gates:"]
    lines += [f"  [{'PASS' if g.passed else 'FAIL'}] {g.name:<20} {g.detail}" for g in report.gates] or [
        "  (none)"
    ]
    lines += ["", f"result: {'PASS' if report.passed else 'FAIL'}"]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pair(old: GoldenScore | None, new: GoldenScore | None, attribute: str) -> str:
    if old is None or new is None:
        return "n/a (no golden set)"
    return f"{getattr(old, attribute):.3f} / {getattr(new, attribute):.3f}"
