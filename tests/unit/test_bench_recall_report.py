"""The recall section of `switchyard bench` with and without the real-model table (4b)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from proxy.bench import run as bench_run
from proxy.bench.recall import NAIVE, RecallRow
from proxy.bench.report_recall import _real_recall
from proxy.bench.results import RealModelRecall
from proxy.bench.settings import QUICK
from proxy.core.errors import ConfigError

SMALL = replace(QUICK, real_recall=True, recall_corpus=120, recall_queries=6)


def test_real_model_table_lands_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [RecallRow(0.5, {"calibrated": 0.61, NAIVE: 0.42})]
    monkeypatch.setattr(
        bench_run, "_real_model_recall", lambda: RealModelRecall("old-m", "new-m", 479, 96, 120.0, rows)
    )
    monkeypatch.setattr(bench_run, "_real_latency_model", lambda: None)
    result = bench_run._recall(SMALL)
    assert result.real is not None and result.real.rows == rows and result.real_skipped == ""
    text = _real_recall(result)
    assert "### 4b." in text and "old-m" in text and "| 50% | 0.610 | 0.420 |" in text


def test_missing_models_extra_is_said_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> RealModelRecall:
        raise ConfigError("install switchyard[models]")

    monkeypatch.setattr(bench_run, "_real_model_recall", unavailable)
    result = bench_run._recall(SMALL)
    assert result.real is None
    assert "Not run: install switchyard[models]" in _real_recall(result)
    assert _real_recall(bench_run._recall(replace(SMALL, real_recall=False))) == ""
