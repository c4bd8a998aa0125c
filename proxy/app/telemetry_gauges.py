"""What the metrics gauges show, read from the indexes and the migration at scrape time (never per query)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.adapters.embedders.remote_http import RemoteEmbedder
from proxy.adapters.telemetry_otel import GaugeValue
from proxy.core.binding import IndexBinding
from proxy.core.ports import Embedder
from proxy.migration.controller import MigrationController
from proxy.migration.shadow import ShadowRecorder

GAUGES = {
    "coverage": "Share of the corpus the new index holds (1 without a migration)",
    "backfill.done": "Documents the backfill has processed",
    "backfill.total": "Documents the backfill has to process",
    "backfill.rate": "Backfill documents per second (recent window)",
    "backfill.throttled": "1 while the latency throttle holds the backfill below full duty",
    "backfill.duty": "Share of the time the latency throttle lets the backfill work (1 = all of it)",
    "backfill.rate_limit": "Backfill rate limit in documents per second (0 = unlimited)",
    "lazy_queue.depth": "Documents waiting for lazy re-embedding",
    "repairs.pending": "Dual writes not yet confirmed in their second index (failed or in flight)",
    "direct_writes.pending": "An adopted table's direct writes not yet carried into the new index",
    "traffic.split_percent": "Share of routing keys on the new path",
    "shadow.overlap": "Mean overlap@k of shadow answers with the served ones",
    "shadow.samples": "Shadow comparisons in the recent window",
    "storage.bytes": "Bytes on disk per index",
    "embed.in_flight": "Requests to a remote embedding API waiting for their answer",
    "embed.concurrency": "Requests a remote embedder may have in flight now (halved on 429, raised on success)",
    "embed.max_concurrency": "The configured ceiling of embed.concurrency",
    "embed.requests_per_minute": "Requests sent to a remote embedding API in the last minute",
    "embed.tokens_per_minute": "Estimated tokens sent to a remote embedding API in the last minute",
    "embed.requests_per_minute_budget": "The configured requests-per-minute budget (0 = none)",
    "embed.tokens_per_minute_budget": "The configured tokens-per-minute budget (0 = none)",
    "embed.throttled": "429 answers from a remote embedding API since start",
    "embed.retries": "Remote embedding requests sent again (429, server error, timeout, split batch)",
}


@dataclass(frozen=True)
class CollectionGauges:
    """What one collection's gauges read."""

    name: str
    bindings: Mapping[str, IndexBinding]
    shadow: ShadowRecorder
    controller: MigrationController | None


def gauges(
    collections: Sequence[CollectionGauges], models: Mapping[str, Embedder] | None = None
) -> dict[str, list[GaugeValue]]:
    """Every gauge as one series per collection (and per index for storage), labelled `collection`; the
    remote embedders' load as one series per model, labelled `model`."""
    values: dict[str, list[GaugeValue]] = embedder_gauges(models or {})
    for collection in collections:
        for name, series in _collection_gauges(collection).items():
            values.setdefault(name, []).extend(series)
    return values


def embedder_gauges(models: Mapping[str, Embedder]) -> dict[str, list[GaugeValue]]:
    values: dict[str, list[GaugeValue]] = {}
    for name, embedder in models.items():
        if not isinstance(embedder, RemoteEmbedder):
            continue
        s, label = embedder.load(), {"model": name}
        load = {
            "embed.in_flight": s.in_flight,
            "embed.concurrency": s.concurrency,
            "embed.max_concurrency": s.max_concurrency,
            "embed.requests_per_minute": s.requests_last_minute,
            "embed.tokens_per_minute": s.tokens_last_minute,
            "embed.requests_per_minute_budget": s.requests_per_minute or 0.0,
            "embed.tokens_per_minute_budget": s.tokens_per_minute or 0.0,
            "embed.throttled": s.throttled,
            "embed.retries": s.retries,
        }
        for gauge, value in load.items():
            values.setdefault(gauge, []).append((float(value), label))
    return values


def _collection_gauges(c: CollectionGauges) -> dict[str, list[GaugeValue]]:
    label = {"collection": c.name}
    summary = c.shadow.summary()
    values: dict[str, list[GaugeValue]] = {
        "storage.bytes": [
            (float(b.index.storage_bytes()), {**label, "index": name}) for name, b in c.bindings.items()
        ],
        "shadow.overlap": [(summary.overlap, label)],
        "shadow.samples": [(float(summary.samples), label)],
        "coverage": [(1.0, label)],
    }
    if c.controller is None:
        return values
    status = c.controller.status()
    b = status.backfill
    migration = {
        "coverage": status.coverage,
        "backfill.done": float(b.done),
        "backfill.total": float(b.total),
        "backfill.rate": b.rate,
        "backfill.throttled": 1.0 if b.throttle_reason else 0.0,
        "backfill.duty": b.throttle_duty,
        "backfill.rate_limit": b.rate_limit,
        "lazy_queue.depth": float(b.lazy_queue),
        "repairs.pending": float(b.pending_repairs),
        "direct_writes.pending": float(b.direct_writes_pending),
        "traffic.split_percent": status.traffic_percent,
    }
    values.update({name: [(value, label)] for name, value in migration.items()})
    return values
