"""Concurrent clients over real gRPC while the backfill runs: no error, no lost write; p99 is reported.

Eight client threads (five querying with random routing keys on a 50% split, three upserting, updating
and deleting their own ids) run against one sidecar process for a bounded time and number of calls, while
a rate-limited backfill moves the corpus. Afterwards the backfill completes and every acknowledged write
reads back at its version from both indexes. Query latency percentiles go to the results file; there is
no timing assertion (the machine may be shared).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import synthetic_corpus, synthetic_queries
from proxy.demo.sidecar_process import SidecarProcess, free_port
from tests.migration_support import migration_config
from tests.reliability.clients import Querier, Writer
from tests.reliability.support import (
    Ledger,
    Op,
    check_index_files,
    check_through_get,
    converged,
    percentile,
    record_result,
    wait_backfill_complete,
)

CORPUS = synthetic_corpus(1200)
QUERIERS = 5
WRITERS = 3
DURATION_S = 15.0
MAX_CALLS = 40_000


def _config(data_dir: Path, redis_url: str) -> dict[str, Any]:
    # The limit paces re-embedding, not the scan: documents the writers dual-write are skipped without
    # counting against it, so the scan runs ahead of it. 35 docs/s keeps the backfill going past the load.
    config = migration_config(data_dir, f"load-{uuid.uuid4().hex}", rate_limit=35)
    config["state"]["redis_url"] = redis_url
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    return config


def _load(client: SwitchyardClient, ledger: Ledger) -> None:
    for start in range(0, len(CORPUS), 300):
        docs = [Doc(d.id, d.text, {"topic": d.topic}) for d in CORPUS[start : start + 300]]
        versions = client.upsert(docs)
        for doc in docs:
            ledger.add(doc.id, Op("upsert", doc.text, acked=True, version=versions[doc.id]))


def _writer_ids(n: int) -> list[str]:
    return [d.id for d in CORPUS[n :: WRITERS * 4]] + [f"load-{n}-{i:03d}" for i in range(50)]


def test_concurrent_queries_and_writes_during_backfill_lose_nothing(
    shared_redis: str, tmp_path: Path
) -> None:
    sidecar = SidecarProcess(_config(tmp_path / "data", shared_redis), tmp_path / "sidecar").start()
    ledger, stop, alive = Ledger(), threading.Event(), threading.Event()
    alive.set()
    texts = synthetic_queries(200)
    writers = [Writer(sidecar.target, [_writer_ids(n)], ledger, 100 + n, alive, stop) for n in range(WRITERS)]
    queriers = [Querier(sidecar.target, texts, 200 + n, stop) for n in range(QUERIERS)]
    try:
        with sidecar.client() as client:
            _load(client, ledger)
            client.admin.StartMigration(admin_pb.StartMigrationRequest())
            client.admin.SetTrafficSplit(admin_pb.SetTrafficSplitRequest(percent=50))
            started = time.monotonic()
            for thread in (*writers, *queriers):
                thread.start()
            elapsed, max_pending = _run_until_bounded(client, queriers, ledger, started)
            # Read before the clients wind down: joining them may take a few seconds more.
            during = client.status().backfill
            stop.set()
            for thread in (*writers, *queriers):
                thread.join(timeout=30)
            status = wait_backfill_complete(client)
            problems, _ = converged(lambda: check_through_get(client, ledger))
            pending_after = _pending_repairs_settle(client)
        sidecar.stop()
        file_problems, live = check_index_files(tmp_path / "data", {"idx-a": 32, "idx-b": 32})
    finally:
        stop.set()
        sidecar.kill()

    answers = [a for q in queriers for a in q.answers]
    errors = [a.code.name for a in answers if a.code is not grpc.StatusCode.OK]
    errors += [code.name for w in writers for code, _ in w.errors]
    latencies_ms = [a.latency_s * 1000 for a in answers if a.code is grpc.StatusCode.OK]
    figures = {
        "clients": QUERIERS + WRITERS,
        "duration_s": round(elapsed, 1),
        "queries": len(answers),
        "queries_per_s": round(len(answers) / elapsed, 1),
        "query_p50_ms": round(percentile(latencies_ms, 50), 2),
        "query_p99_ms": round(percentile(latencies_ms, 99), 2),
        "query_max_ms": round(max(latencies_ms, default=0.0), 2),
        "acknowledged_writes": ledger.acked_writes(),
        "pending_repairs_max": max_pending,
        "errors": len(errors),
        "backfill_done_when_load_stopped": f"{during.done}/{during.total}",
        "live_documents": live,
        "lost_or_wrong": len(problems) + len(file_problems),
    }
    record_result("load", "mixed-8-clients", figures)
    print(f"\nload: {figures}")
    assert not errors, f"{len(errors)} failed calls: {sorted(set(errors))}"
    assert not problems, problems[:10]
    assert not file_problems, file_problems[:10]
    assert during.done < during.total, "the backfill was still running while the load ran"
    assert status.backfill.complete
    assert pending_after == 0, "every dual write's repair entry settled"


def _run_until_bounded(
    client: SwitchyardClient, queriers: list[Querier], ledger: Ledger, started: float
) -> tuple[float, int]:
    """Lets the clients run for DURATION_S or MAX_CALLS calls, whichever comes first.

    Returns the seconds and the most repair entries seen pending (one per dual-written document until
    the worker confirms it landed in both indexes).
    """
    max_pending = 0
    while time.monotonic() - started < DURATION_S:
        calls = sum(len(q.answers) for q in queriers) + ledger.writes()
        if calls >= MAX_CALLS:
            break
        max_pending = max(max_pending, client.status().backfill.pending_repairs)
        time.sleep(0.5)
    return time.monotonic() - started, max_pending


def _pending_repairs_settle(client: SwitchyardClient, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (pending := client.status().backfill.pending_repairs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pending
