"""Recall@10 of the merged answer against a full re-index, at several coverages of the new index.

For each coverage c, a random c-share of the corpus is embedded into the new index B; the old index A holds
everything. Each query runs through the real query path (proxy.core.service.VectorService, `dual` mode) and
its top-10 is compared with the exact top-10 under model B over the whole corpus (what a finished migration
would return). "old only" is A alone (today's answer before any migration), "naive new" B alone, the
re-rank columns candidate re-ranking at k' (proxy/bench/rerank.py) beside the exact ceiling it can reach.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from proxy.bench.rerank import (
    CEILING,
    FrozenDual,
    MemoEmbedder,
    ceiling_recall,
    filled_index,
    rerank_column,
    rerank_recall,
)
from proxy.core.binding import IndexBinding
from proxy.core.merge import MERGE_STRATEGIES, make_merger
from proxy.core.ports import Embedder
from proxy.core.quality import recall_at_k
from proxy.core.service import Limits, QueryInput, VectorService
from proxy.demo.corpus import CorpusDoc, synthetic_corpus, synthetic_queries

K = 10
NAIVE = "naive new"
OLD_ONLY = "old only"
COVERAGES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
RERANK_CANDIDATES = (10, 50, 200)
REAL_QUERIES = 96
"""Queries of the real-model table: the hand-written ones, each twice; about four minutes on 2 cores."""


@dataclass(frozen=True)
class RecallRow:
    coverage: float
    recall: dict[str, float]
    """Mean recall@10 per column: OLD_ONLY, each merge strategy, each re-rank k', CEILING, NAIVE."""
    embedded: dict[str, float] = field(default_factory=dict)
    """Per re-rank column: uncovered candidates per query that needed a new-model vector."""


def _index(name: str, embedder: Embedder, docs: Sequence[CorpusDoc], directory: Path) -> IndexBinding:
    return filled_index(directory / name, embedder, [(d.id, d.text) for d in docs])


def recall_table(
    old_embedder: Embedder,
    new_embedder: Embedder,
    corpus_size: int = 5000,
    query_count: int = 200,
    coverages: Sequence[float] = COVERAGES,
    strategies: Sequence[str] = MERGE_STRATEGIES,
    seed: int = 3,
    corpus: Sequence[CorpusDoc] | None = None,
    queries: Sequence[str] | None = None,
    rerank: Sequence[int] = RERANK_CANDIDATES,
) -> list[RecallRow]:
    """`corpus` and `queries` default to the synthetic ones of `corpus_size` and `query_count`."""
    corpus = list(corpus) if corpus is not None else synthetic_corpus(corpus_size)
    queries = list(queries) if queries is not None else synthetic_queries(query_count)
    old_model, new_model = MemoEmbedder(old_embedder), MemoEmbedder(new_embedder)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(8) as pool:
        root = Path(tmp)
        old = _index("old", old_model, corpus, root)
        full_new = _index("full", new_model, corpus, root)
        new_queries = new_model.embed_query(queries)
        truth = [[h.id for h in full_new.index.exact_search(v, K)] for v in new_queries]
        exact = _ExactVectors(corpus, queries, old_model, new_model, truth)
        old_only = _naive_recall(old, queries, truth)
        rows = []
        for coverage in coverages:
            covered = rng.sample(corpus, round(coverage * len(corpus)))
            new = _index(f"new-{coverage}", new_model, covered, root)
            topology = FrozenDual(old, new, coverage)
            recall = {OLD_ONLY: old_only}
            recall |= {name: _mean_recall(topology, name, queries, truth, pool) for name in strategies}
            embedded = {}
            for candidates in rerank:
                result = rerank_recall(topology, old, new, candidates, queries, truth, pool)
                recall[rerank_column(candidates)] = result.recall
                embedded[rerank_column(candidates)] = result.embedded_per_query
            recall[CEILING] = exact.ceiling({d.id for d in covered})
            recall[NAIVE] = _naive_recall(new, queries, truth)
            rows.append(RecallRow(coverage, recall, embedded))
    return rows


class _ExactVectors:
    """Both models' vectors of the corpus and the queries as matrices, for the re-ranking's exact ceiling."""

    def __init__(
        self,
        corpus: Sequence[CorpusDoc],
        queries: Sequence[str],
        old: Embedder,
        new: Embedder,
        truth: Sequence[Sequence[str]],
    ) -> None:
        texts = [d.text for d in corpus]
        self._ids = [d.id for d in corpus]
        self._old = np.asarray(old.embed(texts), dtype=np.float64)
        self._new = np.asarray(new.embed(texts), dtype=np.float64)
        self._old_queries = np.asarray(old.embed_query(list(queries)), dtype=np.float64)
        self._new_queries = np.asarray(new.embed_query(list(queries)), dtype=np.float64)
        row = {doc_id: n for n, doc_id in enumerate(self._ids)}
        self._truth = [[row[i] for i in relevant] for relevant in truth]

    def ceiling(self, covered: set[str]) -> float:
        mask = np.array([doc_id in covered for doc_id in self._ids], dtype=bool)
        return ceiling_recall(self._old, self._new, mask, self._old_queries, self._new_queries, self._truth)


def _mean_recall(
    topology: FrozenDual,
    strategy: str,
    queries: Sequence[str],
    truth: Sequence[Sequence[str]],
    pool: ThreadPoolExecutor,
) -> float:
    limits = Limits(max_k=K, leg_timeout_s=30.0)
    service = VectorService(topology, lambda n: 1, make_merger(strategy), pool, limits, {})
    # Stateful strategies (zscore, calibrated) learn from traffic: one warm-up pass, as in a live service.
    for text in queries:
        service.query(QueryInput(k=K, text=text))
    scores = []
    for text, relevant in zip(queries, truth, strict=True):
        hits = service.query(QueryInput(k=K, text=text)).hits
        scores.append(recall_at_k([h.id for h in hits], relevant, K))
    service.close()
    return float(np.mean(scores))


def _naive_recall(new: IndexBinding, queries: Sequence[str], truth: Sequence[Sequence[str]]) -> float:
    if new.index.count() == 0:
        return 0.0
    vectors = new.embedder.embed_query(list(queries))
    found = [[h.id for h in new.index.search(v, K)] for v in vectors]
    return float(np.mean([recall_at_k(f, t, K) for f, t in zip(found, truth, strict=True)]))


def format_table(rows: Sequence[RecallRow]) -> str:
    return _table(rows, lambda row: row.recall, "{:.3f}")


def format_embedded_table(rows: Sequence[RecallRow]) -> str:
    """Candidates per query that re-ranking embeds with a cold cache, per coverage and k'."""
    return _table(rows, lambda row: row.embedded, "{:.1f}") if rows and rows[0].embedded else ""


def _table(rows: Sequence[RecallRow], column: Callable[[RecallRow], dict[str, float]], cell: str) -> str:
    names = list(column(rows[0]))
    header = "| coverage | " + " | ".join(names) + " |"
    rule = "|---:|" + "---:|" * len(names)
    lines = [header, rule]
    for row in rows:
        values = column(row)
        lines.append(f"| {row.coverage:.0%} | " + " | ".join(cell.format(values[n]) for n in names) + " |")
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
