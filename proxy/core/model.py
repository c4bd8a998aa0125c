"""Plain value types shared by the core and the adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Metadata = dict[str, str]


@dataclass(frozen=True)
class IndexRecord:
    """One document as an index stores it: the embedding of `text` at `version`."""

    id: str
    version: int
    text: str
    metadata: Metadata
    vector: Vector


@dataclass(frozen=True)
class StoredDocument:
    """A document read back from an index (without its vector)."""

    id: str
    version: int
    text: str
    metadata: Metadata


@dataclass(slots=True)
class Hit:
    """One search result. Treat it as immutable once a query leg has tagged it with its index and model (the
    only change after an index builds it): it is not frozen only because every query builds a few dozen, and a
    frozen dataclass costs five times as much to construct (0.8 vs 0.16 µs here)."""

    id: str
    score: float
    """Similarity from the index: higher is better (cosine similarity or inner product)."""
    version: int
    metadata: Metadata
    text: str = ""
    index: str = ""
    model: str = ""
    raw_score: float = 0.0


@dataclass(frozen=True)
class WriteResult:
    """Outcome of a version-checked write: ids written and ids skipped because a newer version is there."""

    written: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()


class RoutingMode(StrEnum):
    OLD = "old"
    SHADOW = "shadow"
    DUAL = "dual"
    NEW = "new"


@dataclass(frozen=True)
class DocumentInput:
    """A document as a client sends it, after validation."""

    id: str
    text: str
    metadata: Metadata = field(default_factory=dict)
    vector: Vector | None = None
    vector_model: str = ""


def checked_vector(vector: Vector, dim: int, index: str, what: str) -> Vector:
    """`vector` as contiguous float32 of `dim` finite values, or ValueError: an index must never store less."""
    array = np.ascontiguousarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        got = f"dim {array.shape[0]}" if array.ndim == 1 else f"shape {array.shape}"
        raise ValueError(f"index {index!r} expects vectors of dim {dim}, got {got} for {what}")
    if not np.isfinite(array).all():
        raise ValueError(f"index {index!r}: the vector for {what} has NaN or infinite values")
    return array


@dataclass(frozen=True)
class EmbedderLoad:
    """A remote embedder's requests against its limits, for status and metrics."""

    in_flight: int
    concurrency: int
    """Requests it may have in flight now (adaptive: halved on 429s, raised on successes)."""
    max_concurrency: int
    requests_last_minute: int
    tokens_last_minute: int
    """Estimated."""
    requests_per_minute: float | None
    tokens_per_minute: float | None
    """The configured budgets (None: none)."""
    throttled: int
    """429 answers since start."""
    retries: int
    """Requests sent again (after a 429, a server error, a timeout or a split)."""
    batch_cap: int | None
    """The largest batch the server accepted after refusing a larger one (None: none refused yet)."""
