"""The rows a version-checked write sends, and what each record's write came to.

Milvus has no compare-and-set: `MilvusIndex` reads the stored versions of a batch's ids and upserts only the
records newer than them, holding the ids' stripes (`locks`) across both steps. A batch naming an id twice
sends one record for it, its highest version (the first on a tie), as PostgreSQL's one-row-per-statement rule
does for pgvector, so both backends report the same outcome.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from proxy.adapters.milvus.schema import (
    DELETED,
    ID,
    ID_MAX_BYTES,
    METADATA,
    TEXT,
    TEXT_MAX_BYTES,
    VECTOR,
    VERSION,
)
from proxy.core.model import IndexRecord, Vector

BATCH_BYTES = 16 << 20
"""Rows per insert RPC are cut at about this size: Milvus refuses an RPC over 64 MB."""


def check_storable(index: str, record: IndexRecord) -> None:
    """ValueError before anything is written for a record Milvus's fields cannot hold."""
    if len(record.id.encode()) > ID_MAX_BYTES:
        raise ValueError(f"index {index!r}: document id {record.id[:40]!r}... is over {ID_MAX_BYTES} bytes")
    if len(record.text.encode()) > TEXT_MAX_BYTES:
        raise ValueError(
            f"index {index!r}: document {record.id!r} has {len(record.text.encode()):,} bytes of text, over"
            f" Milvus's VARCHAR limit of {TEXT_MAX_BYTES:,}"
        )


def newer(candidates: dict[str, int], stored: dict[str, int]) -> set[str]:
    """Ids never stored, or whose candidate version is above the stored one (live or tombstone): the CAS."""
    return {
        doc_id for doc_id, version in candidates.items() if doc_id not in stored or version > stored[doc_id]
    }


def document_row(record: IndexRecord, vector: Vector) -> dict[str, Any]:
    return {
        ID: record.id,
        VERSION: record.version,
        DELETED: False,
        TEXT: record.text,
        METADATA: dict(record.metadata),
        VECTOR: vector.tolist(),
    }


def placeholder_vector(dim: int) -> list[float]:
    """A tombstone's vector: a fixed unit vector (every search filters tombstones out)."""
    vector = np.zeros(dim, dtype=np.float32)
    vector[0] = 1.0
    return vector.tolist()


def tombstone_row(doc_id: str, version: int, placeholder: list[float]) -> dict[str, Any]:
    return {ID: doc_id, VERSION: version, DELETED: True, TEXT: "", METADATA: {}, VECTOR: placeholder}


def row_batches(rows: Sequence[dict[str, Any]], dim: int) -> Iterator[list[dict[str, Any]]]:
    """`rows` in runs of at most about BATCH_BYTES each (a float costs 4 bytes, text its UTF-8 length)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_size = 64 + 4 * dim + len(row[TEXT].encode()) + len(row[ID].encode()) + 32 * len(row[METADATA])
        if batch and size + row_size > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch
