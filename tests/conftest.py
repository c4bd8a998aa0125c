from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.demo.sidecar_process import SidecarProcess, free_port

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

TIERS = ("unit", "integration", "e2e", "contract", "reliability")
_SLOW_TIERS = frozenset({"e2e", "reliability"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test with the tier its folder names, so `-m` selects by folder and no file can forget."""
    for item in items:
        tier = next(
            (part for part in item.path.relative_to(Path(__file__).parent).parts if part in TIERS), None
        )
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)
        if tier in _SLOW_TIERS:
            item.add_marker("slow")


def run_serve(config_path: Path, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`switchyard serve --config PATH` in a child process, for configs that must stop it at start-up."""
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=config_path.parent,
    )


def sidecar_config(data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A two-model config on the embedded backend; `overrides` replace top-level sections."""
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"listen": f"127.0.0.1:{free_port()}", "max_batch_size": 64, "max_k": 50},
        "models": {
            "hash-a": {"kind": "hashing", "dim": 32, "seed": 1},
            "hash-b": {"kind": "hashing", "dim": 48, "seed": 2},
        },
        "indexes": {"idx-a": {"model": "hash-a"}, "idx-b": {"model": "hash-b"}},
        "serving_index": "idx-a",
        # Several sidecars run at once in the suite; the metrics test turns the endpoint on itself.
        "telemetry": {"metrics_listen": None},
    }
    config.update(overrides)
    return config


SidecarFactory = Callable[..., SidecarProcess]


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[SidecarFactory]:
    """Starts sidecar processes on this test's data dir and stops whatever is still running at the end."""
    started: list[SidecarProcess] = []

    def start(
        config: dict[str, Any] | None = None, name: str = "sidecar", tls_ca: bytes | None = None
    ) -> SidecarProcess:
        process = SidecarProcess(config or sidecar_config(tmp_path / "data"), tmp_path / name, tls_ca=tls_ca)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()
