from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.model import RoutingMode
from proxy.core.router import BUCKETS, RoutingDecision, bucket_of, route

keys = st.text(max_size=64)
percents = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
new_paths = st.sampled_from([RoutingMode.DUAL, RoutingMode.NEW])


def _random_keys(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"user-{rng.getrandbits(64):016x}" for _ in range(count)]


def test_bucket_values_are_pinned_across_releases() -> None:
    # A different hash would reshuffle every user between old and new in the middle of a migration.
    assert [bucket_of(k) for k in ("user-42", "", "ünïcode")] == [598, 9876, 1293]


@given(keys)
def test_bucket_is_in_range(key: str) -> None:
    assert 0 <= bucket_of(key) < BUCKETS


@pytest.mark.parametrize("percent", [1.0, 10.0, 25.0, 50.0, 90.0])
def test_share_routed_new_matches_percent_within_tolerance(percent: float) -> None:
    routed = [route(k, percent, RoutingMode.NEW, None, True).mode for k in _random_keys(20_000, seed=7)]
    share = 100.0 * routed.count(RoutingMode.NEW) / len(routed)
    assert abs(share - percent) <= 1.5


def test_zero_and_hundred_percent_route_everyone_one_way() -> None:
    for key in _random_keys(2_000, seed=3):
        assert route(key, 0.0, RoutingMode.DUAL, None, True).mode is RoutingMode.OLD
        assert route(key, 100.0, RoutingMode.DUAL, None, True).mode is RoutingMode.DUAL


@given(keys, percents, new_paths)
def test_same_key_and_percent_always_land_on_the_same_side(
    key: str, percent: float, path: RoutingMode
) -> None:
    first = route(key, percent, path, None, True)
    assert all(route(key, percent, path, None, True) == first for _ in range(3))
    assert first.mode in (path, RoutingMode.OLD)


@given(keys, percents, percents, new_paths)
def test_raising_the_percent_never_moves_a_key_back_to_old(
    key: str, p1: float, p2: float, path: RoutingMode
) -> None:
    low, high = sorted((p1, p2))
    if route(key, low, path, None, True).mode is path:
        assert route(key, high, path, None, True).mode is path


def test_override_wins_over_the_split() -> None:
    key = next(k for k in _random_keys(100, seed=1) if bucket_of(k) >= 5000)
    decision = route(key, 10.0, RoutingMode.DUAL, RoutingMode.NEW, True)
    assert decision.mode is RoutingMode.NEW
    assert decision.reason.startswith("override")


def test_without_migration_old_answers_even_with_an_override() -> None:
    decision = route("k", 100.0, RoutingMode.NEW, RoutingMode.NEW, False)
    assert decision == RoutingDecision(RoutingMode.OLD, decision.reason)
    assert "no migration" in decision.reason


def test_reason_explains_the_split() -> None:
    key = "user-42"  # bucket 598
    assert route(key, 25.0, RoutingMode.DUAL, None, True).reason == "split bucket 598 < 2500 (25%)"
    assert route(key, 5.0, RoutingMode.DUAL, None, True).reason == "split bucket 598 >= 500 (5%)"


@pytest.mark.parametrize("percent", [-0.1, 100.01, float("nan"), float("inf")])
def test_percent_outside_range_is_rejected(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        route("k", percent, RoutingMode.DUAL, None, True)


@pytest.mark.parametrize("path", [RoutingMode.OLD, RoutingMode.SHADOW])
def test_split_target_must_be_dual_or_new(path: RoutingMode) -> None:
    with pytest.raises(ValueError, match="new_path"):
        route("k", 50.0, path, None, True)
