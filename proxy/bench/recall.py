"""Recall@10 of the merged answer against a full re-index, at several coverages of the new index.

For each coverage c, a random c-share of the corpus is embedded into the new index B; the old index A holds
everything. Each query runs through the real query path (proxy.core.service.VectorService, `dual` mode) and
its top-10 is compared with the exact top-10 under model B over the whole corpus (what a finished migration
would return). "naive new" is the same query against B alone.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxy.adapters.hnsw import HnswIndex
from proxy.core.binding import IndexBinding
from proxy.core.merge import MERGE_STRATEGIES, make_merger
from proxy.core.model import IndexRecord, RoutingMode
from proxy.core.ports import Embedder
from proxy.core.quality import recall_at_k
from proxy.core.service import Limits, QueryInput, VectorService
from proxy.core.topology import Layout
from proxy.demo.corpus import CorpusDoc, synthetic_corpus, synthetic_queries

K = 10
NAIVE = "naive new"
REAL_QUERIES = 96
"""Queries of the real-model table: the hand-written ones, each twice; about four minutes on 2 cores."""


@dataclass(frozen=True)
class RecallRow:
    coverage: float
    recall: dict[str, float]
    """Mean recall@10 per strategy name, plus NAIVE."""


class _FixedLayout:
    """A topology frozen mid-migration: old and new index, dual path, nothing recorded."""

    def __init__(self, old: IndexBinding, new: IndexBinding) -> None:
        self._layout = Layout(old, new, old, new, 100.0, RoutingMode.DUAL)

    def layout(self) -> Layout:
        return self._layout

    def coverage(self) -> float:
        return 0.0

    def record_uncovered(self, ids: Sequence[str]) -> None:
        return None

    def record_pending(self, index: str, versions: Mapping[str, int]) -> None:
        return None

    def reembed_now(self, ids: Sequence[str]) -> int:
        return 0


def _index(name: str, embedder: Embedder, docs: Sequence[CorpusDoc], directory: Path) -> IndexBinding:
    index = HnswIndex(name, embedder.dim, directory / name, initial_capacity=max(1024, len(docs)))
    vectors = embedder.embed([d.text for d in docs]) if docs else []
    for start in range(0, len(docs), 1000):
        batch = docs[start : start + 1000]
        index.upsert(
            [
                IndexRecord(d.id, 1, d.text, {}, v)
                for d, v in zip(batch, vectors[start : start + 1000], strict=True)
            ]
        )
    return IndexBinding(index, embedder)


def recall_table(
    old_embedder: Embedder,
    new_embedder: Embedder,
    corpus_size: int = 5000,
    query_count: int = 200,
    coverages: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    strategies: Sequence[str] = MERGE_STRATEGIES,
    seed: int = 3,
    corpus: Sequence[CorpusDoc] | None = None,
    queries: Sequence[str] | None = None,
) -> list[RecallRow]:
    """`corpus` and `queries` default to the synthetic ones of `corpus_size` and `query_count`."""
    corpus = list(corpus) if corpus is not None else synthetic_corpus(corpus_size)
    queries = list(queries) if queries is not None else synthetic_queries(query_count)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(8) as pool:
        root = Path(tmp)
        old = _index("old", old_embedder, corpus, root)
        full_new = _index("full", new_embedder, corpus, root)
        truth = [[h.id for h in full_new.index.exact_search(v, K)] for v in new_embedder.embed_query(queries)]
        rows = []
        for coverage in coverages:
            covered = rng.sample(corpus, round(coverage * len(corpus)))
            new = _index(f"new-{coverage}", new_embedder, covered, root)
            recall = {name: _mean_recall(old, new, name, queries, truth, pool) for name in strategies}
            recall[NAIVE] = _naive_recall(new, queries, truth)
            rows.append(RecallRow(coverage, recall))
    return rows


def _mean_recall(
    old: IndexBinding,
    new: IndexBinding,
    strategy: str,
    queries: Sequence[str],
    truth: Sequence[Sequence[str]],
    pool: ThreadPoolExecutor,
) -> float:
    limits = Limits(max_k=K, leg_timeout_s=30.0)
    service = VectorService(_FixedLayout(old, new), lambda n: 1, make_merger(strategy), pool, limits, {})
    # Stateful strategies (zscore, calibrated) learn from traffic: one warm-up pass, as in a live service.
    for text in queries:
        service.query(QueryInput(k=K, text=text))
    scores = []
    for text, relevant in zip(queries, truth, strict=True):
        hits = service.query(QueryInput(k=K, text=text)).hits
        scores.append(recall_at_k([h.id for h in hits], relevant, K))
    return float(np.mean(scores))


def _naive_recall(new: IndexBinding, queries: Sequence[str], truth: Sequence[Sequence[str]]) -> float:
    if new.index.count() == 0:
        return 0.0
    vectors = new.embedder.embed_query(list(queries))
    found = [[h.id for h in new.index.search(v, K)] for v in vectors]
    return float(np.mean([recall_at_k(f, t, K) for f, t in zip(found, truth, strict=True)]))


def format_table(rows: Sequence[RecallRow]) -> str:
    names = list(rows[0].recall)
    header = "| coverage | " + " | ".join(names) + " |"
    rule = "|---:|" + "---:|" * len(names)
    lines = [header, rule]
    for row in rows:
        lines.append(f"| {row.coverage:.0%} | " + " | ".join(f"{row.recall[n]:.3f}" for n in names) + " |")
    return "\n".join(lines)


def real_model_table(
    corpus: Sequence[CorpusDoc] | None = None, queries: Sequence[str] | None = None
) -> list[RecallRow]:
    """The same table with all-MiniLM-L6-v2 as the old model and multilingual-e5-small as the new one, on
    the real-sentence corpus (needs switchyard[models]; ConfigError without it)."""
    from proxy.adapters.embedders.local_models import E5SmallEmbedder, MiniLMEmbedder
    from proxy.demo.real_corpus import real_corpus, real_queries

    return recall_table(
        MiniLMEmbedder(),
        E5SmallEmbedder(),
        corpus=list(corpus) if corpus is not None else real_corpus(),
        queries=list(queries) if queries is not None else real_queries(REAL_QUERIES),
    )


if __name__ == "__main__":
    import sys

    from proxy.adapters.embedders.hashing import HashingEmbedder

    if "--real-models" in sys.argv:
        print(format_table(real_model_table()))
    else:
        print(
            format_table(recall_table(HashingEmbedder("hash-a", 384, 1), HashingEmbedder("hash-b", 384, 2)))
        )
