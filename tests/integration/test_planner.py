"""The migration planner: its pure estimates, its command, and its forecast against a real backfill."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from proxy.app.assembly import App
from proxy.app.wiring import build_embedder, build_index
from proxy.cli.main import main
from proxy.core.model import DocumentInput, IndexRecord
from proxy.migration.retirement import StoragePolicy
from proxy.planning import (
    DEFAULT_RECALL_CURVE,
    THROTTLE_FLOOR,
    Measurements,
    PlanInput,
    Strategy,
    measurements_from_bench,
    plan,
)
from proxy.planning.model import lazy_coverage, throttle_share, zipf_bins
from tests.migration_support import in_process_app, load_corpus, migration_config

BACKFILLING = (Strategy.OFFLINE, Strategy.BACKFILL, Strategy.PARALLEL)


def _input(**changes: object) -> PlanInput:
    base = PlanInput(docs=2_000_000, dim=384, write_rate=50, qps=200, latency_budget_ms=50)
    return replace(base, **changes)  # type: ignore[arg-type]


# -- pure estimates -----------------------------------------------------------------------------------


def test_more_embedder_throughput_means_a_shorter_migration() -> None:
    times = {
        rate: plan(_input(measurements=Measurements(embed_docs_per_s=rate)))
        for rate in (250.0, 500.0, 1000.0, 4000.0)
    }
    for strategy in BACKFILLING:
        finishes = [times[rate].get(strategy).full_coverage_s for rate in sorted(times)]
        assert all(f is not None for f in finishes), finishes
        assert finishes == sorted(finishes, reverse=True) and finishes[0] > finishes[-1], (strategy, finishes)


@pytest.mark.parametrize("s", [0.8, 1.1, 1.4])
def test_expected_lazy_coverage_agrees_with_monte_carlo(s: float) -> None:
    docs, trials = 6000, 40
    weights = np.arange(1, docs + 1, dtype=float) ** -s
    p = weights / weights.sum()
    bins = zipf_bins(docs, s)  # log-binned: fewer bins than ranks
    assert len(bins.p) < docs
    rng = np.random.default_rng(5)
    for draws in (300, 3000, 30000):
        corpus, traffic = [], []
        for _ in range(trials):
            touched = np.zeros(docs, dtype=bool)
            touched[rng.choice(docs, size=draws, p=p)] = True
            corpus.append(touched.mean())
            traffic.append(p[touched].sum())
        expected_corpus, expected_traffic = lazy_coverage(bins, draws)
        assert expected_corpus == pytest.approx(np.mean(corpus), rel=0.03), (s, draws)
        assert expected_traffic == pytest.approx(np.mean(traffic), rel=0.03), (s, draws)


def test_log_binned_ranks_match_the_per_rank_sum() -> None:
    exact, binned = zipf_bins(200_000, 1.1, max_bins=200_000), zipf_bins(200_000, 1.1, max_bins=500)
    assert len(binned.p) < 500 < len(exact.p)
    for draws in (1e3, 1e5, 1e7):
        assert lazy_coverage(binned, draws) == pytest.approx(lazy_coverage(exact, draws), rel=0.01)


def test_keep_old_peaks_at_two_copies_and_retiring_as_you_go_at_one() -> None:
    kept = plan(_input(storage_policy=StoragePolicy.KEEP_OLD))
    retired = plan(_input(storage_policy=StoragePolicy.RETIRE_AS_YOU_GO))
    for strategy in BACKFILLING:
        assert kept.get(strategy).peak_storage_ratio == pytest.approx(2.0)
    assert retired.get(Strategy.PARALLEL).peak_storage_ratio == pytest.approx(1.0)
    # Without fan-out, A answers every query until cut-over and cannot shrink before it.
    assert retired.get(Strategy.BACKFILL).peak_storage_ratio == pytest.approx(2.0)


def test_storage_counts_vector_graph_and_text_per_document() -> None:
    result = plan(_input(docs=1000, dim=100, hnsw_m=10, doc_bytes=500.0))
    assert result.one_copy_bytes == 1000 * (100 * 4 + 10 * 2 * 4 + 500)
    smaller_new = plan(_input(docs=1000, dim=100, old_dim=200, hnsw_m=10, doc_bytes=500.0))
    old_copy, new_copy = 1000 * (200 * 4 + 80 + 500), 1000 * (100 * 4 + 80 + 500)
    expected = (old_copy + new_copy) / old_copy
    assert smaller_new.get(Strategy.BACKFILL).peak_storage_ratio == pytest.approx(expected)


def test_cost_is_tokens_times_price() -> None:
    result = plan(_input(price_per_1m_tokens=0.13, tokens_per_doc=300, tokens_per_query=20))
    for sp in result.strategies:
        tokens = (sp.reembedded_docs + sp.dual_write_docs) * 300 + sp.query_embeds * 20
        assert sp.tokens == pytest.approx(tokens)
        assert sp.cost == pytest.approx(sp.tokens * 0.13 / 1e6)
    backfill = result.get(Strategy.BACKFILL)
    assert backfill.reembedded_docs == pytest.approx(2_000_000, rel=1e-6)  # every old document, once


def test_rate_limit_sets_the_pace_when_it_is_the_tightest_bound() -> None:
    result = plan(_input(docs=10_000, write_rate=0, qps=0, backfill_rate_limit=100))
    assert result.get(Strategy.BACKFILL).full_coverage_s == pytest.approx(100.0, rel=1e-3)
    # Offline ignores the live backfill's limit: it runs at the pipeline's full speed.
    assert result.get(Strategy.OFFLINE).full_coverage_s == pytest.approx(
        10_000 / Measurements().pipeline_docs_per_s(64), rel=1e-3
    )


def test_throttle_leaves_room_for_the_latency_budget() -> None:
    assert throttle_share(p99_idle_ms=10, budget_ms=50, qps=100) == pytest.approx(0.8)
    assert throttle_share(p99_idle_ms=80, budget_ms=50, qps=100) == THROTTLE_FLOOR
    assert throttle_share(p99_idle_ms=80, budget_ms=50, qps=0) == 1.0  # nothing to measure, no throttle


def test_lazy_moves_hot_traffic_first_but_not_the_cold_corpus() -> None:
    result = plan(_input(horizon_s=2 * 86_400))
    lazy, parallel = result.get(Strategy.LAZY), result.get(Strategy.PARALLEL)
    assert lazy.full_coverage_s is None
    assert any("never reaches full coverage" in note for note in lazy.notes)
    after_ten_minutes = next(p for p in lazy.timeline if p.t_s >= 600)
    assert after_ten_minutes.traffic_coverage > 0.85 and after_ten_minutes.corpus_coverage < 0.15
    backfill = result.get(Strategy.BACKFILL)
    assert parallel.traffic_target_s is not None and backfill.traffic_target_s is not None
    assert parallel.traffic_target_s < backfill.traffic_target_s / 5


def test_a_measured_throttled_run_replaces_the_single_queue_model() -> None:
    measured = Measurements(throttled_share=0.04, throttled_budget_ratio=1.2)
    exponent = measured.throttle_exponent()
    assert exponent < 1.0, "real queries are hurt more than a single queue predicts"
    # The fitted curve goes through the measured point and still frees the machine as the budget loosens.
    assert throttle_share(10.0, 12.0, qps=100, exponent=exponent) == pytest.approx(0.04)
    assert throttle_share(10.0, 20.0, qps=100, exponent=exponent) > 0.04
    assert throttle_share(10.0, 20.0, qps=100, exponent=exponent) < throttle_share(10.0, 20.0, qps=100)
    assumed, fitted = plan(_input()), plan(_input(measurements=measured))
    for strategy in (Strategy.BACKFILL, Strategy.PARALLEL):
        assert fitted.get(strategy).throttle_share < assumed.get(strategy).throttle_share
        assert (fitted.get(strategy).full_coverage_s or math.inf) > (
            assumed.get(strategy).full_coverage_s or 0
        )
    assert Measurements().throttle_exponent() == 1.0


def test_lazy_moves_share_the_backfill_throttle() -> None:
    # p99 at idle 15 ms: a 16 ms budget leaves the worker 1/16 of the time, a 150 ms budget nine tenths.
    tight, loose = plan(_input(latency_budget_ms=16)), plan(_input(latency_budget_ms=150))
    for strategy in (Strategy.LAZY, Strategy.PARALLEL):
        # Fan-out serves at dual p99 (21 ms by default), over the tight budget: the throttle sits at its floor.
        assert tight.get(strategy).throttle_share == THROTTLE_FLOOR
        assert tight.get(strategy).reembedded_docs < loose.get(strategy).reembedded_docs
        tight_traffic = tight.get(strategy).traffic_target_s or math.inf
        assert tight_traffic > (loose.get(strategy).traffic_target_s or math.inf) * 2
    assert not any("not throttled" in note for sp in tight.strategies for note in sp.notes)


def test_recall_follows_the_given_curve_and_never_drops_below_todays() -> None:
    curve = ((0.0, 0.5), (1.0, 1.0))
    result = plan(_input(recall_curve=curve))
    for sp in result.strategies:
        assert sp.min_recall == pytest.approx(0.5)
        assert all(p.recall == pytest.approx(0.5 + 0.5 * p.traffic_coverage) for p in sp.timeline[:-1])
        assert sp.timeline[-1].recall == 1.0 or sp.full_coverage_s is None


def test_recommends_the_default_when_everything_fits() -> None:
    result = plan(_input())
    assert result.recommended is Strategy.PARALLEL
    assert "meets every constraint" in result.reason


def test_fan_out_over_the_latency_budget_rules_out_dual_serving() -> None:
    slow_dual = Measurements(dual_p50_ms=30.0, dual_p99_ms=80.0)
    result = plan(_input(measurements=slow_dual))
    assert result.recommended is Strategy.BACKFILL
    assert "over the 50 ms budget" in result.reason


def test_budget_and_deadline_are_hard_constraints() -> None:
    result = plan(_input(max_cost=1.0))
    assert result.recommended is not Strategy.LAZY and "no strategy meets every constraint" in result.reason
    allowed = plan(_input(allow_downtime=True, deadline_s=1.0))
    assert "deadline" in allowed.reason


def test_bench_results_override_defaults_and_say_so() -> None:
    raw = {"embed_docs_per_s": 400, "query_p99_ms": 9.5, "throttled_share": 0.04, "other": 1}
    measured = measurements_from_bench(raw, "b.json")
    assert (measured.embed_docs_per_s, measured.query_p99_ms, measured.throttled_share) == (400.0, 9.5, 0.04)
    assert measured.index_insert_docs_per_s == Measurements().index_insert_docs_per_s
    assert measured.source_of("embed_docs_per_s") == "measured (b.json)"
    assert measured.source_of("index_insert_docs_per_s") == "assumed (default)"


def test_fifty_million_documents_plan_quickly() -> None:
    started = time.perf_counter()
    result = plan(PlanInput(docs=50_000_000, dim=384, write_rate=200, qps=500, latency_budget_ms=50))
    assert time.perf_counter() - started < 2.0
    assert all(len(sp.timeline) <= 402 for sp in result.strategies)


def test_invalid_input_is_named() -> None:
    with pytest.raises(ValueError, match="zipf_s"):
        _input(zipf_s=0)
    with pytest.raises(ValueError, match="recall curve"):
        _input(recall_curve=((0.2, 0.5), (1.0, 1.0)))


# -- the command --------------------------------------------------------------------------------------

_ARGS = ["plan", "--docs", "50000000", "--dim", "384", "--write-rate", "200", "--qps", "500"]


def test_plan_command_prints_a_row_per_strategy_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"embed_docs_per_s": 900, "recall_curve": DEFAULT_RECALL_CURVE}))
    out = tmp_path / "plan.json"
    assert main([*_ARGS, "--from-bench", str(bench), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for title in ("(a) offline", "(b) progressive", "(c) lazy", "(d) parallel", "Recommended:"):
        assert title in printed
    assert "measured (bench.json)" in printed and "assumed (default)" in printed
    saved = json.loads(out.read_text())
    assert saved["recommended"] in {s.value for s in Strategy}
    assert {"t_s", "corpus_coverage", "traffic_coverage", "recall", "storage_bytes"} <= set(
        saved["strategies"][0]["timeline"][0]
    )


def test_plan_command_writes_a_png(tmp_path: Path) -> None:
    target = tmp_path / "plan.png"
    assert main([*_ARGS, "--embed-rate", "1500", "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main([*_ARGS, "--plot", str(tmp_path / "p.png")]) == 2
    assert "switchyard[plot]" in capsys.readouterr().err


def test_bad_input_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_ARGS, "--zipf", "0"]) == 2
    assert "zipf_s" in capsys.readouterr().err


# -- forecast against a real backfill -------------------------------------------------------------------
#
# The planner is told what `switchyard bench` would measure (embedding and index-insert throughput, a
# batch's bookkeeping) and forecasts the progressive backfill's time; a real backfill then runs in process
# on real hnswlib indexes and real Redis. On a shared 2-core machine a neighbour's load swings throughput
# several-fold within seconds, so the measurements are taken interleaved with the run's own steps: both
# see the same load at the same moments.

_BATCH = 25
"""tests.migration_support.migration_config's backfill batch size."""


@contextmanager
def _app(data_dir: Path, **backfill: float) -> Iterator[App]:
    application = in_process_app(migration_config(data_dir, **backfill))
    yield application
    application.close()


class _PipelineProbe:
    """Embeds and upserts the corpus in backfill-sized batches with a fresh embedder into a scratch index."""

    def __init__(self, app: App, docs: Sequence[DocumentInput], scratch: Path) -> None:
        migration = app.config.migration
        assert migration is not None
        target = app.config.indexes[migration.new_index]
        self.embedder = build_embedder(target.model, app.config.models[target.model])
        self.index = build_index("scratch", target, self.embedder.dim, scratch)
        self.docs, self.done, self.embed_s, self.insert_s = docs, 0, 0.0, 0.0

    def measure_next_batch(self) -> None:
        chunk = self.docs[self.done : self.done + _BATCH]
        began = time.perf_counter()
        vectors = self.embedder.embed([d.text for d in chunk])
        embedded = time.perf_counter()
        self.index.upsert([IndexRecord(d.id, 1, d.text, {}, v) for d, v in zip(chunk, vectors, strict=True)])
        self.embed_s, self.insert_s = (
            self.embed_s + embedded - began,
            self.insert_s + time.perf_counter() - embedded,
        )
        self.done += len(chunk)

    def finished(self) -> bool:
        return self.done >= len(self.docs)

    def measurements(self, batch_overhead_ms: float) -> Measurements:
        return Measurements(
            embed_docs_per_s=self.done / self.embed_s,
            index_insert_docs_per_s=self.done / self.insert_s,
            batch_overhead_ms=batch_overhead_ms,
        )


def _timed_step(app: App) -> float:
    assert app.controller is not None
    began = time.perf_counter()
    app.controller.run_once()
    return time.perf_counter() - began


def _complete(app: App) -> bool:
    assert app.controller is not None
    return app.controller.backfiller.complete()


def _predicted(docs: int, measured: Measurements, rate_limit: float = 0.0) -> float:
    inp = PlanInput(
        docs=docs,
        dim=32,
        write_rate=0,
        qps=0,
        latency_budget_ms=50,
        measurements=measured,
        batch_size=_BATCH,
        backfill_rate_limit=rate_limit,
    )
    finish = plan(inp).get(Strategy.BACKFILL).full_coverage_s
    assert finish is not None
    return finish


@pytest.mark.redis
def test_forecast_of_a_rate_limited_backfill_is_within_25_percent(tmp_path: Path) -> None:
    with _app(tmp_path / "data", rate_limit=300.0) as app:
        assert app.controller is not None
        docs = load_corpus(app, 1200)
        # Measured first, not interleaved: time spent between steps would count against the rate limit.
        probe = _PipelineProbe(app, docs, tmp_path / "scratch")
        while not probe.finished():
            probe.measure_next_batch()
        probe.index.close()
        app.controller.start()
        began = time.perf_counter()
        while not _complete(app):
            app.controller.run_once()
        elapsed = time.perf_counter() - began
        assert app.controller.status().coverage == 1.0
    predicted = _predicted(len(docs), probe.measurements(batch_overhead_ms=2.0), rate_limit=300.0)
    print(f"rate-limited: predicted {predicted:.2f}s, measured {elapsed:.2f}s")
    assert predicted / elapsed == pytest.approx(1.0, abs=0.25)


@pytest.mark.redis
def test_forecast_from_measured_throughput_is_within_25_percent(tmp_path: Path) -> None:
    size = 3000
    with _app(tmp_path / "data") as app, _app(tmp_path / "bookkeeping") as bookkeeping:
        assert app.controller is not None and bookkeeping.controller is not None
        docs = load_corpus(app, size)
        # Started before loading, so every document is dual-written: this backfill's batches have nothing
        # to embed and time only the bookkeeping (source reads, version checks, lease, checkpoint).
        bookkeeping.controller.start()
        load_corpus(bookkeeping, size)
        probe = _PipelineProbe(app, docs, tmp_path / "scratch")
        app.controller.start()
        backfill_s = bookkeeping_s = 0.0
        while not (_complete(app) and _complete(bookkeeping) and probe.finished()):
            backfill_s += 0.0 if _complete(app) else _timed_step(app)
            bookkeeping_s += 0.0 if _complete(bookkeeping) else _timed_step(bookkeeping)
            if not probe.finished():
                probe.measure_next_batch()
        probe.index.close()
        assert app.controller.status().coverage == 1.0
    measured = probe.measurements(batch_overhead_ms=bookkeeping_s * 1000 / (size / _BATCH))
    predicted = _predicted(size, measured)
    print(
        f"unthrottled: embed {measured.embed_docs_per_s:.0f}/s, insert {measured.index_insert_docs_per_s:.0f}/s,"
        f" bookkeeping {measured.batch_overhead_ms:.2f} ms/batch -> predicted {predicted:.2f}s,"
        f" measured {backfill_s:.2f}s"
    )
    assert predicted / backfill_s == pytest.approx(1.0, abs=0.25)


def test_plan_takes_the_recall_curve_of_the_strategy_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    curves = {"calibrated": [[0.0, 0.49], [1.0, 1.0]], "re-rank k'=50": [[0.0, 0.83], [1.0, 1.0]]}
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"recall_curves": curves}))
    assert main([*_ARGS, "--from-bench", str(bench), "--recall-strategy", "re-rank k'=50"]) == 0
    printed = capsys.readouterr().out
    assert "0%:0.83" in printed and "measured (bench.json, re-rank k'=50)" in printed
    assert main([*_ARGS, "--from-bench", str(bench), "--recall-strategy", "rrf"]) != 0
    assert "measured: calibrated, re-rank k'=50" in capsys.readouterr().err
