"""The `index_factory` fixture: every VectorIndex adapter the contract suite runs against."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from proxy.adapters.hnsw import HnswIndex
from proxy.adapters.milvus import MilvusIndex
from proxy.adapters.pgvector import PgVectorIndex
from proxy.core.errors import Unavailable
from proxy.core.ports import VectorIndex

IndexFactory = Callable[..., VectorIndex]
"""`factory(dim=8, space="cosine")` opens a fresh, empty index; the fixture closes it after the test."""

# The server scripts/ensure-pgvector.sh starts when PGVECTOR_DSN is not set.
PGVECTOR_DSN = os.environ.get("PGVECTOR_DSN", "postgresql://postgres@127.0.0.1:5433/postgres")


def _hnsw(directory: Path, dim: int, space: Literal["cosine", "ip"]) -> VectorIndex:
    # A tiny initial capacity makes every contract test exercise graph growth too.
    return HnswIndex("contract", dim, directory, space=space, initial_capacity=4, ef_search=32)


def open_pgvector(dim: int, space: Literal["cosine", "ip"] = "cosine", **options: Any) -> PgVectorIndex:
    """A pgvector index on a table of its own; a missing server fails the test (it is never skipped)."""
    table = f"test_{uuid.uuid4().hex[:20]}"
    try:
        return PgVectorIndex("contract", dim, PGVECTOR_DSN, table=table, space=space, **options)
    except Unavailable as exc:
        pytest.fail(f"{exc}\nStart a test server with: export PGVECTOR_DSN=$(scripts/ensure-pgvector.sh)")


def _pgvector(directory: Path, dim: int, space: Literal["cosine", "ip"]) -> VectorIndex:
    return open_pgvector(dim, space, ef_search=32)


def open_milvus(uri: str, dim: int, space: Literal["cosine", "ip"] = "cosine", **options: Any) -> MilvusIndex:
    """A Milvus index on a collection of its own, in the milvus-lite engine at `uri`."""
    return MilvusIndex(
        "contract", dim, uri, collection=f"test_{uuid.uuid4().hex[:20]}", space=space, **options
    )


def _milvus(directory: Path, dim: int, space: Literal["cosine", "ip"]) -> VectorIndex:
    # One milvus-lite engine (a `.db` folder) for the whole session, a collection per index: an engine per
    # test would start a server per test.
    return open_milvus(str(directory.parent.parent / "milvus" / "contract.db"), dim, space, ef_search=32)


_ADAPTERS: dict[str, Callable[[Path, int, Literal["cosine", "ip"]], VectorIndex]] = {
    "hnsw": _hnsw,
    "milvus": _milvus,
    "pgvector": _pgvector,
}


def _pgvector_deferred(directory: Path, dim: int, space: Literal["cosine", "ip"]) -> VectorIndex:
    # A migration's new table before its HNSW index is built: every search is a scan, and the port's
    # promises (versions, tombstones, filters, ordering) must hold all the same.
    return open_pgvector(dim, space, ef_search=32, build_index="deferred")


_ADAPTERS["pgvector-deferred"] = _pgvector_deferred


@pytest.fixture(params=sorted(_ADAPTERS))
def index_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexFactory]:
    opened: list[VectorIndex] = []

    def factory(dim: int = 8, space: Literal["cosine", "ip"] = "cosine") -> VectorIndex:
        index = _ADAPTERS[request.param](tmp_path / f"index-{len(opened)}", dim, space)
        opened.append(index)
        return index

    yield factory
    for index in opened:
        if isinstance(index, PgVectorIndex | MilvusIndex):
            index.drop()  # its table or collection lives on a shared server: leave nothing behind
        else:
            index.close()
