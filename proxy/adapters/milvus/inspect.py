"""Read-only questions `switchyard adopt` asks of an application's Milvus collection, and the one thing it
creates: the new model's collection beside it."""

from __future__ import annotations

from typing import Any

from proxy.adapters.milvus.adopted_collection import CollectionSpec, document_text
from proxy.adapters.milvus.connection import Client
from proxy.adapters.milvus.expressions import literal
from proxy.adapters.milvus.schema import describe_fields, vector_metric


class CollectionInspector:
    """A client for the adoption checks; every call only reads."""

    def __init__(self, uri: str, token: str | None, timeout_s: float = 10.0) -> None:
        self._client = Client("adopt", uri, token, timeout_s)

    @property
    def uri(self) -> str:
        return self._client.uri

    def exists(self, collection: str) -> bool:
        return bool(self._client.run("has_collection", collection))

    def collections(self) -> list[str]:
        return sorted(self._client.run("list_collections"))

    def fields(self, collection: str) -> dict[str, dict[str, Any]]:
        return describe_fields(self._client, collection)

    def metric(self, collection: str, vector_field: str) -> str | None:
        return vector_metric(self._client, collection, vector_field)

    def count(self, collection: str, expression: str = "") -> int:
        self._client.run("load_collection", collection)
        rows = self._client.run(
            "query", collection, filter=expression, output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"])

    def empty_text(self, spec: CollectionSpec) -> dict[str, int]:
        """Per text field: entities where it is empty."""
        return {f: self.count(spec.collection, f"{f} == {literal('')}") for f in spec.text_fields}

    def sample(self, spec: CollectionSpec, vector_field: str, size: int) -> list[tuple[str, list[float]]]:
        """Up to `size` entities with text, as (text as Switchyard builds it, stored vector): the first ones in
        key order (Milvus has no random order), from a window of 20x the size."""
        rows = self._client.run(
            "query",
            spec.collection,
            filter="",
            output_fields=[*spec.text_fields, vector_field],
            limit=20 * size,
            consistency_level="Strong",
        )
        found = [(document_text(row, spec.text_fields), list(row[vector_field])) for row in rows]
        return [(text, vector) for text, vector in found if text][:size]

    def close(self) -> None:
        self._client.close()
