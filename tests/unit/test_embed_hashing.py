from __future__ import annotations

import numpy as np

from proxy.adapters.embedders.hashing import HashingEmbedder


def test_vectors_are_deterministic_normalized_and_of_the_configured_dim() -> None:
    a1 = HashingEmbedder("m", 24, seed=1).embed(["hello world", "!!!"])
    a2 = HashingEmbedder("m", 24, seed=1).embed(["hello world", "!!!"])
    assert all(v.shape == (24,) and v.dtype == np.float32 for v in a1)
    assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-5 for v in a1)
    assert all(np.array_equal(x, y) for x, y in zip(a1, a2, strict=True))


def test_related_texts_are_closer_than_unrelated_ones_within_a_space() -> None:
    e = HashingEmbedder("m", 128, seed=1)
    base, near, far = e.embed(["garlic broth recipe", "recipe for garlic soup", "galaxy telescope orbit"])
    assert float(base @ near) > float(base @ far) + 0.2


def test_two_seeds_are_incompatible_spaces() -> None:
    a = HashingEmbedder("a", 128, seed=1)
    b = HashingEmbedder("b", 128, seed=2)
    text = "garlic broth recipe"
    same_space = float(a.embed([text])[0] @ a.embed([text])[0])
    cross_space = float(a.embed([text])[0] @ b.embed([text])[0])
    assert same_space > 0.99
    assert abs(cross_space) < 0.4
