"""Section 6: the key figures at growing corpus sizes (synthetic random unit vectors, synthetic texts).

Index A is written through the adapter; B is a byte copy of A (same graph cost, the other model's name),
so `dual` does the full work of two equally large legs. Queries go through a sidecar process. The backfill
rate is measured over a fixed window at the start of a real backfill into an empty B.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxy.bench.datasets import build_index, copy_index, random_unit_vectors
from proxy.bench.fanout import text_mode_phases
from proxy.bench.loadgen import SIDECAR_METHOD, Phase
from proxy.bench.processes import alternating_phases, run_load, summarize_label
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import (
    NEW_INDEX,
    OLD_INDEX,
    OLD_MODEL,
    backfill_settings,
    ensure_running,
    index_dir,
    sidecar_config,
    start_migration,
    start_sidecar,
    status,
    wait_backfill_complete,
)
from proxy.bench.stats import LatencySummary, ratio
from proxy.cli.client import SwitchyardClient
from proxy.demo.corpus import synthetic_corpus, synthetic_queries

_VERIFY_BATCH = 1000
_PLAN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ScaleRow:
    size: int
    dim: int
    insert_docs_per_s: float
    build_s: float
    """Vectors generated, upserted and the graph saved."""
    copy_s: float
    open_s: float
    """Sidecar start until it answers health checks, with both indexes of this size."""
    bytes_per_vector: float
    single: LatencySummary
    """Vector queries, one leg, one client."""
    loaded_clients: int
    single_loaded: LatencySummary
    """The same with `loaded_clients` concurrent clients: the QPS figure."""
    old_text: LatencySummary
    new_text: LatencySummary
    dual: LatencySummary
    backfill_docs_per_s: float

    @property
    def dual_ratio(self) -> float:
        return ratio(self.dual.p50_ms, max(self.old_text.p50_ms, self.new_text.p50_ms))


@dataclass(frozen=True)
class ScaleResult:
    rows: list[ScaleRow]
    backfill_window_s: float


def run_scale(settings: BenchSettings, root: Path) -> ScaleResult:
    rows = []
    for size in settings.scales:
        workdir = root / f"scale-{size}"
        try:
            rows.append(_one_scale(settings, workdir, size))
        finally:
            # A million-vector scale leaves gigabytes behind; the next scale needs the disk and page cache.
            shutil.rmtree(workdir, ignore_errors=True)
    return ScaleResult(rows, settings.scale_backfill_window_s)


def _one_scale(settings: BenchSettings, workdir: Path, size: int) -> ScaleRow:
    dim = settings.scale_dim(size)
    started = time.perf_counter()
    built = build_index(workdir / "built" / OLD_INDEX, synthetic_corpus(size), random_unit_vectors(size, dim))
    build_s = time.perf_counter() - started
    bytes_per_vector = built.storage_bytes() / size
    queries = workdir / "query-vectors.npy"
    np.save(queries, random_unit_vectors(settings.query_pool, dim, seed=99))
    data_dir = workdir / "dual" / "data"
    copy_s = copy_index(built.directory, index_dir(data_dir, NEW_INDEX))
    shutil.move(built.directory, index_dir(data_dir, OLD_INDEX))
    figures = _query_figures(settings, data_dir, dim, queries)
    backfill_rate = _backfill_rate(settings, data_dir, workdir / "backfill", dim)
    return ScaleRow(
        size=size,
        dim=dim,
        insert_docs_per_s=built.insert_docs_per_s,
        build_s=build_s,
        copy_s=copy_s,
        open_s=figures.open_s,
        bytes_per_vector=bytes_per_vector,
        single=figures.single,
        loaded_clients=max(settings.concurrency),
        single_loaded=figures.single_loaded,
        old_text=figures.old_text,
        new_text=figures.new_text,
        dual=figures.dual,
        backfill_docs_per_s=backfill_rate,
    )


@dataclass(frozen=True)
class _QueryFigures:
    """What one sidecar run over a scale's indexes measures; the ScaleRow fields of the same names."""

    single: LatencySummary
    single_loaded: LatencySummary
    old_text: LatencySummary
    new_text: LatencySummary
    dual: LatencySummary
    open_s: float


def _query_figures(settings: BenchSettings, data_dir: Path, dim: int, queries: Path) -> _QueryFigures:
    """Single leg with one client and with many, old/new/dual text queries, and the sidecar's open time."""
    config = sidecar_config(data_dir, dim, migration=backfill_settings(_VERIFY_BATCH))
    sidecar, open_s = start_sidecar(config, data_dir.parent)
    try:
        with sidecar.client() as client:
            start_migration(client)
            wait_backfill_complete(client, timeout_s=_PLAN_TIMEOUT_S)
        phases = _vector_phases(settings, sidecar.target) + text_mode_phases(settings, sidecar.target, (1,))
        query_texts = synthetic_queries(settings.query_pool)
        results = run_load(phases, data_dir.parent, vectors_file=queries, texts=query_texts)
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    return _QueryFigures(
        single=summarize_label(results, "single-c1"),
        single_loaded=summarize_label(results, f"single-c{max(settings.concurrency)}"),
        old_text=summarize_label(results, "old-c1"),
        new_text=summarize_label(results, "new-c1"),
        dual=summarize_label(results, "dual-c1"),
        open_s=open_s,
    )


def _vector_phases(settings: BenchSettings, target: str) -> list[Phase]:
    common = {"target": target, "method": SIDECAR_METHOD, "payload": "vector", "model": OLD_MODEL}
    setups = [(f"single-c{c}", {**common, "concurrency": c}) for c in (1, max(settings.concurrency))]
    return alternating_phases(setups, settings)


def _backfill_rate(settings: BenchSettings, dual_dir: Path, workdir: Path, dim: int) -> float:
    """Docs/s over a window at the start of a backfill of A into an empty B (planning excluded)."""
    data_dir = workdir / "data"
    shutil.move(index_dir(dual_dir, OLD_INDEX), index_dir(data_dir, OLD_INDEX))
    shutil.rmtree(dual_dir)
    config = sidecar_config(data_dir, dim, migration=backfill_settings(settings.backfill_batch))
    sidecar, _ = start_sidecar(config, workdir)
    try:
        with sidecar.client() as client:
            start_migration(client)
            rate = _rate_over_window(client, settings.scale_backfill_window_s)
        ensure_running(sidecar)
        return rate
    finally:
        sidecar.stop()


def _rate_over_window(client: SwitchyardClient, window_s: float) -> float:
    deadline = time.perf_counter() + _PLAN_TIMEOUT_S
    while (first := status(client).backfill.done) == 0:
        if time.perf_counter() > deadline:
            raise TimeoutError("the backfill made no progress")
        time.sleep(0.05)
    started = time.perf_counter()
    progress = status(client).backfill
    while time.perf_counter() - started < window_s and not progress.complete:
        time.sleep(0.1)
        progress = status(client).backfill
    return (progress.done - first) / (time.perf_counter() - started)
