"""Index directories for the benchmarks, written straight through the hnswlib adapter.

Loading through gRPC would measure the write path a hundred thousand times over; the benchmarks measure
queries and backfills, so corpora go in through `HnswIndex.upsert` in large batches, then the sidecar opens
the flushed directory as its own.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from proxy.adapters.hnsw import HnswIndex
from proxy.core.model import IndexRecord
from proxy.core.ports import Embedder
from proxy.demo.corpus import CorpusDoc


class GraphParams(TypedDict):
    """HnswIndex keyword arguments that shape the graph and its search; also the config file's `hnsw` table."""

    m: int
    ef_construction: int
    ef_search: int


# The sidecar's defaults (proxy.app.config.HnswParams): the baseline and the sidecar search the same graph.
HNSW_PARAMS: GraphParams = {"m": 16, "ef_construction": 200, "ef_search": 64}
_UPSERT_BATCH = 10_000
_VECTOR_CHUNK = 100_000


@dataclass(frozen=True)
class BuiltIndex:
    directory: Path
    count: int
    dim: int
    insert_s: float
    """Time spent in `upsert` (SQLite rows and hnswlib graph), the insert throughput's denominator."""
    flush_s: float
    """Saving the graph file on close."""

    @property
    def insert_docs_per_s(self) -> float:
        return self.count / self.insert_s if self.insert_s > 0 else 0.0

    def storage_bytes(self) -> int:
        return directory_bytes(self.directory)


def directory_bytes(directory: Path) -> int:
    """What HnswIndex.storage_bytes() reports, read from outside the process that holds the index."""
    if not directory.exists():
        return 0
    return sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())


def embedded_vectors(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    return np.asarray(embedder.embed(list(texts)), dtype=np.float32)


def random_unit_vectors(count: int, dim: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, _VECTOR_CHUNK):
        block = rng.standard_normal((min(_VECTOR_CHUNK, count - start), dim), dtype=np.float32)
        vectors[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def build_index(directory: Path, docs: Sequence[CorpusDoc], vectors: np.ndarray) -> BuiltIndex:
    dim = int(vectors.shape[1])
    index = HnswIndex(directory.name, dim, directory, initial_capacity=max(1024, len(docs)), **HNSW_PARAMS)
    started = time.perf_counter()
    for start in range(0, len(docs), _UPSERT_BATCH):
        batch = docs[start : start + _UPSERT_BATCH]
        index.upsert(
            [
                IndexRecord(d.id, 1, d.text, {"topic": d.topic}, vectors[start + n])
                for n, d in enumerate(batch)
            ]
        )
    inserted = time.perf_counter()
    # Closing saves the graph, so the sidecar loads it instead of rebuilding it from SQLite.
    index.close()
    return BuiltIndex(directory, len(docs), dim, inserted - started, time.perf_counter() - inserted)


def copy_index(source: Path, destination: Path) -> float:
    """Copies a closed index directory (hard links would let SQLite write through to the source)."""
    started = time.perf_counter()
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, destination)
    return time.perf_counter() - started
