"""Section 5: peak bytes on disk of A + B during a backfill, per storage policy, over one copy of the corpus.

`keep_old` reuses the backfill section's throughput run (same corpus, same sampling) when there is one.
`retire_as_you_go` deletes old copies only while the whole traffic split is on the new path, so its run
moves the split there, and keeps sampling after the backfill until retiring stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proxy.bench.backfill import Throughput, measure_throughput
from proxy.bench.base import BaseCorpus
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import model_config
from proxy.bench.stats import ratio


@dataclass(frozen=True)
class StorageRow:
    policy: str
    one_copy_bytes: int = 0
    peak_bytes: int = 0
    final_bytes: int = 0
    """A + B after the sidecar stopped (graphs saved)."""
    samples: int = 0
    sidecar_peak_ratio: float = 0.0
    """What the sidecar's own storage tracker reported, as a cross-check."""
    retired: int = 0

    @property
    def peak_ratio(self) -> float:
        return ratio(self.peak_bytes, self.one_copy_bytes)


@dataclass(frozen=True)
class StorageResult:
    corpus: int
    dim: int
    rows: list[StorageRow]


def run_storage(
    settings: BenchSettings, base: BaseCorpus, root: Path, keep_old: Throughput | None
) -> StorageResult:
    """`keep_old`: the backfill section's run under the default policy, reused when given."""
    rows = [
        row_from(keep_old or _measure(settings, base, root, "keep_old")),
        row_from(_measure(settings, base, root, "retire_as_you_go")),
    ]
    return StorageResult(settings.corpus, settings.dim, rows)


def _measure(settings: BenchSettings, base: BaseCorpus, root: Path, policy: str) -> Throughput:
    # Old copies are retired only once traffic is on the new path: the whole split is moved there.
    return measure_throughput(
        settings,
        base,
        root / f"storage-{policy}",
        model_config("hashing", settings.dim, 2),
        base.docs,
        settings.backfill_batch,
        migration_extra={"storage_policy": policy},
        query={"traffic_percent": 100.0},
        settle=policy == "retire_as_you_go",
    )


def row_from(run: Throughput) -> StorageRow:
    return StorageRow(
        run.storage_policy,
        one_copy_bytes=run.one_copy_bytes,
        peak_bytes=max(s.total for s in run.samples),
        final_bytes=run.samples[-1].total,
        samples=len(run.samples),
        sidecar_peak_ratio=run.sidecar_peak_ratio,
        retired=run.retired,
    )
