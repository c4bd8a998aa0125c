"""The migration across real processes: SIGKILL mid-backfill, two replicas sharing one Redis, the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import free_port
from tests.conftest import SidecarFactory
from tests.migration_support import migration_config, writes_applied

CORPUS = synthetic_corpus(600)


def _config(data_dir: Path, namespace: str, rate_limit: float) -> dict[str, Any]:
    config = migration_config(data_dir, namespace, rate_limit=rate_limit)
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    return config


def _load(client: SwitchyardClient) -> None:
    for start in range(0, len(CORPUS), 200):
        client.upsert([Doc(d.id, d.text, {"topic": d.topic}) for d in CORPUS[start : start + 200]])


def _wait_complete(client: SwitchyardClient, timeout_s: float = 60.0) -> admin_pb.GetMigrationStatusResponse:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.status()
        if status.backfill.complete:
            return status
        time.sleep(0.1)
    raise AssertionError(f"backfill incomplete after {timeout_s}s: {client.status()}")


def _wait_done_at_least(client: SwitchyardClient, fraction: float) -> int:
    while True:
        status = client.status()
        if status.backfill.total and status.backfill.done >= fraction * status.backfill.total:
            return status.backfill.done
        time.sleep(0.02)


def test_backfill_killed_with_sigkill_resumes_and_completes(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    sidecar = start_sidecar(_config(tmp_path / "data", namespace, rate_limit=300))
    with sidecar.client() as client:
        _load(client)
        client.admin.StartMigration(admin_pb.StartMigrationRequest())
        done_before_kill = _wait_done_at_least(client, 0.3)
        update = client.upsert([Doc(CORPUS[599].id, "updated after the migration started")])
    sidecar.kill()
    sidecar.start()
    with sidecar.client() as client:
        resumed_from = client.status().backfill.done
        status = _wait_complete(client)
        ids = [d.id for d in CORPUS]
        documents = [d for start in (0, 300) for d in client.get(ids[start : start + 300]).documents]
    assert done_before_kill < len(CORPUS) and resumed_from >= done_before_kill
    assert status.coverage == 1.0 and status.backfill.done == len(CORPUS)
    assert all(list(d.indexes) == ["idx-a", "idx-b"] for d in documents), "every doc in B at A's version"
    assert {d.id: d.version for d in documents}[CORPUS[599].id] == update[CORPUS[599].id]
    # One row write per document: the dual-written update made the backfill skip that document, and the
    # batch cut short by SIGKILL was not written again after the restart.
    assert writes_applied(tmp_path / "data" / "indexes" / "idx-b") == len(CORPUS)


def test_two_sidecars_sharing_redis_split_the_backfill(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    first_config = _config(tmp_path / "one", namespace, rate_limit=250)
    loader = start_sidecar(first_config, name="loader")
    with loader.client() as client:
        _load(client)
    loader.stop()
    # Each replica embeds into its own hnswlib files, so each starts from the same copy of the old index.
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    second_config = _config(tmp_path / "two", namespace, rate_limit=250)
    one = start_sidecar(first_config, name="replica-one")
    two = start_sidecar(second_config, name="replica-two")
    with one.client() as client:
        client.admin.StartMigration(admin_pb.StartMigrationRequest())
        _wait_complete(client)
    ids = [d.id for d in CORPUS]
    one.stop()
    two.stop()
    moved_by_one = _index_ids(tmp_path / "one" / "indexes" / "idx-b", ids)
    moved_by_two = _index_ids(tmp_path / "two" / "indexes" / "idx-b", ids)
    assert moved_by_one and moved_by_two, "both replicas took slices"
    assert not moved_by_one & moved_by_two, "no document was re-embedded by both"
    assert moved_by_one | moved_by_two == set(ids)


def _index_ids(directory: Path, ids: list[str]) -> set[str]:
    from proxy.adapters.hnsw import HnswIndex

    index = HnswIndex("check", 32, directory)
    try:
        return {d.id for d in index.get(ids)}
    finally:
        index.close()


def test_migrate_cli_drives_a_running_sidecar(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    sidecar = start_sidecar(_config(tmp_path / "data", f"test-{uuid.uuid4().hex}", rate_limit=2000))
    with sidecar.client() as client:
        _load(client)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "proxy.cli", "migrate", "--target", sidecar.target, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert "phase: backfilling" in cli("start").stdout
    watched = cli("status", "--watch", "--interval", "0.1")
    assert watched.returncode == 0
    assert "600/600 docs" in watched.stdout and "(complete)" in watched.stdout
    assert "traffic split: 30% on the new path" in cli("split", "30").stdout
    assert "backfill rate limit: 50 docs/s" in cli("set-rate", "50").stdout
    refused = cli("transition", "old_retired")
    assert (
        refused.returncode == 1
        and "FAILED_PRECONDITION" in refused.stderr
        and "allowed from here" in refused.stderr
    )
    assert "phase: validated" in cli("transition", "validated").stdout
    report = cli("status").stdout
    assert "validated" in report and "30% on the new path" in report and "50 docs/s" in report


def test_reranking_is_reported_in_the_response_and_checked(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    config = _config(tmp_path / "data", f"test-{uuid.uuid4().hex}", rate_limit=20)
    config["query"] = {"rerank": {"candidates": 30, "budget_ms": 5_000}}
    sidecar = start_sidecar(config)
    with sidecar.client() as client:
        _load(client)
        client.admin.StartMigration(admin_pb.StartMigrationRequest())
        dual = pb.ROUTING_MODE_DUAL
        response = client.query(CORPUS[4].text, k=5, mode=dual)
        summary = response.rerank
        assert (summary.candidates, summary.fallback) == (30, "") and summary.uncovered > 0
        assert summary.embedded_now + summary.from_cache == summary.uncovered - summary.skipped
        assert client.query(CORPUS[4].text, k=5, mode=dual, rerank_candidates=0).rerank.candidates == 0
        with pytest.raises(grpc.RpcError) as refused:
            client.query(CORPUS[4].text, k=5, mode=dual, rerank_candidates=5000)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1000" in (refused.value.details() or "")
