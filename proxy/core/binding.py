"""An index together with the embedder whose space its vectors live in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.core.model import DocumentInput, IndexRecord, Vector
from proxy.core.ports import Embedder, VectorIndex


@dataclass(frozen=True)
class IndexBinding:
    index: VectorIndex
    embedder: Embedder

    @property
    def name(self) -> str:
        return self.index.name

    @property
    def model(self) -> str:
        return self.embedder.model

    @property
    def in_process(self) -> bool:
        """A query leg over this binding neither waits on a server for its vector nor for its hits."""
        return self.index.in_process and self.embedder.in_process

    def records_for(self, documents: Sequence[DocumentInput], versions: Sequence[int]) -> list[IndexRecord]:
        """Index records for this binding: caller vectors of this model are kept, the rest embedded from text."""
        to_embed = [d.text for d in documents if self._own_vector(d) is None]
        embedded = iter(self.embedder.embed(to_embed) if to_embed else [])
        records = []
        for doc, version in zip(documents, versions, strict=True):
            own = self._own_vector(doc)
            vector = own if own is not None else next(embedded)
            records.append(IndexRecord(doc.id, version, doc.text, dict(doc.metadata), vector))
        return records

    def _own_vector(self, doc: DocumentInput) -> Vector | None:
        """The caller's vector when it lives in this binding's space; None when the text must be embedded."""
        return doc.vector if doc.vector_model == self.model else None
