"""Migration planner: how long moving a corpus to a new embedding model takes, what it stores, costs and serves.

`plan(PlanInput)` estimates four strategies and recommends one. They differ in what happens before the
new index B takes all traffic:

- offline, "re-index all at once": build B from a snapshot at full speed, replay the writes made
  meanwhile, then switch. Queries stay on A: answers are the old model's for the whole build (the stale
  window), and nothing protects query latency if the build shares the serving machine.
- backfill, "progressive backfill": dual writes plus Switchyard's throttled backfill; queries stay on A
  until cut-over.
- lazy, "lazy re-embed on read only": dual writes; queries fan out to both indexes, and the documents they
  hit are re-embedded. Without a backfill the cold tail moves only when someone queries it, so the corpus
  may never be fully covered, and cut-over (which needs 100%) may never happen.
- parallel, "both models in parallel" (Switchyard's default): dual writes + backfill + lazy + fan-out/merge.

The modules, in the order they build on each other: `inputs` (what the planner is told; the bench JSON
schema), `model` (storage, Zipf access, throughput and the throttle; every assumption, stated),
`simulate` (one strategy over time), `results`, `notes`, `recommend`, `estimate` (`plan()`), then the
edges: `report` (text and JSON), `plot` (PNG) and `cli` (`switchyard plan`).
"""

from proxy.planning.cli import input_from_args, measurements_from_bench, run_plan_command
from proxy.planning.estimate import plan
from proxy.planning.inputs import (
    BENCH_KEYS,
    DEFAULT_RECALL_CURVE,
    THROTTLE_FLOOR,
    TITLES,
    Measurements,
    PlanInput,
    Strategy,
)
from proxy.planning.plot import write_plot
from proxy.planning.recommend import recommend, violations
from proxy.planning.report import format_plan, plan_to_json
from proxy.planning.results import Plan, StrategyPlan, TimelinePoint

__all__ = [
    "BENCH_KEYS",
    "DEFAULT_RECALL_CURVE",
    "THROTTLE_FLOOR",
    "TITLES",
    "Measurements",
    "Plan",
    "PlanInput",
    "Strategy",
    "StrategyPlan",
    "TimelinePoint",
    "format_plan",
    "input_from_args",
    "measurements_from_bench",
    "plan",
    "plan_to_json",
    "recommend",
    "run_plan_command",
    "violations",
    "write_plot",
]
