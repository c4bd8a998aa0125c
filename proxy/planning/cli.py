"""`switchyard plan`: command-line arguments and bench JSON into a PlanInput, then the report, JSON and plot."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from proxy.migration.retirement import StoragePolicy
from proxy.planning.estimate import plan
from proxy.planning.inputs import BENCH_KEYS, DEFAULT_RECALL_CURVE, Measurements, PlanInput
from proxy.planning.plot import write_plot
from proxy.planning.remote import RemoteEmbedding
from proxy.planning.report import format_plan, plan_to_json
from proxy.planning.units import DAY_S


def measurements_from_bench(raw: Mapping[str, Any], source: str) -> Measurements:
    """Measurements from a bench JSON object; missing keys keep the assumed defaults."""
    values = {k: float(raw[k]) for k in BENCH_KEYS if raw.get(k) is not None}
    return Measurements(**values, provenance={k: f"measured ({source})" for k in values})


def curve_from_bench(
    raw: Mapping[str, Any], strategy: str = "calibrated"
) -> tuple[tuple[float, float], ...] | None:
    """The bench's recall curve of one merge strategy or re-ranking k' (`recall_curves`); the calibrated merge
    also from the older `recall_curve` key. None when the bench measured no recall at all."""
    curves = raw.get("recall_curves") or {}
    curve = curves.get(strategy) or (raw.get("recall_curve") if strategy == "calibrated" else None)
    if curve:
        return tuple((float(c), float(r)) for c, r in curve)
    if curves:
        raise ValueError(
            f"--recall-strategy {strategy!r} is not in the bench results; measured: {', '.join(curves)}"
        )
    return None


def parse_curve(text: str) -> tuple[tuple[float, float], ...]:
    """'0:0.66,0.5:0.78,1:1' -> ((0.0, 0.66), (0.5, 0.78), (1.0, 1.0))."""
    try:
        return tuple((float(c), float(r)) for c, r in (pair.split(":") for pair in text.split(",")))
    except ValueError as exc:
        raise ValueError(f"--recall-curve wants coverage:recall pairs like 0:0.66,1:1, got {text!r}") from exc


def input_from_args(args: argparse.Namespace) -> PlanInput:
    measurements, curve, curve_source = Measurements(), DEFAULT_RECALL_CURVE, PlanInput.recall_curve_source
    if args.from_bench:
        raw = json.loads(Path(args.from_bench).read_text())
        measurements = measurements_from_bench(raw, Path(args.from_bench).name)
        bench_curve = curve_from_bench(raw, args.recall_strategy)
        if bench_curve:
            curve, curve_source = (
                bench_curve,
                f"measured ({Path(args.from_bench).name}, {args.recall_strategy})",
            )
    if args.embed_rate:
        measurements = _with(measurements, "embed_docs_per_s", args.embed_rate, "given (--embed-rate)")
    if args.insert_rate:
        measurements = _with(
            measurements, "index_insert_docs_per_s", args.insert_rate, "given (--insert-rate)"
        )
    if args.recall_curve:
        curve, curve_source = parse_curve(args.recall_curve), "given (--recall-curve)"
    remote = remote_from_args(args)
    if remote is not None:
        limit = remote.binding(args.tokens_per_doc)
        source = f"given (remote API limits: {limit.name} binds)"
        measurements = _with(measurements, "embed_docs_per_s", limit.docs_per_s, source)
    return PlanInput(
        docs=args.docs,
        dim=args.dim,
        write_rate=args.write_rate,
        qps=args.qps,
        latency_budget_ms=args.latency_budget_ms,
        measurements=measurements,
        tokens_per_doc=args.tokens_per_doc,
        tokens_per_query=args.tokens_per_query,
        price_per_1m_tokens=args.price_per_1m_tokens,
        zipf_s=args.zipf,
        hits_per_query=args.hits_per_query,
        old_dim=args.old_dim,
        storage_policy=StoragePolicy(args.storage_policy),
        backfill_rate_limit=args.backfill_rate_limit,
        recall_curve=curve,
        recall_curve_source=curve_source,
        traffic_target=args.traffic_target / 100,
        horizon_s=args.horizon_days * DAY_S,
        deadline_s=args.deadline_days * DAY_S if args.deadline_days else None,
        max_cost=args.max_cost,
        allow_downtime=args.allow_downtime,
        remote=remote,
    )


def remote_from_args(args: argparse.Namespace) -> RemoteEmbedding | None:
    """The remote API's limits when any is given; the round trip is then required (it sets the pace)."""
    given = [args.embed_concurrency, args.rpm, args.tpm, args.rtt_ms]
    if all(value is None for value in given):
        return None
    if args.rtt_ms is None:
        raise ValueError("--embed-concurrency, --rpm and --tpm need --rtt-ms (one batch's round trip)")
    return RemoteEmbedding(
        concurrency=args.embed_concurrency or 4,
        round_trip_ms=args.rtt_ms,
        batch_size=args.embed_batch,
        requests_per_minute=args.rpm,
        tokens_per_minute=args.tpm,
    )


def _with(m: Measurements, name: str, value: float, source: str) -> Measurements:
    values = {f.name: getattr(m, f.name) for f in fields(m)}
    values.update({name: value, "provenance": {**m.provenance, name: source}})
    return Measurements(**values)


def run_plan_command(args: argparse.Namespace) -> int:
    try:
        inp = input_from_args(args)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"switchyard plan: {exc}", file=sys.stderr)
        return 2
    result = plan(inp)
    print(format_plan(result))
    if args.json:
        Path(args.json).write_text(json.dumps(plan_to_json(result), indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.plot:
        try:
            write_plot(result, Path(args.plot))
        except ModuleNotFoundError:
            print(
                "switchyard plan: --plot needs matplotlib; install the extra: pip install 'switchyard[plot]'",
                file=sys.stderr,
            )
            return 2
        print(f"wrote {args.plot}")
    return 0
