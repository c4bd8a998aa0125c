"""`VectorIndex` on Milvus: one collection per index, an HNSW index on its vector field.

The URI alone picks the engine (`connection`): a `.db` path runs milvus-lite in this process, an http(s) URI
reaches a Milvus server or cluster, with the same calls and the same guarantees below.

Versions. Milvus has no conditional write, so compare-and-set is done here: a write holds its ids' stripes
(`locks`), reads their stored versions at Strong consistency, and upserts only the records newer than those,
live or tombstoned. Two writers of one id in this process therefore take turns, and the highest version wins
whatever the arrival order; an older write never overwrites a newer one nor resurrects a deleted id
(tombstones are entities with `deleted = true`, kept for good). That guarantee needs every writer of the
collection to be this process: one sidecar replica per collection (milvus-lite allows only one process per
`.db` anyway). Two replicas writing one server collection could interleave read and upsert for the same id,
and the later upsert would win even if its version were lower; run such a deployment with one replica.

Durability: an acknowledged write is in Milvus's write-ahead log (milvus-lite: a WAL file in the `.db`
folder; a cluster: its message queue); `flush` also seals it into segments. Searches read at the configured
consistency level (Strong by default: a write is visible to the next search); version checks, `get`, `scan`
and counts always read at Strong.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from proxy.adapters.milvus.connection import Client, is_local
from proxy.adapters.milvus.expressions import LIVE, all_of, metadata_matches
from proxy.adapters.milvus.locks import collection_stripes, holding
from proxy.adapters.milvus.reads import (
    DOCUMENT_FIELDS,
    all_in_id_order,
    best_of_pages,
    by_ids,
    page_in_id_order,
    search_hit,
    stored_document,
)
from proxy.adapters.milvus.schema import (
    ID,
    METADATA,
    METRICS,
    TEXT,
    VECTOR,
    VERSION,
    IndexCollection,
    Space,
    check_collection_name,
    default_collection,
    ensure_collection,
)
from proxy.adapters.milvus.writes import (
    check_storable,
    document_row,
    newer,
    placeholder_vector,
    row_batches,
    tombstone_row,
)
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult, checked_vector
from proxy.core.versioned_batch import batch_outcome, latest_per_id

CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")


class MilvusIndex:
    """`VectorIndex` in a Milvus collection (see the module docstring)."""

    def __init__(
        self,
        name: str,
        dim: int,
        uri: str,
        *,
        collection: str | None = None,
        token: str | None = None,
        space: Space = "cosine",
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 200,
        ef_search: int = 64,
        consistency_level: str = "Strong",
        timeout_s: float = 10.0,
    ) -> None:
        """Connects, creates the collection when absent, checks and loads an existing one.

        Raises Unavailable when Milvus cannot be reached (naming the URI), ConfigError when the collection has
        another shape (naming the field), IndexConfigMismatch when it was made for another dim or space.
        """
        if dim <= 0:
            raise ValueError(f"index {name!r}: dim must be positive, got {dim}")
        if space not in METRICS:
            raise ValueError(f"index {name!r}: space must be 'cosine' or 'ip', got {space!r}")
        if consistency_level not in CONSISTENCY_LEVELS:
            raise ValueError(
                f"index {name!r}: consistency_level must be one of {', '.join(CONSISTENCY_LEVELS)}"
            )
        self._name = name
        self._dim = dim
        self._space: Space = space
        self._uri = uri
        self._ef_search = ef_search
        self._hnsw_m = hnsw_m
        self._consistency = consistency_level
        self._collection = collection or default_collection(name)
        check_collection_name(name, self._collection)
        self._client = Client(name, uri, token, timeout_s)
        try:
            ensure_collection(
                self._client,
                IndexCollection(index=name, name=self._collection, dim=dim, space=space),
                hnsw_m=hnsw_m,
                hnsw_ef_construction=hnsw_ef_construction,
                consistency_level=consistency_level,
            )
        except BaseException:
            self._client.close()
            raise
        self._stripes = collection_stripes(self._client.uri, self._collection)
        self._placeholder = placeholder_vector(dim)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return False

    @property
    def collection(self) -> str:
        return self._collection

    # ---- writes -------------------------------------------------------------------------------------------

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        # Every record is checked before anything is written: a bad batch changes nothing.
        vectors = [self._checked_vector(r.vector, f"document {r.id!r}") for r in records]
        for record in records:
            check_storable(self._name, record)
        winners = latest_per_id(records)
        if not winners:
            return WriteResult()
        with holding(self._stripes, winners):
            stored = self._stored_versions(list(winners))
            written = newer({doc_id: records[p].version for doc_id, p in winners.items()}, stored)
            rows = [
                document_row(records[p], vectors[p]) for doc_id, p in winners.items() if doc_id in written
            ]
            self._write(rows)
        return batch_outcome(records, winners, written)

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        ordered = list(dict.fromkeys(ids))
        if not ordered:
            return WriteResult()
        with holding(self._stripes, ordered):
            written = newer(dict.fromkeys(ordered, version), self._stored_versions(ordered))
            self._write([tombstone_row(i, version, self._placeholder) for i in ordered if i in written])
        return WriteResult(
            written=tuple(i for i in ordered if i in written),
            stale=tuple(i for i in ordered if i not in written),
        )

    def _write(self, rows: list[dict[str, Any]]) -> None:
        for batch in row_batches(rows, self._dim):
            self._client.run("upsert", self._collection, batch)

    def _stored_versions(self, ids: Sequence[str]) -> dict[str, int]:
        rows = by_ids(self._client, self._collection, ids, [ID, VERSION])
        return {str(row[ID]): int(row[VERSION]) for row in rows}

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        rows = by_ids(self._client, self._collection, ids, DOCUMENT_FIELDS, LIVE)
        found = {str(row[ID]): stored_document(row) for row in rows}
        return [found[doc_id] for doc_id in ids if doc_id in found]

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        return self._stored_versions(ids)

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        if limit <= 0:
            return []
        rows = page_in_id_order(self._client, self._collection, LIVE, after_id, limit, DOCUMENT_FIELDS)
        return [stored_document(row) for row in rows]

    def search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None = None,
        *,
        include_text: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        fields = [VERSION, METADATA, TEXT] if include_text else [VERSION, METADATA]
        expression = all_of(LIVE, *metadata_matches(METADATA, where))
        timeout = self._client.timeout_s if timeout_s is None else max(timeout_s, 0.001)
        results = self._client.call(
            lambda c: c.search(
                self._collection,
                data=[query.tolist()],
                anns_field=VECTOR,
                limit=k,
                filter=expression,
                output_fields=fields,
                # HNSW needs ef >= k: a search for more neighbours than ef_search raises it for itself.
                search_params={
                    "metric_type": METRICS[self._space],
                    "params": {"ef": max(self._ef_search, k)},
                },
                consistency_level=self._consistency,
                timeout=timeout,
            )
        )
        hits = [search_hit(result, self._name, include_text) for result in results[0]]
        if len(hits) < k:
            # Short: fewer than k documents match (the exact answer is then cheap, over the few that do), or
            # the graph walk missed some of them; the exact answer is right in both cases.
            return self.exact_search(query, k, where, include_text=include_text)
        return hits

    def exact_search(
        self, vector: Vector, k: int, where: Metadata | None = None, *, include_text: bool = False
    ) -> list[Hit]:
        """Brute force over every matching live vector, a page at a time, keeping the best k between pages:
        Milvus's own search over an HNSW index is approximate, and a second, flat index would double the
        collection's vectors for the sake of validation."""
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        fields = [*DOCUMENT_FIELDS, VECTOR]
        expression = all_of(LIVE, *metadata_matches(METADATA, where))
        pages = all_in_id_order(self._client, self._collection, expression, fields)
        best = best_of_pages(pages, query, VECTOR, self._space == "cosine", k)
        return [
            Hit(
                id=str(row[ID]),
                score=score,
                version=int(row[VERSION]),
                metadata=dict(row[METADATA] or {}),
                text=str(row[TEXT]) if include_text else "",
                index=self._name,
            )
            for score, row in best
        ]

    def count(self) -> int:
        return self._count(LIVE)

    def _count(self, expression: str) -> int:
        rows = self._client.call(
            lambda c: c.query(
                self._collection, filter=expression, output_fields=["count(*)"], consistency_level="Strong"
            )
        )
        return int(rows[0]["count(*)"])

    def max_version(self) -> int:
        """Highest version, live or tombstoned. Milvus has no max aggregation, so this reads every entity's
        version (ids and versions only): it runs when a sidecar starts and after the state store lost its
        counter, never on a request."""
        highest = 0
        for rows in all_in_id_order(self._client, self._collection, "", [ID, VERSION], page=10_000):
            highest = max(highest, *(int(row[VERSION]) for row in rows))
        return highest

    def storage_bytes(self) -> int:
        """milvus-lite: the bytes of its `.db` folder on disk. A server does not report a collection's size,
        so there it is an estimate from the entity count: the vector, its HNSW links (2 * M four-byte ids) and
        about 100 bytes of scalars per entity, tombstones included."""
        if is_local(self._uri):
            return _folder_bytes(self._uri)
        entities = self._count("")
        return entities * (4 * self._dim + 8 * self._hnsw_m + 100)

    # ---- space ---------------------------------------------------------------------------------------------

    def dead_fraction(self) -> float:
        """0.0: Milvus compacts its segments itself (rows replaced by upserts); tombstones must stay."""
        return 0.0

    def compact(self) -> int:
        """0: nothing to reclaim here (see `dead_fraction`)."""
        return 0

    # ---- durability and lifecycle -------------------------------------------------------------------------

    def flush(self) -> None:
        """Seals the acknowledged writes into segments (they are already in the write-ahead log)."""
        self._client.call(lambda c: c.flush(self._collection))

    def close(self) -> None:
        self._client.close()

    def drop(self) -> None:
        """Drops the collection, then closes: for tests, and for an index that was retired."""
        self._client.call(lambda c: c.drop_collection(self._collection))
        self.close()

    def _checked_vector(self, vector: Vector, what: str) -> Vector:
        return checked_vector(vector, self._dim, self._name, what)


def _folder_bytes(path: str) -> int:
    # `du` counts what the files take on disk, as the other backends' sizes do.
    completed = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=False)
    return int(completed.stdout.split()[0]) if completed.returncode == 0 else 0
