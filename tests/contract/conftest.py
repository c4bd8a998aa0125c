"""The `index_factory` fixture: every VectorIndex adapter the contract suite runs against."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from proxy.adapters.index_hnsw import HnswIndex
from proxy.ports import VectorIndex

IndexFactory = Callable[..., VectorIndex]
"""`factory(dim=8, space="cosine")` opens a fresh, empty index; the fixture closes it after the test."""


def _hnsw(directory: Path, dim: int, space: Literal["cosine", "ip"]) -> VectorIndex:
    # A tiny initial capacity makes every contract test exercise graph growth too.
    return HnswIndex("contract", dim, directory, space=space, initial_capacity=4, ef_search=32)


_ADAPTERS: dict[str, Callable[[Path, int, Literal["cosine", "ip"]], VectorIndex]] = {"hnsw": _hnsw}


@pytest.fixture(params=sorted(_ADAPTERS))
def index_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexFactory]:
    opened: list[VectorIndex] = []

    def factory(dim: int = 8, space: Literal["cosine", "ip"] = "cosine") -> VectorIndex:
        index = _ADAPTERS[request.param](tmp_path / f"index-{len(opened)}", dim, space)
        opened.append(index)
        return index

    yield factory
    for index in opened:
        index.close()
