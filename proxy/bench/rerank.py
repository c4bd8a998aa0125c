"""Candidate re-ranking in the recall tables: its recall per k', the embeddings it costs, its exact ceiling.

Recall runs the real query path (`VectorService` with a `Reranker`) against a frozen coverage: the embedded
candidates are not written back, so every query sees the same new index. The ceiling is the offline figure
the issue's study gives: the old index's exact top k' and every covered document, ranked by the new model's
exact score. Latency is measured apart (`rerank_latency`), with the cache kept cold, so each query pays for
every uncovered candidate as the first query to touch it would.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.embedders.openai_http import OpenAIEmbedder
from proxy.adapters.hnsw import HnswIndex
from proxy.bench.embed_server import EmbedServer, ServerRules
from proxy.core.binding import IndexBinding
from proxy.core.merge import make_merger
from proxy.core.model import EmbedderLoad, IndexRecord, RoutingMode, Vector
from proxy.core.ports import Embedder
from proxy.core.quality import recall_at_k
from proxy.core.rerank import Reranker, RerankSettings
from proxy.core.service import Limits, QueryInput, VectorService
from proxy.core.topology import Layout, Topology

K = 10
DIM = 384
CEILING_CANDIDATES = 50


def rerank_column(candidates: int) -> str:
    return f"re-rank k'={candidates}"


CEILING = f"ceiling k'={CEILING_CANDIDATES}"


class MemoEmbedder:
    """An embedder that embeds each text once: the recall tables ask for the same texts many times over, and
    a deterministic model gives the same vector each time, so the figures do not change."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._documents: dict[str, Vector] = {}
        self._queries: dict[str, Vector] = {}
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def in_process(self) -> bool:
        return self._inner.in_process

    def load(self) -> EmbedderLoad | None:
        return None

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        return self._memo(texts, self._documents, self._inner.embed)

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        return self._memo(texts, self._queries, self._inner.embed_query)

    def _memo(
        self, texts: Sequence[str], memo: dict[str, Vector], embed: Callable[[Sequence[str]], list[Vector]]
    ) -> list[Vector]:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            vectors = embed(missing)
            with self._lock:
                memo.update(zip(missing, vectors, strict=True))
        with self._lock:
            return [memo[t] for t in texts]


@dataclass(frozen=True)
class RerankRecall:
    recall: float
    embedded_per_query: float
    """Uncovered candidates per query that needed a new-model vector (what a cold cache embeds)."""


def rerank_recall(
    topology: Topology,
    old: IndexBinding,
    new: IndexBinding,
    candidates: int,
    queries: Sequence[str],
    truth: Sequence[Sequence[str]],
    pool: Executor,
) -> RerankRecall:
    reranker = Reranker(RerankSettings(candidates=candidates, budget_s=600.0, max_embed=candidates))
    service = _service(topology, old, new, pool, reranker)
    try:
        scores, embedded = [], []
        for text, relevant in zip(queries, truth, strict=True):
            outcome = service.query(QueryInput(k=K, text=text, override=RoutingMode.DUAL))
            scores.append(recall_at_k([h.id for h in outcome.hits], relevant, K))
            embedded.append(outcome.rerank.uncovered - outcome.rerank.skipped)
    finally:
        service.close()
    return RerankRecall(float(np.mean(scores)), float(np.mean(embedded)))


def _service(
    topology: Topology, old: IndexBinding, new: IndexBinding, pool: Executor, reranker: Reranker | None
) -> VectorService:
    limits = Limits(max_k=K, leg_timeout_s=600.0)
    dims = {old.model: old.embedder.dim, new.model: new.embedder.dim}
    return VectorService(
        topology, lambda n: 1, make_merger("calibrated"), pool, limits, dims, reranker=reranker
    )


def ceiling_recall(
    old_vectors: np.ndarray,
    new_vectors: np.ndarray,
    covered: np.ndarray,
    old_queries: np.ndarray,
    new_queries: np.ndarray,
    truth: Sequence[Sequence[int]],
) -> float:
    """Recall@10 of the old index's exact top k' plus every covered document, ranked by exact new-model score.

    Rows of the vector matrices are documents (normalized), `covered` a boolean mask over them, `truth` the
    row numbers of each query's exact top 10 under the new model.
    """
    old_scores = old_queries @ old_vectors.T
    new_scores = new_queries @ new_vectors.T
    recalls = []
    for q, relevant in enumerate(truth):
        pool = np.zeros(len(covered), dtype=bool)
        pool[np.argsort(-old_scores[q], kind="stable")[:CEILING_CANDIDATES]] = True
        pool |= covered
        ranked = np.flatnonzero(pool)[np.argsort(-new_scores[q][pool], kind="stable")][:K]
        recalls.append(len(set(ranked.tolist()) & set(relevant)) / K)
    return float(np.mean(recalls))


@dataclass(frozen=True)
class RerankLatency:
    embedder: str
    candidates: int
    merge_p50_ms: float
    rerank_p50_ms: float
    embedded_per_query: float
    budget_ms: float
    over_budget_share: float
    """Queries whose embeddings missed the budget (the merge answered them)."""
    over_budget_p99_ms: float
    """p99 of the re-ranking time of those queries: how far past the budget the answer came."""

    @property
    def added_p50_ms(self) -> float:
        return self.rerank_p50_ms - self.merge_p50_ms


def rerank_latency(
    topology: Topology,
    old: IndexBinding,
    new: IndexBinding,
    candidates: int,
    budget_s: float,
    queries: Sequence[str],
    pool: Executor,
    label: str,
) -> RerankLatency:
    """p50 of dual queries with the merge and with re-ranking (cold cache: one entry), interleaved."""
    settings = RerankSettings(candidates=candidates, budget_s=budget_s, max_embed=candidates, cache_entries=1)
    merged, reranked = (
        _service(topology, old, new, pool, None),
        _service(topology, old, new, pool, Reranker(settings)),
    )
    merge_ms, rerank_ms, embedded, over = [], [], [], []
    try:
        for text in queries:
            merge_ms.append(_timed_ms(merged, text))
            started = time.perf_counter()
            outcome = reranked.query(QueryInput(k=K, text=text, override=RoutingMode.DUAL))
            rerank_ms.append((time.perf_counter() - started) * 1000)
            embedded.append(outcome.rerank.embedded_now)
            if outcome.rerank.fallback == "budget":
                over.append(outcome.rerank.seconds * 1000)
    finally:
        merged.close()
        reranked.close()
    return RerankLatency(
        label,
        candidates,
        statistics.median(merge_ms),
        statistics.median(rerank_ms),
        float(np.mean(embedded)),
        budget_s * 1000,
        len(over) / len(queries),
        float(np.percentile(over, 99)) if over else 0.0,
    )


def _timed_ms(service: VectorService, text: str) -> float:
    started = time.perf_counter()
    service.query(QueryInput(k=K, text=text, override=RoutingMode.DUAL))
    return (time.perf_counter() - started) * 1000


REMOTE_DELAY_S = 0.005
"""The local embedding server's answer time: a GPU server's for a small batch of short texts."""
SLOW_DELAY_S = 0.2
BUDGET_S = 0.05


def latency_rows(
    corpus: Sequence[str], queries: Sequence[str], root: Path, real_model: Embedder | None
) -> list[RerankLatency]:
    """Added p50 per k' with the hashing model in process, a remote HTTP model, and a real one in process,
    each at 25% coverage; then the budget, against a remote model slower than it."""
    rows = [*_latency(HashingEmbedder("hash-b", DIM, 2), "hashing, in process", corpus, queries, root)]
    with EmbedServer(ServerRules(dim=DIM, delay_s=REMOTE_DELAY_S)) as server:
        remote = _remote(server.root)
        rows += _latency(
            remote, f"remote HTTP ({REMOTE_DELAY_S * 1000:.0f} ms server)", corpus, queries, root
        )
    with EmbedServer(ServerRules(dim=DIM, delay_s=SLOW_DELAY_S)) as server:
        slow = _remote(server.root)
        label = f"remote HTTP ({SLOW_DELAY_S * 1000:.0f} ms server), {BUDGET_S * 1000:.0f} ms budget"
        rows += _latency(slow, label, corpus, queries[:30], root, (50,), BUDGET_S)
    if real_model is not None:
        rows += _latency(real_model, f"{real_model.model}, in process", corpus, queries[:30], root, (10, 50))
    return rows


def _latency(
    model: Embedder,
    label: str,
    corpus: Sequence[str],
    queries: Sequence[str],
    root: Path,
    candidates: Sequence[int] = (10, 50, 200),
    budget_s: float = 600.0,
) -> list[RerankLatency]:
    docs = [(f"d{n}", text) for n, text in enumerate(corpus)]
    old = filled_index(root / f"old-{len(list(root.iterdir()))}", HashingEmbedder("hash-a", DIM, 1), docs)
    covered = docs[: len(docs) // 4]
    new = filled_index(root / f"new-{len(list(root.iterdir()))}", model, covered)
    topology = FrozenDual(old, new, len(covered) / len(docs))
    with ThreadPoolExecutor(4) as pool:
        return [rerank_latency(topology, old, new, n, budget_s, queries, pool, label) for n in candidates]


def filled_index(directory: Path, model: Embedder, docs: Sequence[tuple[str, str]]) -> IndexBinding:
    """An hnswlib index named after `directory`, holding the (id, text) documents at version 1 as `model`
    embeds them (in batches, so a real model's memory stays small)."""
    index = HnswIndex(directory.name, model.dim, directory, initial_capacity=max(1024, len(docs)))
    for start in range(0, len(docs), 256):
        batch = docs[start : start + 256]
        vectors = model.embed([text for _, text in batch])
        index.upsert([IndexRecord(i, 1, text, {}, v) for (i, text), v in zip(batch, vectors, strict=True)])
    return IndexBinding(index, model)


def _remote(root: str) -> Embedder:
    return OpenAIEmbedder("remote-b", base_url=f"{root}/v1", model="bench-model", dim=DIM)


class FrozenDual:
    """Old and new index at a fixed coverage, dual path, nothing recorded or moved."""

    def __init__(self, old: IndexBinding, new: IndexBinding, coverage: float) -> None:
        self._layout = Layout(old, new, old, new, 100.0, RoutingMode.DUAL)
        self._coverage = coverage

    def layout(self) -> Layout:
        return self._layout

    def coverage(self) -> float:
        return self._coverage

    def record_uncovered(self, ids: Sequence[str]) -> None:
        return None

    def record_pending(self, index: str, versions: Mapping[str, int]) -> None:
        return None

    def reembed_now(self, ids: Sequence[str]) -> int:
        return 0
