"""Section 1: vector queries through a sidecar in `old` mode vs. the same hnswlib search in a bare server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.bench.base import BaseCorpus
from proxy.bench.loadgen import BASELINE_METHOD, SIDECAR_METHOD, Phase
from proxy.bench.processes import BaselineProcess, alternating_phases, run_load, summarize_label
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import (
    OLD_INDEX,
    OLD_MODEL,
    ensure_running,
    index_dir,
    sidecar_config,
    start_sidecar,
)
from proxy.bench.stats import LatencySummary, ratio

TARGET_P50_RATIO = 1.3


@dataclass(frozen=True)
class OverheadRow:
    concurrency: int
    baseline: LatencySummary
    sidecar: LatencySummary

    @property
    def p50_ratio(self) -> float:
        return ratio(self.sidecar.p50_ms, self.baseline.p50_ms)

    @property
    def p99_ratio(self) -> float:
        return ratio(self.sidecar.p99_ms, self.baseline.p99_ms)

    @property
    def qps_ratio(self) -> float:
        return ratio(self.sidecar.qps, self.baseline.qps)

    @property
    def cpu_ratio(self) -> float:
        """Server CPU per query, sidecar over bare: what bounds QPS once the cores are saturated."""
        return ratio(self.sidecar.server_cpu_ms_per_request, self.baseline.server_cpu_ms_per_request)

    @property
    def passed(self) -> bool:
        return self.p50_ratio <= TARGET_P50_RATIO


@dataclass(frozen=True)
class OverheadResult:
    corpus: int
    dim: int
    rows: list[OverheadRow]


def run_overhead(settings: BenchSettings, base: BaseCorpus, root: Path) -> OverheadResult:
    workdir = root / "overhead"
    data_dir = base.data_dir("overhead")
    probe = _probe(base.query_vectors_file)
    # The baseline reads the graph file before the sidecar opens the directory; neither writes to it.
    baseline = BaselineProcess(index_dir(data_dir, OLD_INDEX), workdir / "baseline.log").start(probe)
    try:
        sidecar, _ = start_sidecar(sidecar_config(data_dir, settings.dim), workdir)
        try:
            assert sidecar.process is not None
            results = run_load(
                _phases(settings, (baseline.target, baseline.pid), (sidecar.target, sidecar.process.pid)),
                workdir,
                vectors_file=base.query_vectors_file,
            )
            ensure_running(sidecar)
            baseline.ensure_running()
        finally:
            sidecar.stop()
    finally:
        baseline.stop()
    rows = [
        OverheadRow(c, summarize_label(results, f"baseline-c{c}"), summarize_label(results, f"sidecar-c{c}"))
        for c in settings.concurrency
    ]
    return OverheadResult(settings.corpus, settings.dim, rows)


def _phases(settings: BenchSettings, baseline: tuple[str, int], sidecar: tuple[str, int]) -> list[Phase]:
    """Both servers per concurrency, interleaved; each server's CPU time per phase is recorded too."""
    phases: list[Phase] = []
    for c in settings.concurrency:
        common = {"payload": "vector", "model": OLD_MODEL, "concurrency": c}
        setups = [
            (
                f"baseline-c{c}",
                {"target": baseline[0], "server_pid": baseline[1], "method": BASELINE_METHOD, **common},
            ),
            (
                f"sidecar-c{c}",
                {"target": sidecar[0], "server_pid": sidecar[1], "method": SIDECAR_METHOD, **common},
            ),
        ]
        phases += alternating_phases(setups, settings)
    return phases


def _probe(vectors_file: Path) -> pb.QueryRequest:
    vector = np.load(vectors_file)[0]
    return pb.QueryRequest(k=10, embedding=pb.Embedding(model=OLD_MODEL, values=vector.tolist()))
