"""Redis goes away mid-migration and comes back empty: queries never notice, writes are refused, not lost.

A private redis-server without persistence holds the sidecar's shared state. While it is down, queries are
answered from the last known phase and split, reads by id work, and every write fails UNAVAILABLE (its
version would come from Redis). The restarted Redis is empty: the sidecar writes the phase, split and rate
it remembers back, keeps new versions above every version the indexes hold, plans the backfill again and
finishes it; every write a client saw acknowledged, before or after the outage, is in both indexes.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import synthetic_corpus, synthetic_queries
from proxy.demo.sidecar_process import SidecarProcess, free_port
from tests.migration_support import migration_config
from tests.reliability.clients import Answer, Querier, Writer
from tests.reliability.support import (
    Ledger,
    Op,
    RedisServer,
    check_index_files,
    check_through_get,
    converged,
    record_result,
    wait_backfill_complete,
)

CORPUS = synthetic_corpus(300)
OUTAGE_S = 2.5
SPLIT = 50.0
RATE = 70.0


def _config(data_dir: Path, redis_url: str) -> dict[str, Any]:
    config = migration_config(data_dir, f"outage-{uuid.uuid4().hex}", rate_limit=100, lease_ttl_s=1.0)
    config["state"]["redis_url"] = redis_url
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    return config


def _start_migration(client: SwitchyardClient, ledger: Ledger) -> None:
    docs = [Doc(d.id, d.text, {"topic": d.topic}) for d in CORPUS]
    versions = client.upsert(docs)
    for doc in docs:
        ledger.add(doc.id, Op("upsert", doc.text, acked=True, version=versions[doc.id]))
    client.admin.StartMigration(admin_pb.StartMigrationRequest())
    client.admin.SetTrafficSplit(admin_pb.SetTrafficSplitRequest(percent=SPLIT))
    client.admin.SetBackfillRate(admin_pb.SetBackfillRateRequest(docs_per_second=RATE))
    while client.status().backfill.done < 60:
        time.sleep(0.05)


def _upsert_outcome(client: SwitchyardClient, ledger: Ledger, doc: Doc) -> grpc.StatusCode:
    try:
        version = client.upsert([doc])[doc.id]
    except grpc.RpcError as exc:
        ledger.add(doc.id, Op("upsert", doc.text, acked=False, version=None))
        return exc.code()
    ledger.add(doc.id, Op("upsert", doc.text, acked=True, version=version))
    return grpc.StatusCode.OK


def _wait_restored(client: SwitchyardClient, timeout_s: float = 15.0) -> tuple[Any, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            status = client.status()
            if status.phase != "planned":
                return status, time.monotonic() - started
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise AssertionError("the sidecar never restored the migration state into the restarted Redis")


def test_redis_outage_keeps_queries_answered_refuses_writes_and_recovers_an_empty_redis(
    tmp_path: Path,
) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    sidecar = SidecarProcess(_config(tmp_path / "data", redis_server.url), tmp_path / "sidecar")
    ledger, stop, alive = Ledger(), threading.Event(), threading.Event()
    writer = Writer(sidecar.target, [[f"w-{i:03d}" for i in range(60)]], ledger, 5, alive, stop)
    querier = Querier(sidecar.target, synthetic_queries(50), 6, stop)
    try:
        sidecar.start()
        client = sidecar.client()
        _start_migration(client, ledger)
        alive.set()
        writer.start()
        querier.start()
        time.sleep(0.5)
        version_before = max(op.version or 0 for ops in ledger.ops.values() for op in ops)

        redis_server.stop()
        down_at = time.monotonic()
        time.sleep(0.3)
        probe_down = _upsert_outcome(client, ledger, Doc(CORPUS[7].id, "written while Redis is down"))
        read_down = client.get([CORPUS[3].id]).documents
        time.sleep(OUTAGE_S - 0.3)
        up_at = time.monotonic()
        redis_server.start()

        # Before the sidecar notices the empty Redis: the version must still be newer than any before.
        probe_text = "written into the restarted, empty Redis"
        probe_up = _upsert_outcome(client, ledger, Doc(CORPUS[8].id, probe_text))
        status, restored_after = _wait_restored(client)
        time.sleep(0.5)  # writes and queries beside the re-planned backfill
        stop.set()
        writer.join(timeout=30)
        querier.join(timeout=30)
        wait_backfill_complete(client)
        problems, _ = converged(lambda: check_through_get(client, ledger))
        probe_read = client.get([CORPUS[8].id]).documents[0]
        client.close()
        sidecar.stop()
        file_problems, _ = check_index_files(tmp_path / "data", {"idx-a": 32, "idx-b": 32})
    finally:
        stop.set()
        sidecar.kill()
        redis_server.stop()

    during = [a for a in querier.answers if down_at + 0.05 < a.at < up_at]
    write_errors = {code.name for code, _ in writer.errors}
    _record(during, writer, ledger, up_at - down_at, restored_after, status, problems + file_problems)
    assert len(during) > 20, "the querier kept asking during the outage"
    assert all(a.code is grpc.StatusCode.OK for a in during), {a.code.name for a in during}
    assert {a.served_by for a in during} == {pb.ROUTING_MODE_OLD, pb.ROUTING_MODE_DUAL}, "the split held"
    assert read_down and read_down[0].id == CORPUS[3].id
    assert probe_down is grpc.StatusCode.UNAVAILABLE, "a write without a version must be refused"
    assert write_errors <= {"UNAVAILABLE"}, write_errors
    assert probe_up is grpc.StatusCode.OK
    assert probe_read.text == probe_text and probe_read.version > version_before
    assert list(probe_read.indexes) == ["idx-a", "idx-b"]
    assert status.phase == "backfilling" and status.traffic_percent == SPLIT
    assert status.backfill.rate_limit == RATE
    assert "restored" in status.history[-1].reason
    assert not problems, problems[:10]
    assert not file_problems, file_problems[:10]


def _record(
    during: list[Answer],
    writer: Writer,
    ledger: Ledger,
    outage_s: float,
    restored_after: float,
    status: Any,
    problems: list[str],
) -> None:
    record_result(
        "redis_outage",
        "empty-restart",
        {
            "outages": 1,
            "outage_s": round(outage_s, 2),
            "queries_during_outage": len(during),
            "query_errors_during_outage": sum(a.code is not grpc.StatusCode.OK for a in during),
            "writes_refused_unavailable": sum(
                code is grpc.StatusCode.UNAVAILABLE for code, _ in writer.errors
            ),
            "acknowledged_writes": ledger.acked_writes(),
            "restored_phase": status.phase,
            "restored_within_s": round(restored_after, 2),
            "lost_or_wrong": len(problems),
        },
    )
