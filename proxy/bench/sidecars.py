"""Sidecar configs for the benchmarks and the admin steps the sections drive (start, pause, wait)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy.bench.datasets import HNSW_PARAMS, directory_bytes
from proxy.cli.client import SwitchyardClient
from proxy.demo.sidecar_process import SidecarProcess, free_port

OLD_MODEL = "hash-a"
NEW_MODEL = "model-b"
OLD_INDEX = "docs-a"
NEW_INDEX = "docs-b"
_POLL_S = 0.1


def model_config(kind: str, dim: int, seed: int) -> dict[str, Any]:
    if kind == "hashing":
        return {"kind": "hashing", "dim": dim, "seed": seed}
    return {"kind": kind}


def sidecar_config(
    data_dir: Path,
    dim: int,
    *,
    migration: dict[str, Any] | None = None,
    new_model: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Index A (hashing, seed 1) alone in `old` mode, or A and B with a migration between them."""
    models = {OLD_MODEL: model_config("hashing", dim, 1)}
    indexes = {OLD_INDEX: {"model": OLD_MODEL, "hnsw": HNSW_PARAMS}}
    if migration is not None:
        models[NEW_MODEL] = new_model or model_config("hashing", dim, 2)
        indexes[NEW_INDEX] = {"model": NEW_MODEL, "hnsw": HNSW_PARAMS}
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "models": models,
        "indexes": indexes,
        "serving_index": OLD_INDEX,
        "state": {"backend": "local"},
    }
    if migration is not None:
        config["migration"] = {"old_index": OLD_INDEX, "new_index": NEW_INDEX, **migration}
    if query is not None:
        config["query"] = query
    return config


def backfill_settings(batch_size: int, **extra: Any) -> dict[str, Any]:
    return {"backfill": {"batch_size": batch_size, "slice_size": 2000, **extra}}


def index_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "indexes" / name


def start_sidecar(
    config: dict[str, Any], workdir: Path, timeout_s: float = 600.0
) -> tuple[SidecarProcess, float]:
    """A started sidecar and the seconds it took to open its indexes and answer health checks."""
    started = time.perf_counter()
    sidecar = SidecarProcess(config, workdir).start(timeout_s)
    return sidecar, time.perf_counter() - started


def ensure_running(sidecar: SidecarProcess) -> None:
    """A sidecar that died during a measurement (a crash, or killed from outside) fails the section."""
    if sidecar.process is None or sidecar.process.poll() is not None:
        raise RuntimeError(f"the sidecar exited during the measurement:\n{sidecar.log_tail()}")


def status(client: SwitchyardClient) -> admin_pb.GetMigrationStatusResponse:
    return client.status()


def start_migration(client: SwitchyardClient) -> None:
    client.admin.StartMigration(admin_pb.StartMigrationRequest(), timeout=30)


def pause(client: SwitchyardClient) -> None:
    client.admin.PauseMigration(admin_pb.PauseMigrationRequest(), timeout=30)
    _wait_until_still(client)


def resume(client: SwitchyardClient) -> None:
    client.admin.ResumeMigration(admin_pb.ResumeMigrationRequest(), timeout=30)


def _wait_until_still(client: SwitchyardClient, timeout_s: float = 5.0) -> None:
    """Waits for the worker to notice the pause (it re-reads the phase at most every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    last = status(client).backfill.done
    while time.monotonic() < deadline:
        time.sleep(0.6)
        done = status(client).backfill.done
        if done == last:
            return
        last = done


@dataclass(frozen=True)
class StorageSample:
    at_s: float
    old_bytes: int
    new_bytes: int

    @property
    def total(self) -> int:
        return self.old_bytes + self.new_bytes


def storage_sample(data_dir: Path, since: float) -> StorageSample:
    return StorageSample(
        time.perf_counter() - since,
        directory_bytes(index_dir(data_dir, OLD_INDEX)),
        directory_bytes(index_dir(data_dir, NEW_INDEX)),
    )


def wait_backfill_complete(
    client: SwitchyardClient, timeout_s: float, on_poll: Callable[[], None] | None = None
) -> float:
    """Polls until the backfill reports complete; returns the seconds waited."""
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if on_poll is not None:
            on_poll()
        if status(client).backfill.complete:
            return time.perf_counter() - started
        time.sleep(_POLL_S)
    raise TimeoutError(f"backfill not complete after {timeout_s:.0f}s")
