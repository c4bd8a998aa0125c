"""`VectorIndex` on PostgreSQL with the pgvector extension."""

from proxy.adapters.pgvector.connection import redact_dsn
from proxy.adapters.pgvector.index import PgVectorIndex
from proxy.adapters.pgvector.schema import default_table

__all__ = ["PgVectorIndex", "default_table", "redact_dsn"]
