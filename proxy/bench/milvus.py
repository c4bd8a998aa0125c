"""Section 11, Milvus: the sidecar in front of a Milvus server, against the same server used directly.

The server is a real Milvus engine, milvus-lite's gRPC server in a process of its own (`python -m milvus_lite
server`), so the sidecar and the direct client reach it the same way, by URI, as they would a cluster.
Queries: one collection in the adapter's layout (HNSW), searched through a sidecar whose serving index is a
Milvus index on it (caller-supplied vectors, no migration) and by pymilvus clients sending the adapter's own
search (same ef, filter, output fields), rounds interleaved, at each client count, on threads of this
process. Writes: rows/s through the sidecar (Upsert with vectors: the adapter's version check, then upsert)
against pymilvus upserts of the same rows without the check. Backfill: docs/s of a Milvus -> Milvus
migration onto a collection of the new model.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from proxy.adapters.milvus import MilvusIndex
from proxy.adapters.milvus.writes import document_row
from proxy.bench.base import BaseCorpus
from proxy.bench.datasets import embedded_vectors
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import NEW_MODEL, OLD_MODEL, ensure_running, model_config, start_sidecar
from proxy.bench.stats import LatencySummary, ratio, summarize
from proxy.cli.client import Doc
from proxy.core.model import IndexRecord
from proxy.demo.sidecar_process import SidecarProcess, free_port

K = 10
M, EF_CONSTRUCTION, EF = 16, 200, 64
QUERY_COLLECTION, DIRECT_WRITES, NEW_COLLECTION = "bench_docs", "bench_direct_writes", "bench_docs_new"
WRITE_BATCH = 100
_CHECKED_QUERIES = 20


@dataclass(frozen=True)
class MilvusQueryRow:
    concurrency: int
    direct: LatencySummary
    sidecar: LatencySummary

    @property
    def p50_ratio(self) -> float:
        return ratio(self.sidecar.p50_ms, self.direct.p50_ms)

    @property
    def qps_ratio(self) -> float:
        return ratio(self.sidecar.qps, self.direct.qps)


@dataclass(frozen=True)
class MilvusResult:
    engine: str
    docs: int
    dim: int
    load_s: float
    identical_hits: int
    checked_queries: int
    rounds: int
    round_s: float
    rows: list[MilvusQueryRow]
    write_docs: int
    direct_write_rows_per_s: float
    sidecar_write_rows_per_s: float
    backfill_docs: int
    backfill_s: float

    @property
    def write_ratio(self) -> float:
        return ratio(self.sidecar_write_rows_per_s, self.direct_write_rows_per_s)

    @property
    def backfill_docs_per_s(self) -> float:
        return ratio(self.backfill_docs, self.backfill_s)


class MilvusServer:
    """milvus-lite's gRPC server in a child process, on a port of its own."""

    def __init__(self, data_dir: Path) -> None:
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        self._log = (data_dir.parent / "milvus-server.log").open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--port", str(port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                MilvusClient(uri=self.uri, timeout=2).close()
                return
            except Exception:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"milvus-lite server did not start; see {self._log.name}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


def run_milvus(settings: BenchSettings, base: BaseCorpus, root: Path) -> MilvusResult:
    workdir = root / "milvus"
    workdir.mkdir(parents=True, exist_ok=True)
    server = MilvusServer(workdir / "engine")
    try:
        return _measure(settings, base, workdir, server.uri)
    finally:
        server.stop()


def _measure(settings: BenchSettings, base: BaseCorpus, workdir: Path, uri: str) -> MilvusResult:
    vectors = embedded_vectors(base.old_embedder, [d.text for d in base.docs])
    load_s = _load(uri, base, vectors)
    queries = np.load(base.query_vectors_file)
    sidecar, _ = start_sidecar(_config(workdir / "query", uri, settings.dim), workdir / "query")
    try:
        identical = _identical_hits(sidecar, uri, queries[:_CHECKED_QUERIES])
        rows = [_query_row(settings, sidecar, uri, queries, c) for c in settings.milvus_clients]
        sidecar_writes = _sidecar_writes(sidecar, base, settings.milvus_write_docs)
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    direct_writes = _direct_writes(uri, base, settings.milvus_write_docs)
    backfill_s = _backfill(workdir / "backfill", uri, settings.dim)
    return MilvusResult(
        engine=f"milvus-lite {version('milvus-lite')} server, pymilvus {version('pymilvus')}",
        docs=len(base.docs),
        dim=settings.dim,
        load_s=load_s,
        identical_hits=identical,
        checked_queries=min(_CHECKED_QUERIES, len(queries)),
        rounds=settings.rounds,
        round_s=settings.round_s,
        rows=rows,
        write_docs=settings.milvus_write_docs,
        direct_write_rows_per_s=direct_writes,
        sidecar_write_rows_per_s=sidecar_writes,
        backfill_docs=len(base.docs),
        backfill_s=backfill_s,
    )


def _load(uri: str, base: BaseCorpus, vectors: np.ndarray) -> float:
    """The corpus into the query collection through the adapter (its layout and HNSW index)."""
    started = time.perf_counter()
    index = MilvusIndex(OLD_MODEL, vectors.shape[1], uri, collection=QUERY_COLLECTION, hnsw_m=M, ef_search=EF)
    for start in range(0, len(base.docs), 1_000):
        index.upsert(
            [
                IndexRecord(d.id, 1, d.text, {"topic": d.topic}, vectors[start + n])
                for n, d in enumerate(base.docs[start : start + 1_000])
            ]
        )
    index.flush()
    index.close()
    return time.perf_counter() - started


def _config(data_dir: Path, uri: str, dim: int, migration: bool = False) -> dict[str, Any]:
    def milvus(model: str, collection: str) -> dict[str, Any]:
        params = {
            "uri": uri,
            "collection": collection,
            "m": M,
            "ef_construction": EF_CONSTRUCTION,
            "ef_search": EF,
        }
        return {"model": model, "backend": "milvus", "milvus": params}

    indexes = {"docs-mv": milvus(OLD_MODEL, QUERY_COLLECTION)}
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"listen": f"127.0.0.1:{free_port()}", "max_batch_size": 1_000},
        "models": {OLD_MODEL: model_config("hashing", dim, 1), NEW_MODEL: model_config("hashing", dim, 2)},
        "indexes": indexes,
        "serving_index": "docs-mv",
        "state": {"backend": "local"},
        "telemetry": {"metrics_listen": f"127.0.0.1:{free_port()}"},
    }
    if migration:
        indexes["docs-mv-new"] = milvus(NEW_MODEL, NEW_COLLECTION)
        config["migration"] = {
            "old_index": "docs-mv",
            "new_index": "docs-mv-new",
            "backfill": {"batch_size": 256},
        }
    return config


def _direct_search(client: MilvusClient, vector: np.ndarray) -> list[str]:
    """The adapter's own search call (`MilvusIndex.search`): same filter, ef, metric and output fields."""
    hits = client.search(
        QUERY_COLLECTION,
        data=[vector.tolist()],
        anns_field="vector",
        limit=K,
        filter="deleted == false",
        output_fields=["version", "metadata"],
        search_params={"metric_type": "COSINE", "params": {"ef": max(EF, K)}},
        consistency_level="Strong",
    )
    return [str(hit["id"]) for hit in hits[0]]


def _identical_hits(sidecar: SidecarProcess, uri: str, queries: np.ndarray) -> int:
    """Queries that return the same ids in the same order both ways: the comparison needs the same search."""
    direct = MilvusClient(uri=uri)
    with sidecar.client() as client:
        same = sum(
            [h.id for h in client.query(k=K, vector=v.tolist(), vector_model=OLD_MODEL).hits]
            == _direct_search(direct, v)
            for v in queries
        )
    direct.close()
    return same


def _query_row(
    settings: BenchSettings, sidecar: SidecarProcess, uri: str, queries: np.ndarray, clients: int
) -> MilvusQueryRow:
    direct = MilvusClient(uri=uri)
    latencies: dict[str, list[float]] = {"direct": [], "sidecar": []}
    seconds = {"direct": 0.0, "sidecar": 0.0}
    with sidecar.client() as through:
        calls: dict[str, Callable[[np.ndarray], object]] = {
            "direct": lambda v: _direct_search(direct, v),
            "sidecar": lambda v: through.query(k=K, vector=v.tolist(), vector_model=OLD_MODEL),
        }
        for _ in range(settings.rounds):
            for side, call in calls.items():
                samples, elapsed = _phase(call, queries, clients, settings.round_s, settings.max_requests)
                latencies[side] += samples
                seconds[side] += elapsed
    direct.close()
    return MilvusQueryRow(
        clients,
        summarize(latencies["direct"], seconds["direct"]),
        summarize(latencies["sidecar"], seconds["sidecar"]),
    )


def _phase(
    call: Callable[[np.ndarray], object], queries: np.ndarray, clients: int, round_s: float, cap: int
) -> tuple[list[float], float]:
    """`clients` threads calling back to back for `round_s` (at most `cap` calls in all)."""
    samples: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + round_s

    def client(offset: int) -> None:
        n = offset
        while time.perf_counter() < deadline and len(samples) < cap:
            started = time.perf_counter()
            call(queries[n % len(queries)])
            with lock:
                samples.append(1000 * (time.perf_counter() - started))
            n += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - started


def _write_docs(base: BaseCorpus, count: int) -> tuple[list[IndexRecord], np.ndarray]:
    docs = [base.docs[n % len(base.docs)] for n in range(count)]
    vectors = embedded_vectors(base.old_embedder, [d.text for d in docs])
    records = [
        IndexRecord(f"w-{n:07d}", 1, d.text, {"topic": d.topic}, vectors[n]) for n, d in enumerate(docs)
    ]
    return records, vectors


def _sidecar_writes(sidecar: SidecarProcess, base: BaseCorpus, count: int) -> float:
    records, vectors = _write_docs(base, count)
    with sidecar.client() as client:
        started = time.perf_counter()
        for start in range(0, count, WRITE_BATCH):
            batch = records[start : start + WRITE_BATCH]
            client.upsert(
                [
                    Doc(r.id, r.text, r.metadata, vector=vectors[start + n].tolist(), vector_model=OLD_MODEL)
                    for n, r in enumerate(batch)
                ]
            )
        return count / (time.perf_counter() - started)


def _direct_writes(uri: str, base: BaseCorpus, count: int) -> float:
    """pymilvus upserts of the rows the adapter would write, into a collection of the same layout."""
    records, vectors = _write_docs(base, count)
    MilvusIndex(OLD_MODEL, vectors.shape[1], uri, collection=DIRECT_WRITES, hnsw_m=M).close()
    client = MilvusClient(uri=uri)
    rows = [document_row(r, vectors[n]) for n, r in enumerate(records)]
    started = time.perf_counter()
    for start in range(0, count, WRITE_BATCH):
        client.upsert(DIRECT_WRITES, rows[start : start + WRITE_BATCH])
    elapsed = time.perf_counter() - started
    client.close()
    return count / elapsed


def _backfill(workdir: Path, uri: str, dim: int) -> float:
    """Seconds from StartMigration to a complete backfill of the query collection into the new one."""
    from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb

    sidecar, _ = start_sidecar(_config(workdir / "data", uri, dim, migration=True), workdir)
    try:
        with sidecar.client() as client:
            started = time.perf_counter()
            client.admin.StartMigration(admin_pb.StartMigrationRequest())
            while not client.status().backfill.complete:
                ensure_running(sidecar)
                time.sleep(0.05)
            return time.perf_counter() - started
    finally:
        sidecar.stop()
