"""Backfill pacing: the docs/s limit, and a duty that backs off while query p99 is over its latency budget."""

from __future__ import annotations

import pytest

from proxy.migration.throttle import AdaptiveThrottle, LatencyWindow


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _throttle(
    rate: float, budget_s: float | None, clock: _Clock, batch_time_s: float = 0.1
) -> tuple[AdaptiveThrottle, LatencyWindow]:
    window = LatencyWindow(window_s=10.0, clock=clock)
    return AdaptiveThrottle(rate, budget_s, window, clock=clock, batch_time_s=batch_time_s), window


def _queries(window: LatencyWindow, latency_s: float, count: int = 100) -> None:
    for _ in range(count):
        window.record(latency_s)


def test_rate_limit_spaces_batches_to_the_configured_docs_per_second() -> None:
    clock = _Clock()
    throttle, _ = _throttle(100.0, None, clock)
    waited = 0.0
    for _ in range(10):
        delay = throttle.delay()
        waited += delay
        clock.now += delay
        throttle.record_batch(50, 50, 0.0)
    # 500 documents at 100 docs/s: the first batch goes at once, the other nine wait 0.5 s each.
    assert waited == pytest.approx(4.5)


def test_rate_limit_holds_when_batches_take_time_of_their_own() -> None:
    clock = _Clock()
    throttle, _ = _throttle(100.0, None, clock)
    for _ in range(10):
        clock.now += throttle.delay()
        clock.now += 0.2  # the batch works 0.2 s
        throttle.record_batch(50, 50, 0.2)
    # 500 documents at 100 docs/s take 5 s from the first batch's start, however long each batch works.
    assert clock.now + throttle.delay() == pytest.approx(5.0)


def test_a_changed_rate_limit_applies_to_the_wait_already_owed() -> None:
    clock = _Clock()
    throttle, _ = _throttle(1.0, None, clock)
    throttle.record_batch(64, 64, 0.0)
    assert throttle.delay() == pytest.approx(64.0)
    throttle.rate_limit = 64.0
    assert throttle.delay() == pytest.approx(1.0)
    throttle.rate_limit = 0.0
    assert throttle.delay() == 0.0


def test_rate_limit_counts_only_documents_that_were_re_embedded() -> None:
    clock = _Clock()
    throttle, _ = _throttle(100.0, None, clock)
    throttle.record_batch(50, 0, 0.0)  # all 50 already in the new index: nothing embedded
    assert throttle.delay() == 0.0
    throttle.record_batch(50, 10, 0.0)
    assert throttle.delay() == pytest.approx(0.1)


def test_without_limit_or_budget_batches_are_whole_and_never_wait() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, None, clock)
    _queries(window, 1.0)
    for _ in range(5):
        throttle.record_batch(1000, 1000, 2.0)
        assert throttle.delay() == 0.0
    assert throttle.batch_size(256) == 256
    assert throttle.state().duty == 1.0 and throttle.state().reason == ""


def test_over_budget_halves_the_duty_at_most_once_a_second() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    _queries(window, 0.200)  # every query at 200 ms against a 50 ms budget
    throttle.state()
    throttle.state()
    state = throttle.state()
    assert state.duty == 0.5, "three looks within the same second halve once"
    assert "query p99 200.0ms over budget 50.0ms" in state.reason and "50% of the time" in state.reason
    clock.now += 1.0
    _queries(window, 0.200)
    assert throttle.state().duty == 0.25


def test_a_halving_is_judged_again_only_on_queries_answered_after_it() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    _queries(window, 0.200)
    assert throttle.state().duty == 0.5
    clock.now += 2.0
    # The slow queries are still in the window, but none came after the halving: no evidence, no change.
    assert throttle.state().duty == 0.5
    _queries(window, 0.005)
    clock.now += 1.0
    assert throttle.state().duty == pytest.approx(0.5 + AdaptiveThrottle.INCREASE_PER_S)


def test_duty_grows_back_to_full_while_queries_stay_within_budget() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    _queries(window, 0.200)
    throttle.state()
    for _ in range(30):
        clock.now += 1.0
        _queries(window, 0.005)
        throttle.state()
    assert throttle.state().duty == 1.0 and throttle.state().reason == ""


def test_rest_after_a_batch_keeps_the_backfill_to_its_duty() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    _queries(window, 0.200)
    assert throttle.state().duty == 0.5
    throttle.record_batch(10, 10, 0.3)
    # Working 0.3 s at half duty means resting 0.3 s.
    assert throttle.delay() == pytest.approx(0.3)
    clock.now += 0.3
    assert throttle.delay() == 0.0


def test_duty_has_a_floor_so_the_backfill_never_stops() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.001, clock)
    for _ in range(20):
        _queries(window, 1.0)
        throttle.state()
        clock.now += 1.0
    assert throttle.state().duty == AdaptiveThrottle.MIN_DUTY


def test_resume_begins_slowly_and_doubles_each_second_while_within_budget() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    throttle.resume()
    start = throttle.state()
    assert start.duty == AdaptiveThrottle.START_DUTY and "starting slowly" in start.reason
    for _ in range(2):
        clock.now += 1.0
        _queries(window, 0.005)
    assert throttle.state().duty == pytest.approx(4 * AdaptiveThrottle.START_DUTY)
    clock.now += 3.0
    _queries(window, 0.005)
    assert throttle.state().duty == 1.0


def test_slow_start_stops_where_the_last_halving_left_the_duty() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    _queries(window, 0.200)
    throttle.state()
    clock.now += 1.0
    _queries(window, 0.200)
    assert throttle.state().duty == 0.25
    throttle.resume()  # paused and resumed
    assert throttle.state().duty == AdaptiveThrottle.START_DUTY
    for _ in range(5):
        clock.now += 1.0
        _queries(window, 0.005)
        throttle.state()
    # 1/16 doubles to 1/4 in two seconds, then grows by INCREASE_PER_S a second for the other three.
    assert throttle.state().duty == pytest.approx(0.25 + 3 * AdaptiveThrottle.INCREASE_PER_S)


def test_resume_after_a_full_recovery_slow_starts_back_to_full() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    _queries(window, 0.200)
    throttle.state()  # halved once: the ceiling is 1/2
    for _ in range(30):
        clock.now += 1.0
        _queries(window, 0.005)
        throttle.state()
    assert throttle.state().duty == 1.0
    throttle.pause()
    throttle.resume()
    for _ in range(4):
        clock.now += 1.0
        _queries(window, 0.005)
    # 1/16 doubled four times: the duty it had when paused, not the old halving, bounds the slow start.
    assert throttle.state().duty == 1.0


def test_a_paused_backfill_judges_no_queries() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.050, clock)
    throttle.pause()
    for _ in range(5):
        clock.now += 1.0
        _queries(window, 0.500)
        throttle.state()
    assert throttle.state().duty == 1.0, "slow queries while paused are not the backfill's doing"
    throttle.resume()
    assert throttle.state().duty == AdaptiveThrottle.START_DUTY


def test_resume_without_a_budget_keeps_full_speed() -> None:
    clock = _Clock()
    throttle, _ = _throttle(0.0, None, clock)
    throttle.resume()
    assert throttle.state().duty == 1.0


def test_with_a_budget_batches_take_what_fits_in_the_batch_time() -> None:
    clock = _Clock()
    throttle, _ = _throttle(0.0, 0.050, clock, batch_time_s=0.1)
    assert throttle.batch_size(64) == 1, "speed not known yet: one document measures it"
    throttle.record_batch(4, 4, 0.2)  # 50 ms a document
    assert throttle.batch_size(64) == 2
    for _ in range(20):
        throttle.record_batch(throttle.batch_size(64), 100, 0.1)  # 1 ms a document now
    assert throttle.batch_size(64) == 64, "capped by the configured batch size"


def test_batches_grow_at_most_twofold_and_documents_already_moved_do_not_count() -> None:
    clock = _Clock()
    throttle, _ = _throttle(0.0, 0.050, clock, batch_time_s=0.1)
    throttle.record_batch(2, 2, 0.1)  # 50 ms a document: two fit
    assert throttle.batch_size(64) == 2
    throttle.record_batch(64, 0, 0.001)  # a stretch the new index already holds: nothing embedded
    assert throttle.batch_size(64) == 2, "the estimate is per embedded document"
    for _ in range(10):
        throttle.record_batch(2, 2, 0.0002)  # far faster now: some 70 would fit
    assert throttle.batch_size(64) == 4, "at most twice the last batch"


def test_a_batch_that_took_no_measurable_time_sizes_the_next_without_error() -> None:
    clock = _Clock()
    throttle, _ = _throttle(0.0, 0.050, clock)
    throttle.record_batch(10, 10, 0.0)
    assert throttle.batch_size(64) == 20


def test_without_queries_a_resumed_backfill_ramps_up_at_once() -> None:
    clock = _Clock()
    throttle, _ = _throttle(0.0, 0.050, clock)
    throttle.pause()
    throttle.resume()
    clock.now += 4.0
    assert throttle.state().duty == 1.0, "nothing to protect: 1/16 doubles to full in four seconds"


def test_too_few_queries_do_not_throttle() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.001, clock)
    _queries(window, 1.0, count=5)
    assert throttle.state().duty == 1.0


def test_p99_adds_how_late_the_event_loop_ran_and_forgets_both_after_the_window() -> None:
    clock = _Clock()
    window = LatencyWindow(window_s=10.0, clock=clock)
    _queries(window, 0.002, count=30)
    assert window.p99() == 0.002
    for _ in range(100):
        window.record_loop_lag(0.003)
    # A request that arrived while the loop was 3 ms late waited that long before its handler started.
    assert window.p99() == pytest.approx(0.005, abs=1e-12)
    clock.now = 11.0
    assert window.p99() is None, "everything is older than the window"
    _queries(window, 0.002, count=30)
    assert window.p99() == 0.002, "old loop lag no longer counts"


def test_p99_since_counts_only_queries_and_lags_from_then_on() -> None:
    clock = _Clock()
    window = LatencyWindow(window_s=10.0, clock=clock)
    _queries(window, 0.100, count=30)
    window.record_loop_lag(0.050)
    clock.now = 5.0
    assert window.p99(since=4.0) is None, "nothing answered since"
    _queries(window, 0.002, count=30)
    assert window.p99(since=4.0) == 0.002
    assert (window.p99() or 0.0) > 0.1


def test_a_late_loop_alone_pushes_the_throttle_back() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.004, clock)
    for _ in range(30):
        window.record(0.002)
        window.record_loop_lag(0.005)
    state = throttle.state()
    assert state.duty == 0.5 and "over budget" in state.reason
