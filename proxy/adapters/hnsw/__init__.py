"""The embedded default `VectorIndex`: SQLite rows plus an hnswlib graph in one local directory."""

from proxy.adapters.hnsw.index import HnswIndex as HnswIndex
