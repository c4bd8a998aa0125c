"""A deterministic embedder for tests and the demo: no model, no download.

Each token and character trigram maps to a pseudo-random unit vector derived from (seed, token); a text's
vector is the normalized weighted sum. Texts sharing words land close together in either space, so two
seeds behave like two real models that roughly agree on relevance while their vectors are incomparable:
a query embedded with seed 1 against vectors of seed 2 finds noise.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from proxy.core.model import Vector

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    def __init__(self, model: str, dim: int, seed: int, trigram_weight: float = 0.3) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._model = model
        self._dim = dim
        self._seed = seed
        self._trigram_weight = trigram_weight
        self._feature = lru_cache(maxsize=200_000)(self._feature_vector)
        self._token = lru_cache(maxsize=100_000)(self._token_vector)

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return True

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        return [self._embed_one(text) for text in texts]

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        return self.embed(texts)  # a symmetric model: queries and documents share one embedding

    def _embed_one(self, text: str) -> Vector:
        tokens = _TOKEN.findall(text.lower())
        # Additions of one vector at a time and a sum of squares: numpy releases the GIL for stacked arrays
        # and for dot products, and on a busy server every release is a handoff that costs more than the math.
        total = self._token(tokens[0]).copy() if tokens else np.zeros(self._dim, dtype=np.float32)
        for token in tokens[1:]:
            total += self._token(token)
        norm = math.sqrt(float(np.square(total).sum()))
        if norm == 0.0:
            # Text without word characters (or whose features cancel): a fixed direction keeps it valid.
            total = self._feature("\x00empty").copy()
            norm = math.sqrt(float(np.square(total).sum()))
        total /= norm
        return total

    def _token_vector(self, token: str) -> Vector:
        """The token's own feature plus its character trigrams' (which make inflections land nearby)."""
        total = self._feature(token).copy()
        for trigram in _trigrams(token):
            total += self._trigram_weight * self._feature("#" + trigram)
        return total

    def _feature_vector(self, feature: str) -> Vector:
        digest = hashlib.blake2b(f"{self._seed}:{feature}".encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        return rng.standard_normal(self._dim).astype(np.float32)


def _trigrams(token: str) -> list[str]:
    padded = f"<{token}>"
    return [padded[i : i + 3] for i in range(len(padded) - 2)]
