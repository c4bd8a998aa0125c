"""Result rows as the core's documents and hits. (Vectors travel as numpy arrays, in pgvector's binary
form: `connection` registers the adapters on every pooled connection.)"""

from __future__ import annotations

import math
from typing import Any

from proxy.adapters.pgvector.schema import Space
from proxy.core.model import Hit, StoredDocument


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
