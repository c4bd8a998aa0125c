"""`switchyard demo`: a complete run on the embedded default (hnswlib + local state), no server needed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.admin_cli import watch
from proxy.client import Doc, SwitchyardClient
from proxy.corpus import synthetic_corpus
from proxy.sidecar_process import SidecarProcess, free_port

BATCH = 200


def demo_config(data_dir: Path, port: int, rate_limit: float = 0.0) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir / "data"),
        "server": {"listen": f"127.0.0.1:{port}", "max_batch_size": 500},
        "models": {
            "hash-v1": {"kind": "hashing", "dim": 128, "seed": 1},
            "hash-v2": {"kind": "hashing", "dim": 128, "seed": 2},
        },
        "indexes": {
            "docs-v1": {"model": "hash-v1"},
            "docs-v2": {"model": "hash-v2"},
        },
        "serving_index": "docs-v1",
        "migration": {
            "old_index": "docs-v1",
            "new_index": "docs-v2",
            "backfill": {"batch_size": 100, "rate_limit": rate_limit, "slice_size": 500},
        },
        "query": {"merge": "calibrated", "traffic_percent": 0},
    }


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _load(client: SwitchyardClient, docs: int) -> None:
    corpus = synthetic_corpus(docs)
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


def _split(client: SwitchyardClient, percent: float) -> None:
    client.admin.SetTrafficSplit(admin_pb.SetTrafficSplitRequest(percent=percent))
    paths = [client.query("garlic broth", k=1, routing_key=f"user-{n}").served_by for n in range(200)]
    on_new = sum(p != pb.ROUTING_MODE_OLD for p in paths)
    print(f"split {percent:g}%: {on_new} of 200 users on the new path (sticky per user)")


def _migrate(client: SwitchyardClient) -> None:
    _say("phase planned: only the old model's index serves")
    _show_query(client, "telescope orbit for students")
    _say("starting the migration: dual writes on, backfill re-embeds the corpus with hash-v2")
    print(f"phase -> {client.admin.StartMigration(admin_pb.StartMigrationRequest()).phase}")
    client.upsert([Doc("written-during-backfill", "a new guide to comet tails for students")])
    held = client.get(["written-during-backfill"]).documents[0].indexes
    print(f"a document written now lands in both indexes: {list(held)}")
    time.sleep(1.0)
    _show_query(client, "telescope orbit for students", mode=pb.ROUTING_MODE_DUAL)
    _say("backfill progress (switchyard migrate status --watch)")
    status = watch(client, 0.25)
    print(f"backfill complete: {status.backfill.done} documents, coverage {status.coverage:.0%}")
    _say("validate, then shift traffic step by step")
    _transition(client, "validated", "backfill complete")
    _transition(client, "shifting", "start canary")
    for percent in (5, 25, 100):
        _split(client, percent)
    _show_query(client, "telescope orbit for students", routing_key="user-1")
    _say("cut over: the new index is the source of truth; the old one is kept in step for rollback")
    _transition(client, "cut_over", "all traffic on the new model")
    _show_query(client, "telescope orbit for students")
    _transition(client, "old_retired", "rollback window closed")


def run_demo(workdir: Path, docs: int = 2000, port: int = 0) -> int:
    shutil.rmtree(workdir, ignore_errors=True)
    # The rate limit stretches the backfill over a few seconds so the progress bar is worth watching.
    config = demo_config(workdir, port or free_port(), rate_limit=max(200.0, docs / 6))
    sidecar = SidecarProcess(config, workdir)
    _say(f"starting the sidecar on {sidecar.target} (data in {workdir / 'data'}, log in {sidecar.log_path})")
    with sidecar, sidecar.client() as client:
        _say(f"loading {docs} documents, embedded with hash-v1")
        _load(client, docs)
        _migrate(client)
    _say("restarting the sidecar: indexes and migration state are reloaded from disk")
    with sidecar, sidecar.client() as client:
        print(f"phase after restart: {client.status().phase}")
        _show_query(client, "garlic broth recipe")
    _say("demo finished: the corpus moved from hash-v1 to hash-v2 while it kept serving")
    return 0
