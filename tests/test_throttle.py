"""Backfill pacing: the docs/s limit, and AIMD back-off while query p99 is over its latency budget."""

from __future__ import annotations

from proxy.migration.throttle import AdaptiveThrottle, LatencyWindow


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def _throttle(rate: float, budget_s: float | None, clock: _Clock) -> tuple[AdaptiveThrottle, LatencyWindow]:
    window = LatencyWindow(window_s=10.0, clock=clock)
    return AdaptiveThrottle(rate, budget_s, window, clock=clock, sleep=clock.sleep), window


def test_rate_limit_spaces_batches_to_the_configured_docs_per_second() -> None:
    clock = _Clock()
    throttle, _ = _throttle(100.0, None, clock)
    for _ in range(10):
        throttle.wait_for(50)
    # 500 documents at 100 docs/s: the first batch goes at once, the other nine wait 0.5 s each.
    assert abs(clock.slept - 4.5) < 1e-9


def test_no_limit_never_sleeps() -> None:
    clock = _Clock()
    throttle, _ = _throttle(0.0, None, clock)
    assert sum(throttle.wait_for(1000) for _ in range(5)) == 0.0


def test_backs_off_while_p99_is_over_budget_and_recovers_after() -> None:
    clock = _Clock()
    throttle, window = _throttle(1000.0, 0.050, clock)
    for _ in range(100):
        window.record(0.200)  # every query at 200 ms against a 50 ms budget
    throttle.adjust(unthrottled_rate=1000.0)
    throttle.adjust(unthrottled_rate=1000.0)
    state = throttle.state()
    assert state.effective_rate == 250.0 and "over budget" in state.reason
    clock.now += 11.0  # the slow queries leave the window
    for _ in range(100):
        window.record(0.005)
    for _ in range(10):
        throttle.adjust(unthrottled_rate=1000.0)
    assert throttle.state().effective_rate == 1000.0 and throttle.state().reason == ""


def test_without_a_limit_back_off_starts_from_the_measured_speed() -> None:
    clock = _Clock()
    throttle, window = _throttle(0.0, 0.010, clock)
    for _ in range(50):
        window.record(0.100)
    throttle.adjust(unthrottled_rate=400.0)
    assert throttle.state().effective_rate == 200.0


def test_back_off_has_a_floor_so_the_backfill_never_stops() -> None:
    clock = _Clock()
    throttle, window = _throttle(640.0, 0.001, clock)
    for _ in range(50):
        window.record(1.0)
    for _ in range(20):
        throttle.adjust(unthrottled_rate=640.0)
    assert throttle.state().effective_rate == 10.0  # 640 / 64


def test_too_few_queries_do_not_throttle() -> None:
    clock = _Clock()
    throttle, window = _throttle(100.0, 0.001, clock)
    for _ in range(5):
        window.record(1.0)
    throttle.adjust(unthrottled_rate=100.0)
    assert throttle.state().effective_rate == 100.0


def test_p99_adds_how_late_the_event_loop_ran_and_forgets_both_after_the_window() -> None:
    clock = _Clock()
    window = LatencyWindow(window_s=10.0, clock=clock)
    for _ in range(30):
        window.record(0.002)
    assert window.p99() == 0.002
    for _ in range(100):
        window.record_loop_lag(0.003)
    # A request that arrived while the loop was 3 ms late waited that long before its handler started.
    assert abs((window.p99() or 0.0) - 0.005) < 1e-12
    clock.now = 11.0
    assert window.p99() is None, "everything is older than the window"
    for _ in range(30):
        window.record(0.002)
    assert window.p99() == 0.002, "old loop lag no longer counts"


def test_a_late_loop_alone_pushes_the_throttle_back() -> None:
    clock = _Clock()
    throttle, window = _throttle(100.0, 0.004, clock)
    for _ in range(30):
        window.record(0.002)
        window.record_loop_lag(0.005)
    throttle.adjust(100.0)
    assert throttle.state().effective_rate == 50.0
    assert "over budget" in throttle.state().reason
