"""Validation reports, gated progressive promotion with automatic rollback, and cut-over checks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxy.app.assembly import App
from proxy.app.config import GatesConfig, PromotionConfig
from proxy.app.wiring import gate_settings, promotion_settings
from proxy.core.errors import FailedPrecondition
from proxy.core.model import DocumentInput, Vector
from proxy.core.service import QueryInput
from proxy.migration.phases import Phase
from proxy.migration.promotion import Action, decide
from proxy.migration.validation import Gate, GoldenQuery, GoldenScore, evaluate_gates, parse_golden_lines
from tests.migration_support import drain, in_process_app, load_corpus, migration_config

FAST_PROMOTION = {
    "auto": True,
    "steps": [5, 25, 50, 100],
    "min_dwell_s": 0,
    "min_samples": 20,
    "interval_s": 0.01,
}


def _config(tmp_path: Path, golden: Path | None = None, **gates: Any) -> dict[str, Any]:
    config = migration_config(tmp_path / "data")
    validation: dict[str, Any] = {"health_sample": 50, "gates": {"min_health_recall": 0.8, **gates}}
    if golden is not None:
        validation["golden_set"] = str(golden)
    config["migration"]["validation"] = validation
    config["migration"]["promotion"] = FAST_PROMOTION
    return config


def _golden_file(tmp_path: Path, docs: Sequence[DocumentInput]) -> Path:
    path = tmp_path / "golden.jsonl"
    lines = [json.dumps({"query": d.text, "relevant": [d.id]}) for d in docs[::10]]
    path.write_text("\n".join(lines))
    return path


def _migrated(app: App, size: int = 300) -> list[DocumentInput]:
    assert app.controller is not None
    docs = load_corpus(app, size)
    app.controller.start()
    drain(app)
    app.controller.status()
    return docs


def _promote_by_traffic(app: App, docs: Sequence[DocumentInput], rounds: int = 40) -> list[float]:
    """Serves traffic and lets the promoter decide after each burst; returns the split after each round."""
    assert app.promoter is not None and app.controller is not None
    splits = []
    for round_ in range(rounds):
        for n in range(30):
            doc = docs[(round_ * 30 + n) % len(docs)]
            app.service.query(QueryInput(k=5, text=doc.text, routing_key=f"user-{uuid.uuid4().hex}"))
        app.promoter._last_tick = 0.0  # the test drives time; the interval is covered by unit tests
        app.promoter.tick()
        splits.append(app.controller.traffic_percent())
        if app.controller.record.load().phase is not Phase.SHIFTING:
            break
    return splits


@pytest.fixture
def corpus_docs() -> list[DocumentInput]:
    from proxy.demo.corpus import synthetic_corpus

    return [DocumentInput(d.id, d.text, {"topic": d.topic}) for d in synthetic_corpus(300)]


def test_promotion_advances_through_every_step_on_a_good_new_index(
    tmp_path: Path, corpus_docs: list[DocumentInput]
) -> None:
    app = in_process_app(_config(tmp_path, _golden_file(tmp_path, corpus_docs)))
    try:
        assert app.promoter is not None and app.controller is not None
        docs = _migrated(app)
        assert app.promoter.validate().passed
        app.controller.transition("validated")
        assert app.promoter.promote("canary") == 5
        splits = _promote_by_traffic(app, docs)
        distinct = [s for i, s in enumerate(splits) if i == 0 or s != splits[i - 1]]
        assert distinct in ([5, 25, 50, 100], [25, 50, 100])
        assert app.controller.record.load().phase is Phase.SHIFTING
        assert any("all steps passed at 100%" in e for e in app.promoter.events())
    finally:
        app.close()


class _BrokenEmbedder:
    """A new model that ignores the text: every document lands on a random point."""

    def __init__(self, model: str, dim: int) -> None:
        self.model, self.dim, self.in_process = model, dim, True
        self._rng = np.random.default_rng(0)

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        vectors = self._rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        return self.embed(texts)


def test_promotion_rolls_back_by_itself_when_the_new_index_is_worse(
    tmp_path: Path, corpus_docs: list[DocumentInput], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = in_process_app(_config(tmp_path, _golden_file(tmp_path, corpus_docs)))
    try:
        assert app.promoter is not None and app.controller is not None
        # The new model's one instance, shared by queries, the backfill and validation, turns random.
        broken = _BrokenEmbedder("hash-b", 32)
        monkeypatch.setattr(app.controller.new.embedder, "embed", broken.embed)
        monkeypatch.setattr(app.controller.new.embedder, "embed_query", broken.embed_query)
        docs = _migrated(app)
        report = app.promoter.validate()
        assert not report.passed
        assert any(g.name == "quality_drop_ndcg10" and not g.passed for g in report.gates)
        with pytest.raises(FailedPrecondition, match="validation report"):
            app.controller.transition("cut_over")
        app.controller.transition("validated")
        app.promoter.promote("operator tries anyway")
        splits = _promote_by_traffic(app, docs, rounds=3)
        assert splits[-1] == 0.0
        state = app.controller.record.load()
        assert state.phase is Phase.ROLLED_BACK
        assert "quality_drop_ndcg10" in state.history[-1].reason
        outcome = app.service.query(QueryInput(k=5, text=docs[0].text, routing_key="anyone"))
        assert {h.index for h in outcome.hits} == {"idx-a"}
    finally:
        app.close()


def test_cutover_needs_coverage_and_a_passing_report_unless_forced(tmp_path: Path) -> None:
    app = in_process_app(_config(tmp_path))
    try:
        assert app.promoter is not None and app.controller is not None
        load_corpus(app, 200)
        app.controller.start()
        app.controller.run_once()
        with pytest.raises(FailedPrecondition, match="coverage is"):
            app.controller.transition("cut_over")
        drain(app)
        with pytest.raises(FailedPrecondition, match="validation report"):
            app.controller.transition("cut_over")
        assert app.promoter.validate().passed
        assert app.controller.transition("cut_over").phase is Phase.CUT_OVER
    finally:
        app.close()


def test_validation_report_has_every_section_and_round_trips_as_json(
    tmp_path: Path, corpus_docs: list[DocumentInput]
) -> None:
    app = in_process_app(_config(tmp_path, _golden_file(tmp_path, corpus_docs)))
    try:
        assert app.promoter is not None
        docs = _migrated(app)
        app.service.set_shadow_sample_rate(1.0)
        for doc in docs[:20]:
            app.service.query(QueryInput(k=10, text=doc.text, routing_key="u"))
        app.executor.submit(lambda: None).result()
        report = app.promoter.validate()
        data = json.loads(report.to_json())
        assert data["coverage"] == 1.0 and data["health_recall"] >= 0.8
        assert data["golden_old"]["queries"] == 30 and data["golden_new"]["ndcg"] > 0.5
        assert data["shadow"]["samples"] >= 1 and data["passed"] is True
    finally:
        app.close()


def test_gates_without_data_do_not_pass_silently() -> None:
    gates = evaluate_gates(
        gate_settings(GatesConfig()),
        coverage=1.0,
        health_recall=None,
        golden_old=None,
        golden_new=None,
        error_rate=None,
        p99_ms=None,
        shadow_overlap=None,
    )
    health = next(g for g in gates if g.name == "health_recall")
    assert not health.passed and "no data" in health.detail


def test_quality_gate_compares_new_with_old() -> None:
    old, worse = GoldenScore(10, 0.9, 0.80), GoldenScore(10, 0.9, 0.75)
    gates = evaluate_gates(
        gate_settings(GatesConfig(max_quality_drop=0.02)),
        coverage=None,
        health_recall=0.95,
        golden_old=old,
        golden_new=worse,
        error_rate=0.0,
        p99_ms=5.0,
        shadow_overlap=None,
    )
    assert [g.name for g in gates if not g.passed] == ["quality_drop_ndcg10"]


@pytest.mark.parametrize(
    ("dwell", "samples", "gates", "action", "target"),
    [
        (0, 0, [], Action.HOLD, 25),
        (100, 500, [], Action.ADVANCE, 50),
        (100, 500, [Gate("new_leg_error_rate", 0.2, 0.01, False, "0.2 > 0.01")], Action.ROLLBACK, 0),
        (1, 1, [Gate("new_leg_error_rate", 0.2, 0.01, False, "0.2 > 0.01")], Action.ROLLBACK, 0),
        (100, 500, [Gate("health_recall", None, 0.9, False, "no data")], Action.HOLD, 25),
    ],
)
def test_promotion_decision(
    dwell: float, samples: int, gates: list[Gate], action: Action, target: float
) -> None:
    settings = promotion_settings(PromotionConfig(steps=(5, 25, 50, 100), min_dwell_s=60, min_samples=100))
    decision = decide(25, dwell, samples, gates, settings)
    assert decision.action is action
    assert decision.to_percent == target


def test_last_step_completes() -> None:
    decision = decide(100, 100, 500, [], promotion_settings(PromotionConfig(min_dwell_s=0, min_samples=0)))
    assert decision.action is Action.COMPLETE


def test_golden_set_accepts_lists_and_graded_relevance_and_names_bad_lines() -> None:
    parsed = parse_golden_lines(
        ['{"query": "a", "relevant": ["d1", "d2"]}', "", '{"query": "b", "relevant": {"d3": 2}}'], "g.jsonl"
    )
    assert parsed == [GoldenQuery("a", {"d1": 1.0, "d2": 1.0}), GoldenQuery("b", {"d3": 2.0})]
    with pytest.raises(Exception, match=r"g\.jsonl:2"):
        parse_golden_lines(['{"query": "a", "relevant": ["d1"]}', '{"text": "oops"}'], "g.jsonl")
