"""Reads by primary key and in primary-key order, and the exact search built on them.

A query with `iterator=True` asks Milvus for rows in primary-key order (what its own query iterator pages
by): the backfill's `scan`, `max_version` and the brute-force `exact_search` page with `id > last` on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from proxy.adapters.milvus.connection import Client
from proxy.adapters.milvus.expressions import all_of, id_in, literal
from proxy.adapters.milvus.schema import ID, METADATA, TEXT, VERSION
from proxy.core.model import Hit, StoredDocument

IDS_PER_QUERY = 1_000
"""Ids per `id in [...]` expression: a whole backfill page in one, short enough for any server's parser."""
DOCUMENT_FIELDS = [ID, VERSION, TEXT, METADATA]


def by_ids(
    client: Client, collection: str, ids: Sequence[str], fields: list[str], condition: str = ""
) -> list[dict[str, Any]]:
    """Rows whose id is in `ids` (and match `condition`), read at Strong consistency: after a write."""
    unique = list(dict.fromkeys(ids))
    rows: list[dict[str, Any]] = []
    for start in range(0, len(unique), IDS_PER_QUERY):
        expression = all_of(id_in(ID, unique[start : start + IDS_PER_QUERY]), condition)
        rows.extend(
            client.run(
                "query", collection, filter=expression, output_fields=fields, consistency_level="Strong"
            )
        )
    return rows


def page_in_id_order(
    client: Client, collection: str, condition: str, after_id: str | None, limit: int, fields: list[str]
) -> list[dict[str, Any]]:
    """Up to `limit` rows matching `condition` with id > after_id, in ascending id order."""
    expression = all_of(condition, "" if after_id is None else f"{ID} > {literal(after_id)}")
    rows = client.call(
        lambda c: c.query(
            collection,
            filter=expression,
            output_fields=fields,
            limit=limit,
            iterator="True",
            consistency_level="Strong",
        )
    )
    # Python's string order is Milvus's VARCHAR order (UTF-8 bytes sort as code points): sorting again only
    # guards the cursor against a server that hands the page back unsorted.
    return sorted(rows, key=lambda row: str(row[ID]))


def all_in_id_order(
    client: Client, collection: str, condition: str, fields: list[str], page: int = 2_000
) -> Iterator[list[dict[str, Any]]]:
    """Every row matching `condition`, a page at a time."""
    after: str | None = None
    while True:
        rows = page_in_id_order(client, collection, condition, after, page, fields)
        if not rows:
            return
        yield rows
        after = str(rows[-1][ID])


def stored_document(row: dict[str, Any]) -> StoredDocument:
    return StoredDocument(
        id=str(row[ID]),
        version=int(row[VERSION]),
        text=str(row.get(TEXT, "")),
        metadata=dict(row[METADATA] or {}),
    )


def search_hit(result: dict[str, Any], index: str, include_text: bool) -> Hit:
    """One hit of `MilvusClient.search`: its `distance` is the similarity (COSINE and IP: higher is better)."""
    entity = result["entity"]
    return Hit(
        id=str(result["id"]),
        score=float(result["distance"]),
        version=int(entity[VERSION]),
        metadata=dict(entity[METADATA] or {}),
        text=str(entity[TEXT]) if include_text else "",
        index=index,
    )


def vectors_of(rows: Sequence[dict[str, Any]], field: str) -> np.ndarray:
    return np.asarray([row[field] for row in rows], dtype=np.float32)


def best_of_pages(
    pages: Iterable[list[dict[str, Any]]], query: np.ndarray, field: str, cosine: bool, k: int
) -> list[tuple[float, dict[str, Any]]]:
    """Brute force: the k best (score, row) over pages of rows holding `field`'s vector, best first; only k
    rows are kept between pages, so a collection of any size is scanned in a page's memory."""
    if cosine:
        query = query / max(float(np.linalg.norm(query)), 1e-30)
    best: list[tuple[float, dict[str, Any]]] = []
    for rows in pages:
        matrix = vectors_of(rows, field)
        if cosine:
            norms = np.linalg.norm(matrix, axis=1)
            matrix = matrix / np.where(norms > 0, norms, 1.0)[:, None]
        best.extend(zip((matrix @ query).tolist(), rows, strict=True))
        best.sort(key=lambda pair: -pair[0])
        del best[k:]
    return best
