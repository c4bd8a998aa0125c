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
