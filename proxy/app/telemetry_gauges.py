"""What the metrics gauges show, read from the indexes and the migration at scrape time (never per query)."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.core.binding import IndexBinding
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
    "traffic.split_percent": "Share of routing keys on the new path",
    "shadow.overlap": "Mean overlap@k of shadow answers with the served ones",
    "shadow.samples": "Shadow comparisons in the recent window",
    "storage.bytes": "Bytes on disk per index",
}


def gauges(
    bindings: Mapping[str, IndexBinding], shadow: ShadowRecorder, controller: MigrationController | None
) -> dict[str, float | dict[str, float]]:
    storage = {name: float(b.index.storage_bytes()) for name, b in bindings.items()}
    summary = shadow.summary()
    values: dict[str, float | dict[str, float]] = {
        "storage.bytes": storage,
        "shadow.overlap": summary.overlap,
        "shadow.samples": float(summary.samples),
        "coverage": 1.0,
    }
    if controller is None:
        return values
    status = controller.status()
    b = status.backfill
    values.update(
        {
            "coverage": status.coverage,
            "backfill.done": float(b.done),
            "backfill.total": float(b.total),
            "backfill.rate": b.rate,
            "backfill.throttled": 1.0 if b.throttle_reason else 0.0,
            "backfill.duty": b.throttle_duty,
            "backfill.rate_limit": b.rate_limit,
            "lazy_queue.depth": float(b.lazy_queue),
            "repairs.pending": float(b.pending_repairs),
            "traffic.split_percent": status.traffic_percent,
        }
    )
    return values
