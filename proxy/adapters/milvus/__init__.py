"""`VectorIndex` on Milvus: milvus-lite from a `.db` path, or a Milvus server or cluster by URI."""

from proxy.adapters.milvus.connection import redact_uri
from proxy.adapters.milvus.index import MilvusIndex
from proxy.adapters.milvus.schema import default_adopted_collection, default_collection

__all__ = ["MilvusIndex", "default_adopted_collection", "default_collection", "redact_uri"]
