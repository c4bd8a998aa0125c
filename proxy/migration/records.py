"""Documents re-embedded with a target's model: what the backfill, lazy moves and followed changes write."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.core.model import IndexRecord, StoredDocument
from proxy.core.ports import Embedder, VectorIndex


def embed_records(docs: Sequence[StoredDocument], embedder: Embedder) -> list[IndexRecord]:
    """Each document at its own version, with its text embedded by `embedder`."""
    if not docs:
        return []
    vectors = embedder.embed([d.text for d in docs])
    return [IndexRecord(d.id, d.version, d.text, d.metadata, v) for d, v in zip(docs, vectors, strict=True)]


def needing_reembed(docs: Sequence[StoredDocument], target: VectorIndex) -> list[StoredDocument]:
    """Leaves out documents the target already holds at their version (dual-written, moved lazily, followed)."""
    held = target.versions([d.id for d in docs])
    return [d for d in docs if held.get(d.id, -1) < d.version]
