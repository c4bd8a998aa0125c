"""Sizes and durations of one benchmark run: `--quick` for a smoke test, the default for the report."""

from __future__ import annotations

from dataclasses import dataclass, replace

SECTIONS = (
    "overhead",
    "fanout",
    "backfill",
    "recall",
    "storage",
    "scale",
    "collections",
    "pgvector",
    "embed_concurrency",
    "adopt",
    "milvus",
)


@dataclass(frozen=True)
class BenchSettings:
    quick: bool
    corpus: int
    """Documents in the base corpus of the overhead, fan-out, backfill and storage sections."""
    dim: int
    query_pool: int
    """Distinct query vectors / texts, cycled by the load generator."""
    rounds: int
    """Measurements alternate between the compared setups this many times, to spread machine noise."""
    round_s: float
    concurrency: tuple[int, ...]
    max_requests: int
    """Cap per measurement phase, next to its time bound."""
    warmup: int
    """Requests per phase sent before timing starts (connection set-up, caches)."""
    throttle_clients: int
    throttle_rounds: int
    """Idle/busy pairs of the throttled-backfill measurement."""
    latency_budget_ms: float
    real_model: str | None
    model_docs: int
    model_batch: int
    backfill_batch: int
    recall_corpus: int
    recall_queries: int
    scales: tuple[int, ...]
    large_dim: int
    """Dimension for scales above `large_threshold` (to keep the load time sane)."""
    large_threshold: int
    scale_backfill_window_s: float
    real_recall: bool
    """Repeat the recall table with two real models (all-MiniLM-L6-v2 -> multilingual-e5-small)."""
    collection_docs: int
    """Documents in the second, idle collection's index of the collections section."""
    collection_clients: tuple[int, ...]
    """Concurrent clients of the collections section (its own: it compares at 1 and at 8)."""
    collection_rounds: int
    """Rounds of the collections section: its target is tight (5%), so it samples longer than the others."""
    pg_clients: tuple[int, ...]
    """Concurrent clients of the pgvector section's queries (its targets are at 1 and at 8)."""
    pg_write_docs: int
    """Documents each write method of the pgvector section writes (its query table holds `corpus` rows)."""
    pg_write_rounds: int
    """The write methods take turns this many times, each writing its share of the documents per turn."""
    pg_backfill_docs: int
    """Documents in the old table of the pgvector section's pgvector -> pgvector backfill."""
    embed_delay_ms: float
    """The remote embedding server's answer time per batch in the embed_concurrency section."""
    embed_batch: int
    embed_rounds: int
    """Rounds of full concurrent batches each concurrency's backfill takes."""
    embed_rpm_window_s: float
    embed_rpm_per_window: int
    """The rate-limited server's limit: this many requests per window (600 a minute either way)."""
    embed_rpm_windows: int
    """Complete windows the rate-limited backfill spans."""
    adopt_rows: int = 100_000
    """Rows of the application's table of the adopted-table section (hashing models)."""
    adopt_real_rows: int = 2_000
    """Rows of its real-model run (0: none)."""
    adopt_insert_rows: int = 10_000
    """Rows of its INSERT-into-HNSW references, at most half the table: a backfill's first rows (into an empty
    graph) and its last (into a graph of every other row)."""
    adopt_window_s: float = 10.0
    """Its direct writes' latency is measured this long before adoption, and again adopted but idle."""
    milvus_clients: tuple[int, ...] = (1, 4)
    """Concurrent clients (threads) of the Milvus section's queries."""
    milvus_write_docs: int = 5_000
    """Documents written each way (through the sidecar, directly) in the Milvus section."""
    sections: tuple[str, ...] = SECTIONS

    def scale_dim(self, size: int) -> int:
        return self.large_dim if size > self.large_threshold else self.dim


FULL = BenchSettings(
    quick=False,
    corpus=10_000,
    dim=384,
    query_pool=500,
    rounds=4,
    round_s=2.5,
    concurrency=(1, 32),
    max_requests=100_000,
    warmup=20,
    throttle_clients=4,
    throttle_rounds=8,
    latency_budget_ms=5.0,
    real_model="e5-small",
    model_docs=320,
    model_batch=32,
    backfill_batch=256,
    recall_corpus=5_000,
    recall_queries=200,
    scales=(10_000, 100_000, 1_000_000),
    large_dim=64,
    large_threshold=100_000,
    scale_backfill_window_s=10.0,
    real_recall=True,
    collection_docs=3_000,
    collection_clients=(1, 8),
    collection_rounds=10,
    pg_clients=(1, 8),
    pg_write_docs=5_000,
    pg_write_rounds=5,
    pg_backfill_docs=5_000,
    embed_delay_ms=100.0,
    embed_batch=32,
    embed_rounds=30,
    embed_rpm_window_s=5.0,
    embed_rpm_per_window=50,
    embed_rpm_windows=6,
)

QUICK = replace(
    FULL,
    quick=True,
    corpus=300,
    query_pool=50,
    rounds=1,
    round_s=0.4,
    concurrency=(1, 4),
    max_requests=2_000,
    warmup=5,
    throttle_rounds=1,
    model_docs=16,
    model_batch=8,
    recall_corpus=300,
    recall_queries=20,
    scales=(1_000,),
    large_threshold=0,
    scale_backfill_window_s=1.0,
    real_recall=False,
    collection_docs=200,
    collection_rounds=1,
    pg_write_docs=200,
    pg_write_rounds=1,
    pg_backfill_docs=200,
    embed_rounds=8,
    embed_rpm_window_s=2.0,
    embed_rpm_per_window=20,
    embed_rpm_windows=3,
    adopt_rows=2_000,
    adopt_real_rows=0,
    adopt_insert_rows=2_000,
    adopt_window_s=3.0,
    milvus_write_docs=200,
)
