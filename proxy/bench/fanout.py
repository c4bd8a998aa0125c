"""Section 2: a `dual` query (both legs in parallel, then merge) vs. the slower of its two single legs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proxy.app.config import QueryConfig
from proxy.bench.base import BaseCorpus
from proxy.bench.loadgen import SIDECAR_METHOD, Phase
from proxy.bench.processes import alternating_phases, run_load, summarize_label
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import (
    backfill_settings,
    ensure_running,
    sidecar_config,
    start_migration,
    start_sidecar,
    wait_backfill_complete,
)
from proxy.bench.stats import LatencySummary, ratio

TARGET_P50_RATIO = 1.25
MODES = ("old", "new", "dual")
# Both indexes are complete before the run: the backfill only confirms versions; large batches end it fast.
_VERIFY_BATCH = 1000


@dataclass(frozen=True)
class FanoutRow:
    concurrency: int
    old: LatencySummary
    new: LatencySummary
    dual: LatencySummary

    @property
    def slower_leg_p50_ms(self) -> float:
        return max(self.old.p50_ms, self.new.p50_ms)

    @property
    def p50_ratio(self) -> float:
        return ratio(self.dual.p50_ms, self.slower_leg_p50_ms)

    @property
    def cpu_ratio(self) -> float:
        """Sidecar CPU per dual query over the slower leg's: what the p50 ratio follows once no core idles."""
        slower = max(self.old.server_cpu_ms_per_request, self.new.server_cpu_ms_per_request)
        return ratio(self.dual.server_cpu_ms_per_request, slower)

    @property
    def passed(self) -> bool:
        return self.p50_ratio <= TARGET_P50_RATIO


@dataclass(frozen=True)
class FanoutResult:
    corpus: int
    dim: int
    merge: str
    rows: list[FanoutRow]


def run_fanout(settings: BenchSettings, base: BaseCorpus, root: Path) -> FanoutResult:
    workdir = root / "fanout"
    data_dir = base.data_dir("fanout", with_new=True)
    config = sidecar_config(data_dir, settings.dim, migration=backfill_settings(_VERIFY_BATCH))
    sidecar, _ = start_sidecar(config, workdir)
    try:
        with sidecar.client() as client:
            start_migration(client)
            wait_backfill_complete(client, timeout_s=600)
        phases = text_mode_phases(
            settings, sidecar.target, server_pid=sidecar.process.pid if sidecar.process else 0
        )
        results = run_load(phases, workdir, texts=base.query_texts)
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    rows = [
        FanoutRow(c, *(summarize_label(results, f"{m}-c{c}") for m in MODES)) for c in settings.concurrency
    ]
    return FanoutResult(settings.corpus, settings.dim, QueryConfig().merge, rows)


def text_mode_phases(
    settings: BenchSettings, target: str, concurrency: tuple[int, ...] | None = None, server_pid: int = 0
) -> list[Phase]:
    """Text queries (each leg embeds its own model's vector) pinned to old, new and dual, interleaved."""
    phases: list[Phase] = []
    for c in concurrency or settings.concurrency:
        common = {
            "target": target,
            "method": SIDECAR_METHOD,
            "payload": "text",
            "concurrency": c,
            "server_pid": server_pid,
        }
        setups = [(f"{mode}-c{c}", {**common, "mode": mode}) for mode in MODES]
        phases += alternating_phases(setups, settings)
    return phases
