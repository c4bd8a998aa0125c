"""Child processes of a benchmark run: baseline server and load generator (sidecars: SidecarProcess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.bench.loadgen import BASELINE_METHOD, Phase, PhaseResult
from proxy.bench.settings import BenchSettings
from proxy.bench.stats import LatencySummary, summarize
from proxy.demo.sidecar_process import free_port

# The folder that holds the `proxy` package: the source tree, or site-packages when installed.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
_LOADGEN_GRACE_S = 120.0


def child_env() -> dict[str, str]:
    """Children import this very copy of the package, whatever their working directory."""
    path = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


class BaselineProcess:
    """`python -m proxy.bench.baseline_server` on a free 127.0.0.1 port, serving one index directory's graph."""

    def __init__(self, index_dir: Path, log_path: Path, ef_search: int = 64, workers: int = 16) -> None:
        self.target = f"127.0.0.1:{free_port()}"
        self._args = ["--index-dir", str(index_dir), "--listen", self.target]
        self._args += ["--ef", str(ef_search), "--workers", str(workers)]
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, probe: pb.QueryRequest, timeout_s: float = 120.0) -> BaselineProcess:
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "proxy.bench.baseline_server", *self._args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=PACKAGE_PARENT,
            )
        self._wait_ready(probe, timeout_s)
        return self

    def _wait_ready(self, probe: pb.QueryRequest, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.target) as channel:
            search = channel.unary_unary(
                BASELINE_METHOD,
                request_serializer=pb.QueryRequest.SerializeToString,
                response_deserializer=pb.QueryResponse.FromString,
            )
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"baseline server exited:\n{self._log_path.read_text()[-2000:]}")
                try:
                    search(probe, timeout=1.0)
                    return
                except grpc.RpcError:  # still loading the graph
                    time.sleep(0.1)
        raise TimeoutError(f"baseline server not ready after {timeout_s}s")

    def ensure_running(self) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"baseline server exited:\n{self._log_path.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)
        self._process = None


def run_load(
    phases: Sequence[Phase],
    workdir: Path,
    *,
    vectors_file: Path | None = None,
    texts: Sequence[str] = (),
) -> list[PhaseResult]:
    """Runs the phases in one load-generator process and returns each phase's raw result, in order."""
    workdir.mkdir(parents=True, exist_ok=True)
    plan: dict[str, Any] = {
        "phases": [p.__dict__ for p in phases],
        "vectors_file": str(vectors_file) if vectors_file else None,
        "texts": list(texts),
    }
    plan_path, result_path = workdir / "loadgen-plan.json", workdir / "loadgen-result.json"
    plan_path.write_text(json.dumps(plan))
    bound = sum(p.duration_s for p in phases) + _LOADGEN_GRACE_S
    completed = subprocess.run(
        [sys.executable, "-m", "proxy.bench.loadgen", str(plan_path), str(result_path)],
        env=child_env(),
        cwd=PACKAGE_PARENT,
        capture_output=True,
        timeout=bound,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{completed.stderr.decode()[-3000:]}")
    return [PhaseResult(**raw) for raw in json.loads(result_path.read_text())]


def alternating_phases(setups: Sequence[tuple[str, dict[str, Any]]], settings: BenchSettings) -> list[Phase]:
    """One phase per setup and round, interleaved and rotated each round, so drift in load hits all alike.

    Each setup is (label, Phase fields other than label/duration/cap); a phase's label is the setup's.
    """
    phases = []
    for number in range(settings.rounds):
        shift = number % len(setups)
        for label, fields in [*setups[shift:], *setups[:shift]]:
            phases.append(
                Phase(
                    label=label,
                    duration_s=settings.round_s,
                    max_requests=settings.max_requests,
                    warmup=settings.warmup,
                    **fields,
                )
            )
    return phases


def summarize_label(results: Sequence[PhaseResult], label: str) -> LatencySummary:
    """All rounds of one setup as one sample: latencies pooled, seconds and errors summed."""
    mine = [r for r in results if r.label == label]
    if not mine:
        raise KeyError(f"no load phase labelled {label!r}")
    errors = sum(r.errors for r in mine)
    if errors and not any(r.latencies_ms for r in mine):
        raise RuntimeError(f"every request of {label!r} failed: {mine[0].first_error}")
    latencies = [x for r in mine for x in r.latencies_ms]
    first_error = next((r.first_error for r in mine if r.first_error), "")
    cpu = sum(r.server_cpu_s for r in mine)
    return summarize(latencies, sum(r.seconds for r in mine), errors, cpu, first_error)
