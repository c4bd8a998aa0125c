"""Candidate re-ranking and the coverage guard on the real query path: hnswlib files, Redis state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.app.assembly import App
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.service import QueryInput, QueryOutcome
from tests.migration_support import in_process_app, load_corpus, migration_config

SIZE = 400


def _app(tmp_path: Path, batch_size: int = 25, **rerank: Any) -> App:
    config = migration_config(tmp_path / "data", batch_size=batch_size)
    config["query"] = {"merge": "minmax", "rerank": rerank}
    return in_process_app(config)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    application = _app(tmp_path, candidates=40, budget_ms=5_000)
    yield application
    application.close()


def _migrate_to(app: App, coverage: float) -> list[DocumentInput]:
    assert app.controller is not None
    docs = load_corpus(app, SIZE)
    app.controller.start()
    while app.controller.status().coverage < coverage:
        app.controller.backfiller.step(include_slices=True)
    return docs


def _dual(app: App, text: str, k: int = 10, candidates: int | None = None) -> QueryOutcome:
    return app.service.query(
        QueryInput(k=k, text=text, override=RoutingMode.DUAL, rerank_candidates=candidates)
    )


def _new_model_scores(text: str, docs: list[DocumentInput]) -> dict[str, float]:
    model = HashingEmbedder("hash-b", 32, 2)
    query = model.embed_query([text])[0]
    return {
        d.id: float(np.dot(query, v)) for d, v in zip(docs, model.embed([d.text for d in docs]), strict=True)
    }


def _wait_held(app: App, ids: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        held = app.bindings["idx-b"].index.versions(ids)
        if len(held) == len(ids):
            return held
        time.sleep(0.02)
    raise AssertionError(f"re-ranked candidates never reached the new index: {held}")


def test_a_dual_query_ranks_old_candidates_by_the_new_models_score_and_moves_them(app: App) -> None:
    docs = _migrate_to(app, 0.2)
    text = docs[7].text
    outcome = _dual(app, text)
    report = outcome.rerank
    assert report.candidates == 40 and report.uncovered > 0 and not report.fallback
    assert report.embedded_now == report.uncovered - report.skipped
    exact = _new_model_scores(text, docs)
    assert [h.score for h in outcome.hits] == pytest.approx([exact[h.id] for h in outcome.hits], abs=1e-5)
    assert [h.score for h in outcome.hits] == sorted((h.score for h in outcome.hits), reverse=True)
    embedded = [h.id for h in outcome.hits if h.index == "idx-a"]
    assert embedded, "some hits came from the old leg's candidates"
    by_id = {d.id: d for d in app.bindings["idx-a"].index.get(embedded)}
    assert _wait_held(app, embedded) == {i: by_id[i].version for i in embedded}
    again = _dual(app, text)
    assert again.rerank.embedded_now == 0 and [h.id for h in again.hits] == [h.id for h in outcome.hits]


def test_a_request_can_turn_reranking_off_and_the_merge_answers(app: App) -> None:
    docs = _migrate_to(app, 0.2)
    outcome = _dual(app, docs[3].text, candidates=0)
    assert outcome.rerank.candidates == 0 and outcome.merge_strategy == "minmax"
    assert len(outcome.legs[0].hits) == 10, "without re-ranking the old leg fetches only k"


def test_over_budget_the_merge_answers_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path, candidates=40, budget_ms=20)
    try:
        docs = _migrate_to(app, 0.2)
        model = app.bindings["idx-b"].embedder
        embed = model.embed
        monkeypatch.setattr(model, "embed", lambda texts: (time.sleep(0.5), embed(texts))[1])
        # The merge first: the fallback's embedding goes on behind it and moves candidates into idx-b.
        merged = _dual(app, docs[11].text, candidates=0)
        outcome = _dual(app, docs[11].text)
    finally:
        app.close()
    assert outcome.rerank.fallback == "budget" and outcome.rerank.candidates == 40
    assert [h.id for h in outcome.hits] == [h.id for h in merged.hits]


def test_at_low_coverage_the_new_leg_does_not_displace_the_old_indexs_answers(tmp_path: Path) -> None:
    app = _app(tmp_path, batch_size=4)  # re-ranking off: the merge answers
    try:
        docs = _migrate_to(app, 0.01)
        coverage = app.controller.status().coverage if app.controller else 0.0
        assert 0 < coverage < 0.05
        displaced = 0
        for doc in docs[::20]:
            old_only = app.service.query(QueryInput(k=10, text=doc.text, override=RoutingMode.OLD))
            dual = _dual(app, doc.text)
            held = app.bindings["idx-b"].index.versions([h.id for h in old_only.hits])
            uncovered = {h.id for h in old_only.hits if held.get(h.id, -1) < h.version}
            displaced += len(uncovered - {h.id for h in dual.hits})
    finally:
        app.close()
    assert displaced == 0


def test_a_client_write_after_the_candidates_were_read_keeps_its_version(app: App) -> None:
    docs = _migrate_to(app, 0.2)
    outcome = _dual(app, docs[5].text)
    moved = [h.id for h in outcome.hits if h.index == "idx-a"]
    _wait_held(app, moved)
    versions = app.service.upsert([DocumentInput(moved[0], "a client rewrite about volcanoes", {})])
    _dual(app, docs[5].text)  # the candidate's old copy is cached; a new version must not bring it back
    stored = app.bindings["idx-b"].index.get([moved[0]])[0]
    assert (stored.version, stored.text) == (versions[moved[0]], "a client rewrite about volcanoes")
