"""The notes a plan prints under each strategy: what it embeds, what the throttle leaves, what to watch."""

from __future__ import annotations

from proxy.migration.retirement import StoragePolicy
from proxy.planning.inputs import PlanInput, Strategy
from proxy.planning.model import REGIMES, ResourceLoad, serving_p99_ms
from proxy.planning.simulate import SimulatedRun
from proxy.planning.units import format_count, format_duration


def strategy_notes(
    inp: PlanInput, strategy: Strategy, run: SimulatedRun, load: ResourceLoad
) -> tuple[str, ...]:
    regime = REGIMES[strategy]
    notes = []
    if load.worker_rate() <= 0:
        notes.append(
            "writes (and fan-out query embeddings) alone use up the new model's throughput: no progress"
        )
    if strategy is Strategy.OFFLINE:
        if run.finished_at is not None:
            window = format_duration(run.finished_at)
            notes.append(f"stale window {window}: answers stay on the old model while B is built")
        notes.append("writes made during the build are replayed into B before the switch")
        notes.append(
            "the build runs at full speed: nothing keeps query p99 in budget if it shares the machine"
        )
    if regime.backfill and regime.throttled and load.throttle_share < 1:
        notes.append(
            f"the throttle leaves the backfill {load.throttle_share:.0%} of its unloaded speed to keep p99 "
            f"({serving_p99_ms(inp, strategy):.1f} ms idle) under {inp.latency_budget_ms:g} ms"
        )
    if regime.lazy:
        notes.append(f"lazy re-embeds: {run.lazy_embeds:,.0f} documents moved because queries hit them")
    notes.append(_tokens_note(inp, run))
    if strategy is Strategy.LAZY:
        notes.append(_lazy_note(inp, run))
    if inp.storage_policy is StoragePolicy.RETIRE_AS_YOU_GO:
        notes.append(
            "retire_as_you_go frees A's copy of a document once B holds it (after index compaction)"
            if regime.fanout
            else "retire_as_you_go does not apply: A answers every query until cut-over"
        )
    if serving_p99_ms(inp, strategy) > inp.latency_budget_ms:
        notes.append(
            f"serving p99 {serving_p99_ms(inp, strategy):.1f} ms is over the budget before any backfill"
        )
    return tuple(notes)


def _tokens_note(inp: PlanInput, run: SimulatedRun) -> str:
    parts = [
        (run.reembeds * inp.tokens_per_doc, "re-embedding the corpus"),
        (run.write_embeds * inp.tokens_per_doc, "dual writes"),
        (run.query_embeds * inp.tokens_per_query, "fan-out queries"),
    ]
    spent = ", ".join(f"{format_count(t)} {what}" for t, what in parts if t > 0)
    return f"{format_count(run.embed_calls(inp.batch_size))} embedding calls; tokens: {spent}"


def _lazy_note(inp: PlanInput, run: SimulatedRun) -> str:
    if run.finished_at is not None:
        return (
            f"the cold tail is covered only after {format_duration(run.finished_at)}, when queries reach it "
            "(a document no query ranks in its top k would never move)"
        )
    return (
        f"never reaches full coverage within {format_duration(inp.horizon_s)}: "
        f"{run.corpus[-1]:.1%} of the corpus, {run.traffic[-1]:.2%} of traffic; cut-over needs 100%, "
        "so A is never retired"
    )
