"""Exact top-k by brute force over batches of vectors: for small filtered sets, and when the graph walk falls
short."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from proxy.core.model import Vector


def exact_top_k(
    query: Vector, batches: Iterable[tuple[np.ndarray, np.ndarray]], k: int, *, cosine: bool
) -> tuple[list[int], list[float]]:
    """The labels and scores of the `k` best of `batches` of (labels, vectors as matrix rows), best first.

    Only the best `k` so far are kept between batches, so memory stays at one batch.
    """
    if cosine:
        query = _unit_rows(query[None, :])[0]
    best_labels = np.empty(0, dtype=np.int64)
    best_scores = np.empty(0, dtype=np.float32)
    for labels, matrix in batches:
        if cosine:
            matrix = _unit_rows(matrix)
        labels = np.concatenate([best_labels, labels])
        scores = np.concatenate([best_scores, matrix @ query])
        keep = _top(scores, k)
        best_labels, best_scores = labels[keep], scores[keep]
    order = np.argsort(-best_scores, kind="stable")
    return best_labels[order].tolist(), best_scores[order].tolist()


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    if len(scores) <= k:
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
