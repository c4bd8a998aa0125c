"""Section 7, collections: does a second, idle collection in a sidecar slow the first one's queries?

Two sidecars run side by side on copies of the same index A: one serves a single collection, the other the same
collection plus a second one with its own index and a planned migration (its models, controller and worker are
built, nothing queries it). The load generator alternates rounds between them, with the same vector queries
against the first collection, each naming it in its `collection` field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.bench.base import BaseCorpus
from proxy.bench.datasets import HNSW_PARAMS, BuiltIndex, build_index, copy_index, embedded_vectors
from proxy.bench.loadgen import SIDECAR_METHOD, Phase, PhaseResult
from proxy.bench.processes import alternating_phases, run_load, summarize_label
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import (
    OLD_MODEL,
    ensure_running,
    index_dir,
    model_config,
    sidecar_config,
    start_sidecar,
)
from proxy.bench.stats import LatencySummary, ratio
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import SidecarProcess, free_port

TARGET_P50_RATIO = 1.05
QUERIED = "search"
"""The collection every query names, in both sidecars."""
IDLE = "archive"
"""The second collection: configured, loaded, never queried."""
IDLE_INDEX, IDLE_NEW_INDEX = "archive-a", "archive-b"
IDLE_MODEL, IDLE_NEW_MODEL = "hash-c", "hash-d"
_IDLE_CORPUS_SEED = 11


@dataclass(frozen=True)
class CollectionsRow:
    concurrency: int
    one: LatencySummary
    """The sidecar serving one collection."""
    two: LatencySummary
    """The sidecar serving the same collection and a second, idle one."""
    round_ratios: list[float]
    """Two p50 / one p50 of each round on its own: how far one round's figure moves with the machine."""

    @property
    def p50_ratio(self) -> float:
        return ratio(self.two.p50_ms, self.one.p50_ms)

    @property
    def p99_ratio(self) -> float:
        return ratio(self.two.p99_ms, self.one.p99_ms)

    @property
    def qps_ratio(self) -> float:
        return ratio(self.two.qps, self.one.qps)

    @property
    def cpu_ratio(self) -> float:
        return ratio(self.two.server_cpu_ms_per_request, self.one.server_cpu_ms_per_request)

    @property
    def passed(self) -> bool:
        return self.p50_ratio <= TARGET_P50_RATIO


@dataclass(frozen=True)
class CollectionsResult:
    corpus: int
    dim: int
    idle_docs: int
    """Documents in the second collection's index."""
    idle_phase: str
    """The second collection's migration phase, as the sidecar reported it before and after the load."""
    rounds: int
    round_s: float
    rss_mib: tuple[float, float]
    """Resident memory of the one- and the two-collection sidecar after the load."""
    rows: list[CollectionsRow]


def run_collections(settings: BenchSettings, base: BaseCorpus, root: Path) -> CollectionsResult:
    workdir = root / "collections"
    idle = _idle_index(settings, base.root)
    one_dir = base.data_dir("collections-one")
    two_dir = base.data_dir("collections-two")
    copy_index(idle.directory, index_dir(two_dir, IDLE_INDEX))
    one, _ = start_sidecar(collections_config(one_dir, settings.dim, idle=False), workdir / "one")
    try:
        two, _ = start_sidecar(collections_config(two_dir, settings.dim, idle=True), workdir / "two")
        try:
            phase = _idle_phase(two)
            results = run_load(
                _phases(settings, _target(one), _target(two)), workdir, vectors_file=base.query_vectors_file
            )
            ensure_running(one)
            ensure_running(two)
            after = _idle_phase(two)
            rss = (_rss_mib(one), _rss_mib(two))
        finally:
            two.stop()
    finally:
        one.stop()
    rows = [
        CollectionsRow(
            c,
            summarize_label(results, f"one-c{c}"),
            summarize_label(results, f"two-c{c}"),
            _round_ratios(results, c),
        )
        for c in settings.collection_clients
    ]
    phases = phase if after == phase else f"{phase}, then {after}"
    return CollectionsResult(
        settings.corpus,
        settings.dim,
        idle.count,
        phases,
        settings.collection_rounds,
        settings.round_s,
        rss,
        rows,
    )


def collections_config(data_dir: Path, dim: int, *, idle: bool) -> dict[str, Any]:
    """The overhead section's sidecar as collection QUERIED; with `idle`, collection IDLE beside it."""
    config = sidecar_config(data_dir, dim)
    config["collections"] = {QUERIED: {"serving_index": config.pop("serving_index")}}
    config["default_collection"] = QUERIED
    # Two sidecars run at once: each gets its own metrics port (the default one would clash).
    config["telemetry"] = {"metrics_listen": f"127.0.0.1:{free_port()}"}
    if idle:
        config["models"] |= {
            IDLE_MODEL: model_config("hashing", dim, 3),
            IDLE_NEW_MODEL: model_config("hashing", dim, 4),
        }
        config["indexes"] |= {
            IDLE_INDEX: {"model": IDLE_MODEL, "hnsw": HNSW_PARAMS},
            IDLE_NEW_INDEX: {"model": IDLE_NEW_MODEL, "hnsw": HNSW_PARAMS},
        }
        config["collections"][IDLE] = {
            "serving_index": IDLE_INDEX,
            "migration": {"old_index": IDLE_INDEX, "new_index": IDLE_NEW_INDEX},
        }
    return config


def _idle_index(settings: BenchSettings, base_root: Path) -> BuiltIndex:
    docs = synthetic_corpus(settings.collection_docs, seed=_IDLE_CORPUS_SEED)
    vectors = embedded_vectors(HashingEmbedder(IDLE_MODEL, settings.dim, 3), [d.text for d in docs])
    return build_index(base_root / IDLE_INDEX, docs, vectors)


def _phases(settings: BenchSettings, one: tuple[str, int], two: tuple[str, int]) -> list[Phase]:
    """Both sidecars per client count, rounds interleaved; the same vector queries, naming QUERIED."""
    rounds = replace(settings, rounds=settings.collection_rounds)
    phases: list[Phase] = []
    for c in settings.collection_clients:
        common = {
            "method": SIDECAR_METHOD,
            "payload": "vector",
            "model": OLD_MODEL,
            "collection": QUERIED,
            "concurrency": c,
        }
        setups = [
            (f"one-c{c}", {"target": one[0], "server_pid": one[1], **common}),
            (f"two-c{c}", {"target": two[0], "server_pid": two[1], **common}),
        ]
        phases += alternating_phases(setups, rounds)
    return phases


def _round_ratios(results: list[PhaseResult], clients: int) -> list[float]:
    one = [r for r in results if r.label == f"one-c{clients}"]
    two = [r for r in results if r.label == f"two-c{clients}"]
    return [
        ratio(summarize_label([b], b.label).p50_ms, summarize_label([a], a.label).p50_ms)
        for a, b in zip(one, two, strict=True)
    ]


def _target(sidecar: SidecarProcess) -> tuple[str, int]:
    assert sidecar.process is not None, "not started"
    return sidecar.target, sidecar.process.pid


def _idle_phase(sidecar: SidecarProcess) -> str:
    """The second collection's phase; fails the section unless the sidecar really serves both."""
    with sidecar.client() as client:
        summaries = {c.name: c for c in client.collections()}
    if set(summaries) != {QUERIED, IDLE}:
        raise RuntimeError(f"the two-collection sidecar serves {sorted(summaries)}, not {QUERIED} and {IDLE}")
    return summaries[IDLE].phase


def _rss_mib(sidecar: SidecarProcess) -> float:
    assert sidecar.process is not None, "not started"
    for line in Path(f"/proc/{sidecar.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
