"""The planner's remote embedding API: which limit binds, and how the plan's embedding rate follows it."""

from __future__ import annotations

import pytest

from proxy.cli.main import build_parser
from proxy.planning.cli import input_from_args
from proxy.planning.estimate import plan
from proxy.planning.remote import RemoteEmbedding
from proxy.planning.report import format_plan

BASE = ["plan", "--docs", "1000000", "--dim", "1536", "--qps", "10", "--write-rate", "1"]


def test_the_round_trip_binds_until_the_concurrency_reaches_the_budgets() -> None:
    remote = RemoteEmbedding(concurrency=2, round_trip_ms=200, batch_size=64, requests_per_minute=3000)
    limits = {limit.name: limit.docs_per_s for limit in remote.limits(tokens_per_doc=200)}
    assert limits == pytest.approx({"concurrency": 640.0, "rpm": 3200.0})
    assert remote.binding(200).name == "concurrency"
    assert remote.needed_concurrency(200) == 10  # 10 x 64 / 0.2 s = 3,200 docs/s, the rpm's rate


def test_a_token_budget_binds_long_documents() -> None:
    remote = RemoteEmbedding(
        concurrency=16, round_trip_ms=100, requests_per_minute=10_000, tokens_per_minute=1e6
    )
    assert remote.binding(tokens_per_doc=500).name == "tpm"
    assert remote.binding(tokens_per_doc=500).docs_per_s == pytest.approx(1e6 / 60 / 500)


@pytest.mark.parametrize(
    "bad", [{"concurrency": 0}, {"round_trip_ms": 0}, {"batch_size": 0}, {"requests_per_minute": 0}]
)
def test_nonsense_limits_are_refused(bad: dict[str, float]) -> None:
    values = {"concurrency": 1, "round_trip_ms": 100.0, **bad}
    with pytest.raises(ValueError):
        RemoteEmbedding(**values)  # type: ignore[arg-type]


def test_the_flags_set_the_embedding_rate_and_the_report_names_the_binding_limit() -> None:
    args = build_parser().parse_args([*BASE, "--embed-concurrency", "4", "--rtt-ms", "200", "--rpm", "600"])
    inp = input_from_args(args)
    assert inp.measurements.embed_docs_per_s == pytest.approx(600 / 60 * 64)
    assert inp.measurements.source_of("embed_docs_per_s") == "given (remote API limits: rpm binds)"
    report = format_plan(plan(inp))
    assert "remote: rpm" in report and "<- binds" in report
    rpm_line = next(line for line in report.splitlines() if "remote: rpm" in line)
    assert "<- binds" in rpm_line


def test_more_concurrency_is_suggested_when_the_round_trip_binds_below_the_budgets() -> None:
    args = build_parser().parse_args([*BASE, "--embed-concurrency", "1", "--rtt-ms", "200", "--rpm", "3000"])
    report = format_plan(plan(input_from_args(args)))
    assert "--embed-concurrency 10" in report


def test_limits_without_a_round_trip_are_refused() -> None:
    args = build_parser().parse_args([*BASE, "--rpm", "3000"])
    with pytest.raises(ValueError, match="--rtt-ms"):
        input_from_args(args)
