from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.merge import (
    MERGE_STRATEGIES,
    CalibratedMerger,
    MinMaxMerger,
    ReciprocalRankMerger,
    ZScoreMerger,
    fit_isotonic,
    make_merger,
    min_max,
    shared_document_pairs,
)
from proxy.core.model import Hit

OLD, NEW = "idx-a", "idx-b"


def _hit(id: str, score: float, index: str, version: int = 1) -> Hit:
    return Hit(id=id, score=score, version=version, metadata={}, index=index, raw_score=score)


def _leg(index: str, *scored: tuple[str, float]) -> list[Hit]:
    return [_hit(i, s, index) for i, s in scored]


def _ids(hits: Sequence[Hit]) -> list[str]:
    return [h.id for h in hits]


def _quadratic(a: np.ndarray) -> np.ndarray:
    return 0.5 * a**2 + 0.1


# -- contract shared by every strategy ---------------------------------------------------------------------


@pytest.mark.parametrize("name", MERGE_STRATEGIES)
def test_duplicate_id_keeps_the_new_hit(name: str) -> None:
    old = [_hit("d", 0.99, OLD, version=1), _hit("x", 0.5, OLD)]
    new = [_hit("d", 0.2, NEW, version=2), _hit("y", 0.1, NEW)]
    merged = make_merger(name).merge(old, new, 10)
    assert _ids(merged).count("d") == 1
    dup = next(h for h in merged if h.id == "d")
    assert (dup.index, dup.version, dup.raw_score) == (NEW, 2, 0.2)


@pytest.mark.parametrize("name", MERGE_STRATEGIES)
def test_output_is_sorted_truncated_and_keeps_raw_scores(name: str) -> None:
    old = _leg(OLD, ("a1", 0.9), ("a2", 0.7), ("a3", 0.4))
    new = _leg(NEW, ("b1", 0.3), ("b2", 0.2), ("b3", 0.1))
    merged = make_merger(name).merge(old, new, 4)
    assert len(merged) == 4
    assert [h.score for h in merged] == sorted((h.score for h in merged), reverse=True)
    originals = {h.id: h.score for h in old + new}
    assert all(h.raw_score == originals[h.id] for h in merged)


@pytest.mark.parametrize("name", MERGE_STRATEGIES)
def test_either_leg_may_be_empty(name: str) -> None:
    merger = make_merger(name)
    leg = _leg(NEW, ("b1", 0.3), ("b2", 0.2))
    assert merger.merge([], [], 5) == []
    assert _ids(merger.merge([], leg, 5)) == ["b1", "b2"]
    assert _ids(merger.merge(_leg(OLD, ("a1", 0.3), ("a2", 0.2)), [], 1)) == ["a1"]


@pytest.mark.parametrize("name", MERGE_STRATEGIES)
def test_order_does_not_depend_on_input_order(name: str) -> None:
    old = _leg(OLD, ("a1", 0.9), ("a2", 0.5), ("a3", 0.5))
    new = _leg(NEW, ("b1", 0.8), ("b2", 0.8), ("b3", 0.1))
    merger = make_merger(name)
    assert merger.merge(old, new, 6) == merger.merge(old[::-1], new[::-1], 6)


def test_unknown_strategy_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="calibrated, minmax, rrf, zscore"):
        make_merger("bm25")


def test_each_strategy_reports_its_name() -> None:
    assert [make_merger(n).name for n in MERGE_STRATEGIES] == list(MERGE_STRATEGIES)


# -- minmax ------------------------------------------------------------------------------------------------


def test_minmax_puts_the_top_of_each_leg_at_one_and_prefers_new_on_ties() -> None:
    old = _leg(OLD, ("a1", 0.9), ("a2", 0.5))
    new = _leg(NEW, ("b1", 0.3), ("b2", 0.1))
    merged = MinMaxMerger().merge(old, new, 4)
    assert _ids(merged) == ["b1", "a1", "b2", "a2"]
    assert [h.score for h in merged] == [1.0, 1.0, 0.0, 0.0]


def test_minmax_gives_a_single_or_flat_leg_the_top_score() -> None:
    assert min_max(np.array([0.42])).tolist() == [1.0]
    assert min_max(np.array([0.3, 0.3, 0.3])).tolist() == [1.0, 1.0, 1.0]
    assert min_max(np.array([0.2, 0.4, 0.3])).tolist() == pytest.approx([0.0, 1.0, 0.5])


# -- rrf ---------------------------------------------------------------------------------------------------


def test_rrf_interleaves_by_rank_regardless_of_raw_scale() -> None:
    old = _leg(OLD, ("a1", 900.0), ("a2", 800.0), ("a3", 700.0))
    new = _leg(NEW, ("b1", 0.3), ("b2", 0.2))
    merged = ReciprocalRankMerger().merge(old, new, 10)
    assert _ids(merged) == ["b1", "a1", "b2", "a2", "a3"]
    assert merged[0].score == pytest.approx(1 / 61)
    assert merged[-1].score == pytest.approx(1 / 63)


def test_rrf_sums_both_legs_for_a_document_in_both() -> None:
    old = _leg(OLD, ("a1", 0.9), ("d", 0.8))
    new = _leg(NEW, ("b1", 0.9), ("d", 0.5))
    merged = ReciprocalRankMerger(k_rrf=60).merge(old, new, 3)
    assert _ids(merged) == ["d", "b1", "a1"]
    assert merged[0].score == pytest.approx(1 / 62 + 1 / 62)


def test_rrf_ranks_by_score_not_list_position() -> None:
    new = _leg(NEW, ("low", 0.1), ("high", 0.9))
    assert _ids(ReciprocalRankMerger().merge([], new, 2)) == ["high", "low"]


# -- zscore ------------------------------------------------------------------------------------------------


def _observe_normal(merger: ZScoreMerger, rng: np.random.Generator, queries: int) -> None:
    for _ in range(queries):
        old = [_hit(f"a{i}", s, OLD) for i, s in enumerate(rng.normal(0.5, 0.1, 10))]
        new = [_hit(f"b{i}", s, NEW) for i, s in enumerate(rng.normal(0.45, 0.1, 10))]
        merger.observe(old, new)


def test_zscore_running_stats_converge_to_the_index_distribution() -> None:
    merger = ZScoreMerger()
    _observe_normal(merger, np.random.default_rng(1), queries=500)
    mean, std, count = merger.statistics(OLD)
    assert count == 5000
    assert mean == pytest.approx(0.5, abs=0.02)
    assert std == pytest.approx(0.1, abs=0.01)
    assert merger.statistics("unseen") == (0.0, 0.0, 0)


def test_zscore_running_stats_change_the_ranking() -> None:
    old = _leg(OLD, ("a1", 0.9), ("a2", 0.7))
    new = _leg(NEW, ("b1", 0.5), ("b2", 0.1))
    merger = ZScoreMerger(min_observations=200)
    # List statistics alone: each leg's top is +1 sigma, a tie that goes to the new leg.
    assert _ids(merger.merge(old, new, 4)) == ["b1", "a1", "b2", "a2"]
    _observe_normal(merger, np.random.default_rng(2), queries=50)
    # Against the indexes' own distributions a1 (about +4 sigma) is far better than b1 (about +0.5).
    merged = merger.merge(old, new, 4)
    assert _ids(merged) == ["a1", "a2", "b1", "b2"]
    assert merged[0].score == pytest.approx(4.0, abs=0.5)


def test_zscore_stats_follow_a_drifting_index() -> None:
    merger = ZScoreMerger(alpha=0.01)
    merger.observe(_leg(OLD, *((f"a{i}", 0.2) for i in range(2000))), [])
    merger.observe(_leg(OLD, *((f"a{i}", 0.8) for i in range(2000))), [])
    assert merger.statistics(OLD)[0] == pytest.approx(0.8, abs=0.01)


def test_zscore_concurrent_observations_are_all_counted() -> None:
    merger = ZScoreMerger()
    leg = _leg(OLD, *((f"a{i}", 0.1 * i) for i in range(10)))

    def observe_many() -> None:
        for _ in range(200):
            merger.observe(leg, [])

    threads = [threading.Thread(target=observe_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert merger.statistics(OLD)[2] == 8 * 200 * 10


# -- isotonic fit ------------------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(
    st.lists(st.tuples(finite, finite), min_size=1, max_size=60), st.lists(finite, min_size=1, max_size=20)
)
def test_isotonic_fit_is_monotone_and_within_the_observed_range(
    pairs: list[tuple[float, float]], probes: list[float]
) -> None:
    x, y = zip(*pairs, strict=True)
    fitted = fit_isotonic(x, y)
    assert np.all(np.diff(fitted.x) > 0)
    assert np.all(np.diff(fitted.y) >= -1e-9 * max(1.0, float(np.abs(fitted.y).max())))
    mapped = fitted(np.sort(np.array(probes)))
    assert np.all(np.diff(mapped) >= -1e-6)
    slack = 1e-9 * max(1.0, max(abs(v) for v in y))
    assert np.all(mapped >= min(y) - slack)
    assert np.all(mapped <= max(y) + slack)


def test_isotonic_fit_pools_violators_to_their_mean() -> None:
    fitted = fit_isotonic([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0])
    assert fitted(np.array([1.0, 2.0, 3.0, 4.0])).tolist() == pytest.approx([1.0, 2.5, 2.5, 4.0])


def test_isotonic_fit_averages_equal_x_and_clamps_outside() -> None:
    fitted = fit_isotonic([0.0, 0.0, 1.0], [0.0, 1.0, 2.0])
    assert fitted(np.array([-5.0, 0.0, 0.5, 1.0, 9.0])).tolist() == pytest.approx([0.5, 0.5, 1.25, 2.0, 2.0])


def test_isotonic_fit_recovers_a_noisy_monotone_transform() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 1.0, 3000)
    b = _quadratic(a) + rng.normal(0.0, 0.01, a.size)
    grid = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(fit_isotonic(a, b)(grid), _quadratic(grid), atol=0.02)


def test_isotonic_fit_rejects_mismatched_input() -> None:
    with pytest.raises(ValueError):
        fit_isotonic([], [])
    with pytest.raises(ValueError):
        fit_isotonic([1.0, 2.0], [1.0])


# -- calibrated --------------------------------------------------------------------------------------------


def _fitted_calibrated() -> CalibratedMerger:
    merger = CalibratedMerger(min_pairs=50, refit_every=100)
    a = np.random.default_rng(4).uniform(0.0, 1.0, 500)
    merger.observe_pairs(list(zip(a.tolist(), _quadratic(a).tolist(), strict=True)))
    return merger


def test_calibrated_falls_back_to_minmax_until_enough_pairs() -> None:
    merger = CalibratedMerger(min_pairs=50)
    old = _leg(OLD, ("a1", 0.9), ("a2", 0.5))
    new = _leg(NEW, ("b1", 0.3), ("b2", 0.1))
    merger.observe_pairs([(0.5, 0.2)] * 49)
    assert not merger.fitted
    assert merger.merge(old, new, 4) == MinMaxMerger().merge(old, new, 4)
    merger.observe_pairs([(0.5, 0.2)])
    assert merger.fitted


def test_calibrated_maps_old_scores_onto_the_new_scale() -> None:
    mapped = _fitted_calibrated().map_old_scores([0.2, 0.6, 0.9])
    assert mapped is not None
    np.testing.assert_allclose(mapped, _quadratic(np.array([0.2, 0.6, 0.9])), atol=0.01)
    assert CalibratedMerger().map_old_scores([0.5]) is None


def test_calibrated_merge_interleaves_by_mapped_score() -> None:
    # A-scores 0.9 and 0.5 map to about 0.505 and 0.225 on B's scale.
    old = _leg(OLD, ("a-high", 0.9), ("a-low", 0.5))
    new = _leg(NEW, ("b-high", 0.6), ("b-mid", 0.4), ("b-low", 0.2))
    merged = _fitted_calibrated().merge(old, new, 5)
    assert _ids(merged) == ["b-high", "a-high", "b-mid", "a-low", "b-low"]
    assert merged[1].score == pytest.approx(0.505, abs=0.01)
    assert merged[1].raw_score == 0.9
    assert merged[0].score == 0.6


def test_calibrated_refits_as_the_relation_changes() -> None:
    merger = CalibratedMerger(min_pairs=10, refit_every=100, capacity=200)
    merger.observe_pairs([(x / 10, 0.1) for x in range(10)])
    assert merger.map_old_scores([0.5]) == pytest.approx([0.1])
    merger.observe_pairs([(x / 100, 0.9) for x in range(99)])
    assert merger.map_old_scores([0.5]) == pytest.approx([0.1]), "refit waits for refit_every new pairs"
    merger.observe_pairs([(x / 100, 0.9) for x in range(101)])
    assert merger.map_old_scores([0.5]) == pytest.approx([0.9])


def test_calibrated_observe_pairs_documents_both_legs_returned() -> None:
    old = [_hit("shared", 0.8, OLD), _hit("stale", 0.7, OLD, version=2), _hit("only-a", 0.6, OLD)]
    new = [_hit("shared", 0.3, NEW), _hit("stale", 0.2, NEW, version=1), _hit("only-b", 0.1, NEW)]
    assert shared_document_pairs(old, new) == [(0.8, 0.3)]
    merger = CalibratedMerger(min_pairs=1)
    merger.observe(old, new)
    assert merger.map_old_scores([0.8]) == pytest.approx([0.3])


def test_calibrated_serving_refits_are_spaced_and_one_at_a_time() -> None:
    now = [0.0]
    queued: list[Callable[[], None]] = []
    merger = CalibratedMerger(
        min_pairs=10, refit_every=10, refit_interval_s=1.0, run_fit=queued.append, clock=lambda: now[0]
    )
    merger.observe_pairs([(x / 10, 0.1) for x in range(10)])
    assert len(queued) == 1 and not merger.fitted, "the first fit is handed to the runner, not run inline"
    now[0] = 5.0
    merger.observe_pairs([(x / 10, 0.1) for x in range(10)])
    assert len(queued) == 1, "no second fit while one is in flight"
    queued.pop()()
    assert merger.map_old_scores([0.5]) == pytest.approx([0.1])
    merger.observe_pairs([(x / 100, 0.9) for x in range(200)])
    assert len(queued) == 1, "a refit is due: enough new pairs, a second since the last fit"
    queued.pop()()
    merger.observe_pairs([(x / 100, 0.5) for x in range(200)])
    assert queued == [], "the next refit waits for the interval"
    now[0] = 6.5
    merger.observe_pairs([(0.5, 0.5)])
    assert len(queued) == 1


def test_serving_calibrated_merger_fits_in_the_background() -> None:
    merger = make_merger("calibrated", serving=True)
    assert isinstance(merger, CalibratedMerger)
    merger.observe_pairs([(x / 100, x / 200) for x in range(100)])
    deadline = time.monotonic() + 5.0
    while not merger.fitted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert merger.map_old_scores([0.5]) == pytest.approx([0.25], abs=0.02)
