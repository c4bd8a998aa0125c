"""The remote embedders' request limiter (AIMD concurrency, per-minute budgets, server hints) and batch splitting."""

from __future__ import annotations

import json
import math
import threading
import time

import httpx
import pytest

from proxy.adapters.embedders.http_dialects import OpenAIDialect, TEIDialect
from proxy.adapters.embedders.rate_limits import (
    ProviderLimits,
    RequestLimiter,
    estimate_tokens,
    parse_duration,
)
from proxy.adapters.embedders.remote_http import RemoteEmbedder, RemoteOptions, RetryPolicy
from proxy.core.errors import InvalidArgument


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **limits: float) -> RequestLimiter:
    return RequestLimiter(ProviderLimits(**limits), clock)  # type: ignore[arg-type]


def test_no_more_requests_in_flight_than_the_concurrency_allows() -> None:
    gate = limiter(Clock(), max_concurrency=3)
    assert [gate.try_acquire(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert gate.try_acquire(1) == math.inf
    gate.succeeded()
    assert gate.try_acquire(1) == 0.0
    assert gate.stats().in_flight == 3


def test_a_burst_of_429s_halves_the_concurrency_once_then_successes_raise_it_by_one_per_round() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=8)
    for _ in range(8):
        gate.try_acquire(1)
    for _ in range(8):
        gate.throttled(None)  # the eight were sent together: one decrease, not eight
    assert gate.stats().concurrency == 4
    clock.now += 2
    gate.try_acquire(1)
    gate.throttled(None)
    assert gate.stats().concurrency == 2
    for expected in (3, 4):
        for _ in range(expected - 1):
            gate.try_acquire(1)
            gate.succeeded()
        assert gate.stats().concurrency == expected
    for _ in range(100):
        gate.try_acquire(1)
        gate.succeeded()
    assert gate.stats().concurrency == 8  # never above the configured maximum
    assert gate.stats().throttled == 9


def test_the_concurrency_never_drops_below_one() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=2)
    for _ in range(5):
        gate.try_acquire(1)
        gate.throttled(None)
        clock.now += 5
    assert gate.stats().concurrency == 1
    assert gate.try_acquire(1) == 0.0


def test_retry_after_holds_every_new_request_until_it_passes() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=4)
    gate.try_acquire(1)
    gate.throttled(2.5)
    assert gate.try_acquire(1) == pytest.approx(2.5)
    clock.now += 2.5
    assert gate.try_acquire(1) == 0.0


def test_a_requests_per_minute_budget_spaces_requests_out() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=10, requests_per_minute=120)  # two a second
    assert gate.try_acquire(1) == 0.0
    assert gate.try_acquire(1) == 0.0
    assert gate.try_acquire(1) == pytest.approx(0.5)
    clock.now += 0.5
    assert gate.try_acquire(1) == 0.0


def test_a_tokens_per_minute_budget_counts_tokens_and_lets_a_large_request_run_into_debt() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=10, tokens_per_minute=600)  # ten a second
    assert gate.try_acquire(8) == 0.0
    assert gate.try_acquire(8) == pytest.approx(0.6)
    clock.now += 0.9  # full again (capped at ten)
    assert gate.try_acquire(50) == 0.0  # larger than the bucket: sent once it is full, then waited off
    assert gate.try_acquire(1) == pytest.approx(4.1)
    assert gate.stats().tokens_last_minute == 58


def test_remaining_requests_below_what_is_in_flight_hold_until_the_reset() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=4)
    for _ in range(3):
        gate.try_acquire(1)
    gate.succeeded({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "3s"})
    assert gate.try_acquire(1) == 0.0  # 5 left, 2 in flight
    gate.succeeded({"X-RateLimit-Remaining-Requests": "1", "X-RateLimit-Reset-Requests": "1.5s"})
    assert gate.try_acquire(1) == pytest.approx(1.5)  # 1 left, 2 in flight: they use it up
    clock.now += 1.5
    assert gate.try_acquire(1) == 0.0


def test_no_tokens_remaining_holds_until_the_token_reset() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=4)
    gate.try_acquire(1)
    gate.succeeded({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"})
    assert gate.try_acquire(1) == pytest.approx(360.0)


def test_the_last_minute_of_requests_and_tokens_is_reported() -> None:
    clock = Clock()
    gate = limiter(clock, max_concurrency=100, requests_per_minute=6000, tokens_per_minute=1e6)
    for _ in range(3):
        gate.try_acquire(10)
    clock.now += 61
    gate.try_acquire(7)
    stats = gate.stats()
    assert (stats.requests_last_minute, stats.tokens_last_minute) == (1, 7)
    assert (stats.requests_per_minute, stats.tokens_per_minute) == (6000, 1e6)


def test_a_refused_batch_size_is_halved_and_the_smallest_accepted_kept() -> None:
    gate = limiter(Clock())
    assert gate.batch_size(64) == 64
    assert gate.refused_as_too_large(64) == 32
    assert gate.refused_as_too_large(64) == 32
    assert gate.refused_as_too_large(32) == 16
    assert gate.batch_size(64) == 16 and gate.batch_size(8) == 8
    assert gate.refused_as_too_large(1) == 1


def test_acquire_waits_for_a_free_slot_and_wakes_when_one_is_freed() -> None:
    gate = RequestLimiter(ProviderLimits(max_concurrency=1))
    gate.acquire(1)
    admitted = threading.Event()
    waiter = threading.Thread(target=lambda: (gate.acquire(1), admitted.set()), daemon=True)
    waiter.start()
    assert not admitted.wait(0.2)
    gate.succeeded()
    assert admitted.wait(10)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("soon", None),
        ("", None),
    ],
)
def test_reset_durations_are_read_as_openai_writes_them(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_tokens_are_estimated_at_four_bytes_each_and_at_least_one() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("é" * 4) == 2


@pytest.mark.parametrize(
    "limits", [{"max_concurrency": 0}, {"requests_per_minute": 0}, {"tokens_per_minute": -1}]
)
def test_nonsense_limits_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ProviderLimits(**limits)  # type: ignore[arg-type]


# -- splitting, against a scripted transport (no server) -------------------------------------------------


def _tei_capped(cap: int, seen: list[int]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["inputs"]
        seen.append(len(inputs))
        if len(inputs) > cap:
            message = f"batch size {len(inputs)} > maximum allowed batch size {cap}"
            return httpx.Response(422, json={"error": message, "error_type": "Validation"})
        return httpx.Response(200, json=[[float(len(t)), 1.0] for t in inputs])

    return httpx.MockTransport(handle)


def test_a_batch_refused_as_too_large_is_split_in_order_and_the_accepted_size_remembered() -> None:
    seen: list[int] = []
    remote = RemoteEmbedder(
        "tei",
        TEIDialect("http://tei"),
        dim=2,
        options=RemoteOptions(batch_size=20),
        transport=_tei_capped(6, seen),
    )
    texts = ["x" * n for n in range(1, 21)]
    vectors = remote.embed(texts)
    assert seen[:4] == [20, 10, 5, 5]  # halved until accepted
    assert sum(n for n in seen if n <= 6) == 20  # every text embedded once
    expected = [[n, 1.0] for n in range(1, 21)]
    assert [round(float(v[0] / v[1])) for v in vectors] == [e[0] for e in expected]
    seen.clear()
    remote.embed(texts)
    assert max(seen) <= 5  # later calls start at the accepted size
    assert remote.load().batch_cap == 5


def test_one_input_refused_as_too_large_is_the_caller_s_error_not_a_split() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(413, json={"error": {"message": "Request Entity Too Large"}})

    remote = RemoteEmbedder(
        "m",
        OpenAIDialect("http://api/v1", "m"),
        dim=2,
        options=RemoteOptions(retry=RetryPolicy(max_retries=0)),
        transport=httpx.MockTransport(handle),
    )
    with pytest.raises(InvalidArgument, match="413"):
        remote.embed(["one long text"])


def test_a_query_waiting_for_a_slot_goes_before_the_batches_waiting_with_it() -> None:
    gate = RequestLimiter(ProviderLimits(max_concurrency=1))
    gate.acquire(1)
    order: list[str] = []
    batch_waiting, query_waiting = threading.Event(), threading.Event()

    def take(name: str, urgent: bool, waiting: threading.Event) -> None:
        waiting.set()
        gate.acquire(1, urgent)
        order.append(name)
        gate.succeeded()

    batch = threading.Thread(target=take, args=("batch", False, batch_waiting), daemon=True)
    batch.start()
    batch_waiting.wait(10)
    query = threading.Thread(target=take, args=("query", True, query_waiting), daemon=True)
    query.start()
    query_waiting.wait(10)
    for _ in range(1000):  # until the query is inside acquire, counted as waiting
        if gate._urgent_waiting:
            break
        time.sleep(0.01)
    gate.succeeded()  # frees the one slot: the query takes it first
    batch.join(10)
    query.join(10)
    assert order == ["query", "batch"]


def test_an_urgent_request_is_refused_a_slot_only_by_the_concurrency() -> None:
    gate = limiter(Clock(), max_concurrency=2)
    gate._urgent_waiting = 1  # a query is waiting
    assert gate.try_acquire(1) == math.inf
    assert gate.try_acquire(1, urgent=True) == 0.0


@pytest.mark.parametrize(
    ("status", "message", "split"),
    [
        (422, "batch size 64 > maximum allowed batch size 32", True),
        (400, "Requested 310000 tokens, max 300000 tokens per request", True),
        (400, "'$.input' is invalid: array too long, maximum 2048 items", True),
        (413, "Request Entity Too Large", True),
        (400, "This model's maximum context length is 8192 tokens, however you requested 9000 tokens", False),
        (422, "Input validation error: inputs must have less than 512 tokens", False),
    ],
)
def test_only_a_refusal_of_the_batch_size_splits_the_batch(status: int, message: str, split: bool) -> None:
    sizes: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["input"]
        sizes.append(len(inputs))
        if len(inputs) > 1:
            return httpx.Response(status, json={"error": {"message": message}})
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 0.0]}]})

    remote = RemoteEmbedder(
        "m",
        OpenAIDialect("http://api/v1", "m"),
        dim=2,
        options=RemoteOptions(retry=RetryPolicy(max_retries=0)),
        transport=httpx.MockTransport(handle),
    )
    if split:
        assert len(remote.embed(["a", "b", "c", "d"])) == 4
        assert sizes == [4, 2, 1, 1, 1, 1]
    else:
        with pytest.raises(InvalidArgument, match="HTTP"):
            remote.embed(["a", "b", "c", "d"])
        assert sizes == [4] and remote.load().batch_cap is None
