"""The shared base corpus (index A under model hash-a, B under hash-b) and fresh data dirs holding it."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.bench.datasets import BuiltIndex, build_index, copy_index, embedded_vectors
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import NEW_INDEX, NEW_MODEL, OLD_INDEX, OLD_MODEL, index_dir
from proxy.demo.corpus import CorpusDoc, synthetic_corpus, synthetic_queries


class BaseCorpus:
    """Built on first use, then copied into each section's own data dir (a sidecar owns its directory)."""

    def __init__(self, settings: BenchSettings, root: Path) -> None:
        self.settings = settings
        self.root = root / "base"

    @cached_property
    def docs(self) -> list[CorpusDoc]:
        return synthetic_corpus(self.settings.corpus)

    @cached_property
    def old_embedder(self) -> HashingEmbedder:
        # Same model name, dim and seed as the sidecar config's hash-a: the vectors are interchangeable.
        return HashingEmbedder(OLD_MODEL, self.settings.dim, 1)

    @cached_property
    def old_index(self) -> BuiltIndex:
        vectors = embedded_vectors(self.old_embedder, [d.text for d in self.docs])
        return build_index(self.root / OLD_INDEX, self.docs, vectors)

    @cached_property
    def new_index(self) -> BuiltIndex:
        embedder = HashingEmbedder(NEW_MODEL, self.settings.dim, 2)
        vectors = embedded_vectors(embedder, [d.text for d in self.docs])
        return build_index(self.root / NEW_INDEX, self.docs, vectors)

    @cached_property
    def query_texts(self) -> list[str]:
        return synthetic_queries(self.settings.query_pool)

    @cached_property
    def query_vectors_file(self) -> Path:
        """hash-a embeddings of the query texts: the caller-supplied vectors of the vector-query phases."""
        # The root exists already when a section built index A first; the pgvector section builds none.
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "query-vectors.npy"
        np.save(path, embedded_vectors(self.old_embedder, self.query_texts))
        return path

    def data_dir(self, name: str, *, with_new: bool = False) -> Path:
        """A new data dir holding a copy of A (and of B when `with_new`)."""
        data_dir = self.root.parent / name / "data"
        copy_index(self.old_index.directory, index_dir(data_dir, OLD_INDEX))
        if with_new:
            copy_index(self.new_index.directory, index_dir(data_dir, NEW_INDEX))
        return data_dir
