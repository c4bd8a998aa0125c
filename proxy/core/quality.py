"""Retrieval quality measures shared by validation, benchmarks and tests."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


def recall_at_k(found: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of `relevant` (capped at k) that appears in the first k of `found`."""
    if not relevant:
        return 1.0
    hits = len(set(found[:k]) & set(relevant))
    return hits / min(k, len(relevant))


def ndcg_at_k(found: Sequence[str], gains: dict[str, float], k: int) -> float:
    """Normalized discounted cumulative gain with graded relevance `gains` (missing ids count 0)."""
    dcg = sum(gains.get(doc_id, 0.0) / math.log2(rank + 2) for rank, doc_id in enumerate(found[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k."""
    return len(set(a[:k]) & set(b[:k])) / k if k else 0.0


def rank_biased_overlap(a: Sequence[str], b: Sequence[str], k: int, p: float = 0.9) -> float:
    """Rank-biased overlap of two top-k lists, normalized so identical lists score 1.0.

    Unlike plain overlap it weighs agreement at the top more (Webber et al., 2010); p sets how steeply.
    """
    if k <= 0:
        return 0.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    total = 0.0
    for depth in range(1, k + 1):
        if depth <= len(a):
            seen_a.add(a[depth - 1])
        if depth <= len(b):
            seen_b.add(b[depth - 1])
        total += p ** (depth - 1) * len(seen_a & seen_b) / depth
    return (1 - p) * total / (1 - p**k)
