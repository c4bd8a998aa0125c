"""The core's values as they travel to PostgreSQL and back: vectors in pgvector's text form ('[1.0,2.0]'),
so no client-side type registration is needed, and result rows as documents and hits."""

from __future__ import annotations

import math
from typing import Any

from proxy.adapters.pgvector.schema import Space
from proxy.core.model import Hit, StoredDocument, Vector


def vector_text(vector: Vector) -> str:
    # repr of a float32 widened to float64 parses back to the same float32: no precision is lost.
    return "[" + ",".join(map(repr, vector.tolist())) + "]"


def stored_document(row: tuple[Any, ...]) -> StoredDocument:
    """A row of (id, version, text, metadata)."""
    doc_id, version, text, metadata = row
    return StoredDocument(id=doc_id, version=int(version), text=text, metadata=metadata)


def hit(row: tuple[Any, ...], space: Space, index: str) -> Hit:
    """A row of (id, version, text, metadata, distance) from a search of `index`, in `space`."""
    doc_id, version, text, metadata, distance = row
    return Hit(
        id=doc_id,
        score=similarity(float(distance), space),
        version=int(version),
        metadata=metadata,
        text=text,
        index=index,
    )


def similarity(distance: float, space: Space) -> float:
    if math.isnan(distance):
        return 0.0  # cosine distance to a zero vector is undefined; rank it as unrelated
    # `<=>` is 1 - cosine similarity; `<#>` is the negated inner product (so ascending order is best first).
    return 1.0 - distance if space == "cosine" else -distance
