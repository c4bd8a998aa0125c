"""`VectorIndex` over an application's own Milvus collection and its vector field, served in place (the old
leg of an adoption; the new leg is a `MilvusIndex` of Switchyard's own, keyed by the same ids).

Reads return what a direct search returns: the same entities, ids, scores and filters, with the text fields
joined as the models embed them and the metadata fields as strings. The application owns the collection, so
`upsert` and `delete` are refused.

Versions: every entity is at version 1. Milvus has no triggers and keeps no per-entity write time, so
Switchyard cannot see writes the application makes to its collection directly: this leg offers no change
feed. An entity the application inserts, edits or deletes after the backfill passed it stays as the backfill
found it in the new collection. During an adoption, pause the application's direct writes until the cut-over
(then write through the proxy), or migrate again for the rows written meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from proxy.adapters.milvus.adopted_collection import (
    ORDERABLE_KEYS,
    CollectionSpec,
    document_text,
    field_equals,
    key_literal,
    metadata_value,
    shape_problem,
)
from proxy.adapters.milvus.connection import Client
from proxy.adapters.milvus.expressions import all_of
from proxy.adapters.milvus.reads import best_of_pages
from proxy.adapters.milvus.schema import METRICS, Space, describe_fields, vector_metric
from proxy.core.errors import ConfigError, FailedPrecondition
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult, checked_vector

_PAGE = 2_000


class AdoptedCollectionIndex:
    """The old leg of a Milvus adoption (see the module docstring); thread-safe."""

    def __init__(
        self,
        name: str,
        dim: int,
        uri: str,
        *,
        spec: CollectionSpec,
        vector_field: str,
        token: str | None = None,
        space: Space = "cosine",
        ef_search: int = 64,
        timeout_s: float = 10.0,
    ) -> None:
        """Raises Unavailable when Milvus cannot be reached, ConfigError (naming the field) when the collection
        does not have the fields, key and vector dimension the config names."""
        self._name, self._dim, self._space, self._spec = name, dim, space, spec
        self._vector, self._ef_search = vector_field, ef_search
        self._client = Client(name, uri, token, timeout_s)
        try:
            self._fields = self._check(dim)
        except BaseException:
            self._client.close()
            raise
        self._key_kind = ORDERABLE_KEYS[self._fields[spec.id_field]["type"]]
        self._read_fields = [spec.id_field, *dict.fromkeys([*spec.text_fields, *spec.metadata_fields])]

    def _check(self, dim: int) -> dict[str, dict[str, Any]]:
        where = f"milvus index {self._name!r} at {self._client.uri}"
        if not self._client.run("has_collection", self._spec.collection):
            raise ConfigError(f"{where}: no collection {self._spec.collection!r}")
        fields = describe_fields(self._client, self._spec.collection)
        problem = shape_problem(fields, self._spec, self._vector, dim)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        metric = vector_metric(self._client, self._spec.collection, self._vector)
        if metric is not None and metric != METRICS[self._space]:
            raise ConfigError(
                f"{where}: vector field {self._vector} is indexed with metric {metric}; set the index's space"
                f" to {'ip' if metric == 'IP' else 'cosine'}"
            )
        self._client.run("load_collection", self._spec.collection)
        return fields

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return False

    def id_key(self, doc_id: str) -> tuple[int, str]:
        """Integer keys page in numeric order (`KeyOrder`), string keys in string order."""
        return (int(doc_id), "") if self._key_kind == "int" else (0, doc_id)

    # ---- writes: the application's --------------------------------------------------------------------

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        raise FailedPrecondition(
            f"index {self._name!r} serves the application's Milvus collection {self._spec.collection!r} in"
            " place: Switchyard does not write it; until the cut-over, writes go to the application's"
            " collection directly (see the README: direct writes during a Milvus adoption)"
        )

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        return self.upsert([])

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        found = {doc.id: doc for doc in map(self._document, self._by_ids(ids, self._read_fields))}
        return [found[doc_id] for doc_id in ids if doc_id in found]

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        return {str(row[self._spec.id_field]): 1 for row in self._by_ids(ids, [self._spec.id_field])}

    def _by_ids(self, ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        literals = [k for k in (key_literal(self._key_kind, i) for i in dict.fromkeys(ids)) if k is not None]
        rows: list[dict[str, Any]] = []
        for start in range(0, len(literals), 1_000):
            expression = f"{self._spec.id_field} in [{', '.join(literals[start : start + 1_000])}]"
            rows.extend(
                self._client.run("query", self._spec.collection, filter=expression, output_fields=fields)
            )
        return rows

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        return [self._document(row) for row in self._page("", after_id, limit, self._read_fields)]

    def _pages(self, condition: str, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        """Every row matching `condition`, a page at a time in key order."""
        after: str | None = None
        while rows := self._page(condition, after, _PAGE, fields):
            yield rows
            after = str(rows[-1][self._spec.id_field])

    def _page(
        self, condition: str, after_id: str | None, limit: int, fields: list[str]
    ) -> list[dict[str, Any]]:
        after = None if after_id is None else key_literal(self._key_kind, after_id)
        expression = all_of(condition, "" if after is None else f"{self._spec.id_field} > {after}")
        rows = self._client.run(
            "query",
            self._spec.collection,
            filter=expression,
            output_fields=fields,
            limit=limit,
            iterator="True",  # primary-key order (see reads.page_in_id_order)
            consistency_level="Strong",
        )
        return sorted(rows, key=lambda row: self.id_key(str(row[self._spec.id_field])))

    def search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None = None,
        *,
        include_text: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        query = checked_vector(vector, self._dim, self._name, "the query")
        expression = self._filter(where)
        if k <= 0 or expression is None:
            return []
        fields = [*self._spec.metadata_fields, *(self._spec.text_fields if include_text else ())]
        results = self._client.run(
            "search",
            self._spec.collection,
            data=[query.tolist()],
            anns_field=self._vector,
            limit=k,
            filter=expression,
            output_fields=list(dict.fromkeys(fields)) or [self._spec.id_field],
            search_params={"metric_type": METRICS[self._space], "params": {"ef": max(self._ef_search, k)}},
            timeout=self._client.timeout_s if timeout_s is None else max(timeout_s, 0.001),
        )
        hits = [
            self._hit(
                result["entity"], str(result[self._spec.id_field]), float(result["distance"]), include_text
            )
            for result in results[0]
        ]
        return hits if len(hits) == k else self.exact_search(query, k, where, include_text=include_text)

    def exact_search(
        self, vector: Vector, k: int, where: Metadata | None = None, *, include_text: bool = False
    ) -> list[Hit]:
        """Brute force over the matching vectors, a page at a time, keeping the best k."""
        query = checked_vector(vector, self._dim, self._name, "the query")
        expression = self._filter(where)
        if k <= 0 or expression is None:
            return []
        fields = [*self._read_fields, self._vector]
        best = best_of_pages(self._pages(expression, fields), query, self._vector, self._space == "cosine", k)
        return [self._hit(row, str(row[self._spec.id_field]), score, include_text) for score, row in best]

    def _filter(self, where: Metadata | None) -> str | None:
        """The Milvus expression of `where` (None: nothing can match, e.g. a key that is no metadata field)."""
        terms: list[str] = []
        for key, value in sorted((where or {}).items()):
            if key not in self._spec.metadata_fields:
                return None
            term = field_equals(key, self._fields[key]["type"], value)
            if term is None:
                return None
            terms.append(term)
        return all_of(*terms)

    def _document(self, row: dict[str, Any]) -> StoredDocument:
        return StoredDocument(
            id=str(row[self._spec.id_field]),
            version=1,
            text=document_text(row, self._spec.text_fields),
            metadata=self._metadata(row),
        )

    def _hit(self, entity: dict[str, Any], doc_id: str, score: float, include_text: bool) -> Hit:
        text = document_text(entity, self._spec.text_fields) if include_text else ""
        return Hit(
            id=doc_id, score=score, version=1, metadata=self._metadata(entity), text=text, index=self._name
        )

    def _metadata(self, row: dict[str, Any]) -> dict[str, str]:
        return {f: metadata_value(row[f]) for f in self._spec.metadata_fields if row.get(f) is not None}

    def count(self) -> int:
        rows = self._client.run(
            "query", self._spec.collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"])

    def max_version(self) -> int:
        return 1

    def storage_bytes(self) -> int:
        """An estimate from the entity count: the vector and about 200 bytes of key, text and scalars each (a
        server reports no collection size). The collection is the application's; this is for the gauges."""
        return self.count() * (4 * self._dim + 200)

    def dead_fraction(self) -> float:
        return 0.0

    def compact(self) -> int:
        return 0

    def retire_vectors(self) -> bool:
        """False: Milvus cannot drop a field, and the collection is the application's; once the migration is
        retired, the application drops it (or its vector field's index) itself (`core.ports.RetiresInPlace`)."""
        return False

    def flush(self) -> None:
        """Nothing to do: Switchyard writes nothing here."""

    def close(self) -> None:
        self._client.close()
