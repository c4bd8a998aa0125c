"""SIGKILL at random points while clients write and the backfill runs: no acknowledged write is lost.

Two writer threads keep upserting, updating and deleting their own ids through real gRPC while the backfill
moves the corpus into the new index; a seeded RNG picks when the sidecar is killed (twice per run). After the
last restart the backfill must finish, and every id must read back as the last write its client saw
acknowledged (or a later one whose answer the kill cut off), held by both indexes at the same version,
through the API and in the index files.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path

import pytest

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import SidecarProcess, free_port
from tests.migration_support import migration_config
from tests.reliability.clients import Writer
from tests.reliability.support import (
    Ledger,
    Op,
    check_index_files,
    check_through_get,
    converged,
    record_result,
    wait_backfill_complete,
)

CORPUS = synthetic_corpus(400)
KILLS = 2
WRITERS = 2


def _config(data_dir: Path, redis_url: str) -> dict[str, object]:
    # Slow enough that both kills land while slices are still being moved; short leases so a restarted
    # sidecar takes over its dead predecessor's slices quickly.
    config = migration_config(data_dir, f"test-{uuid.uuid4().hex}", rate_limit=40, lease_ttl_s=1.0)
    config["state"]["redis_url"] = redis_url  # type: ignore[index]
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"  # type: ignore[index]
    return config


def _load(client: SwitchyardClient, ledger: Ledger) -> None:
    for start in range(0, len(CORPUS), 200):
        docs = [Doc(d.id, d.text, {"topic": d.topic}) for d in CORPUS[start : start + 200]]
        versions = client.upsert(docs)
        for doc in docs:
            ledger.add(doc.id, Op("upsert", doc.text, acked=True, version=versions[doc.id]))


def _writer_ids(group: int) -> list[str]:
    """Every 8th corpus id (spread over all slices, moved and not yet moved) plus ids new to the corpus."""
    return [d.id for d in CORPUS[group::8]] + [f"new-{group}-{i:02d}" for i in range(10)]


def _id_sets(writer: int) -> list[list[str]]:
    """One id set per run between kills; no two writers or runs share an id."""
    return [_writer_ids(run * WRITERS + writer) for run in range(KILLS + 1)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_dual_writes_and_backfill_loses_no_acknowledged_write(
    seed: int, shared_redis: str, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    sidecar = SidecarProcess(_config(tmp_path / "data", shared_redis), tmp_path / "sidecar").start()
    ledger = Ledger()
    alive, stop = threading.Event(), threading.Event()
    writers = [
        Writer(sidecar.target, _id_sets(n), ledger, seed * 10 + n, alive, stop) for n in range(WRITERS)
    ]
    try:
        with sidecar.client() as client:
            _load(client, ledger)
            client.admin.StartMigration(admin_pb.StartMigrationRequest())
        alive.set()
        for writer in writers:
            writer.start()
        progress_at_kills = [
            _kill_and_restart(sidecar, alive, writers, rng.uniform(0.3, 1.5)) for _ in range(KILLS)
        ]
        time.sleep(1.0)  # writes after the last restart, beside the resumed backfill
        stop.set()
        for writer in writers:
            writer.join(timeout=30)
        with sidecar.client() as client:
            status = wait_backfill_complete(client)
            api_problems, repaired_within = converged(lambda: check_through_get(client, ledger))
        sidecar.stop()
        file_problems, live = check_index_files(tmp_path / "data", {"idx-a": 32, "idx-b": 32})
    finally:
        stop.set()
        sidecar.kill()
    unexpected = [e for w in writers for e in w.unexpected]
    record_result(
        "sigkill",
        f"seed-{seed}",
        {
            "kills": KILLS,
            "backfill_done_at_kills": progress_at_kills,
            "acknowledged_writes": ledger.acked_writes(),
            "cut_off_writes": ledger.unacked_writes(),
            "ids_checked": len(ledger.ops),
            "live_documents": live,
            "lost_or_wrong": len(api_problems) + len(file_problems),
            "unexpected_errors": len(unexpected),
            "backfill_total": status.backfill.total,
            "consistent_after_s": round(repaired_within, 2),
        },
    )
    assert not unexpected, f"errors while the sidecar was up: {unexpected[:5]}"
    assert not api_problems, f"{len(api_problems)} problems through Get: {api_problems[:10]}"
    assert not file_problems, f"{len(file_problems)} problems in the index files: {file_problems[:10]}"
    assert all(done < total for done, total in progress_at_kills), (
        f"a kill after the backfill: {progress_at_kills}"
    )


def _kill_and_restart(
    sidecar: SidecarProcess, alive: threading.Event, writers: list[Writer], delay_s: float
) -> tuple[int, int]:
    """Kills the sidecar after `delay_s` mid-work and starts it again; returns the backfill's (done, total)."""
    time.sleep(delay_s)
    with sidecar.client() as client:
        backfill = client.status().backfill
    alive.clear()
    sidecar.kill()
    sidecar.start()
    for writer in writers:
        writer.phase += 1
    alive.set()
    return backfill.done, backfill.total
