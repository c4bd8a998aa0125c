"""Section 3: backfill throughput vs. the new model's raw batched embedding, and query p99 while it runs.

Throughput: a sidecar re-embeds index A into an empty B with nothing else running; the same texts are
embedded by a fresh embedder of the same model in this process (embed and nothing else). The docs/s ratio
says how much the backfill machinery (scan, version check, SQLite, graph insert, checkpoints) costs on top.

Throttle: vector queries on the old path, measured idle (before the start, and while paused) and while the
backfill runs with `latency_budget_ms` set, alternating pause/resume so both see the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydantic
import yaml

from proxy.app.config import BackfillConfig
from proxy.app.config_models import ModelConfig
from proxy.app.wiring import build_embedder
from proxy.bench.base import BaseCorpus
from proxy.bench.datasets import build_index, copy_index, embedded_vectors
from proxy.bench.loadgen import SIDECAR_METHOD, Phase, PhaseResult
from proxy.bench.processes import run_load, summarize_label
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import (
    NEW_MODEL,
    OLD_INDEX,
    OLD_MODEL,
    StorageSample,
    backfill_settings,
    ensure_running,
    index_dir,
    model_config,
    pause,
    resume,
    sidecar_config,
    start_migration,
    start_sidecar,
    status,
    storage_sample,
)
from proxy.bench.stats import LatencySummary, ratio
from proxy.cli.client import SwitchyardClient
from proxy.core.errors import ConfigError
from proxy.core.ports import Embedder
from proxy.demo.corpus import CorpusDoc
from proxy.demo.sidecar_process import SidecarProcess
from proxy.migration.throttle import LatencyWindow

TARGET_THROUGHPUT_RATIO = 0.9
TARGET_P99_RATIO = 1.25
# The latency budget the throttled run sets: this much over the idle p99 the sidecar itself reports.
BUDGET_OVER_IDLE = 1.2
_COMPLETE_TIMEOUT_S = 1800.0
_SETTLE_TIMEOUT_S = 120.0
_SETTLED_AFTER_S = 1.0


@dataclass(frozen=True)
class Throughput:
    model: str
    docs: int
    batch_size: int
    embed_docs_per_s: float
    backfill_docs_per_s: float
    backfill_wall_s: float
    """From StartMigration to `complete`, planning included."""
    one_copy_bytes: int
    """Index A on disk before the backfill: the corpus stored once."""
    samples: list[StorageSample]
    """A and B bytes during the backfill, and a last one after the sidecar saved its graphs on stop."""
    storage_policy: str
    sidecar_peak_ratio: float
    """The sidecar's own storage tracker: highest (old + new) / old-at-start it saw."""
    retired: int
    """Old copies deleted under retire_as_you_go."""

    @property
    def ratio(self) -> float:
        return ratio(self.backfill_docs_per_s, self.embed_docs_per_s)

    @property
    def passed(self) -> bool:
        return self.ratio >= TARGET_THROUGHPUT_RATIO

    def stage_ratio(self, insert_docs_per_s: float) -> float:
        """Backfill rate over embedding and inserting each batch one after the other, with nothing else."""
        return ratio(self.backfill_docs_per_s, 1 / (1 / self.embed_docs_per_s + 1 / insert_docs_per_s))


@dataclass(frozen=True)
class Throttled:
    model: str
    batch_size: int
    latency_budget_ms: float
    rate_limit: float
    """0: unlimited; set only when the corpus is too small for the backfill to outlast the measurement."""
    clients: int
    idle: LatencySummary
    busy: LatencySummary
    backfill_docs_per_s_busy: float
    overlapped: bool
    """False when the backfill finished before a busy phase ended (that phase was partly idle)."""
    round_ratios: list[float]
    """Busy p99 / idle p99 of each round on its own: how far one round's figure moves."""
    duties: list[float]
    """The throttle's duty at the end of each busy phase."""
    last_reason: str
    """The throttle's state at the end of the last busy phase."""

    @property
    def p99_ratio(self) -> float:
        return ratio(self.busy.p99_ms, self.idle.p99_ms)

    @property
    def passed(self) -> bool:
        return self.p99_ratio <= TARGET_P99_RATIO


@dataclass(frozen=True)
class BackfillVariant:
    model: str
    throughput: Throughput
    throttled: Throttled

    @property
    def throttled_share(self) -> float:
        """Docs/s beside the query load under the budget over docs/s with no load: what the planner fits.

        NaN when the run's rate limit (set to make a small corpus outlast the busy phases) came close to
        holding the backfill back: then it, not the throttle, set the pace.
        """
        busy, limit = self.throttled.backfill_docs_per_s_busy, self.throttled.rate_limit
        if limit and busy >= 0.9 * limit:
            return float("nan")
        return ratio(busy, self.throughput.backfill_docs_per_s)


@dataclass(frozen=True)
class BackfillResult:
    variants: list[BackfillVariant]
    notes: list[str] = field(default_factory=list)


def run_backfill_section(settings: BenchSettings, base: BaseCorpus, root: Path) -> BackfillResult:
    hashing = model_config("hashing", settings.dim, 2)
    variants = [_variant(settings, base, root, "hashing", hashing, base.docs, settings.backfill_batch)]
    notes = []
    if settings.real_model is None:
        notes.append("real-model variant skipped: --real-model none")
    else:
        real = model_config(settings.real_model, settings.dim, 0)
        reason = _unavailable(real)
        if reason:
            notes.append(f"real-model variant ({settings.real_model}) skipped: {reason}")
        else:
            docs = base.docs[: settings.model_docs]
            variants.append(
                _variant(settings, base, root, settings.real_model, real, docs, settings.model_batch)
            )
    return BackfillResult(variants, notes)


def _variant(
    settings: BenchSettings,
    base: BaseCorpus,
    root: Path,
    name: str,
    new_model: dict[str, Any],
    docs: list[CorpusDoc],
    batch: int,
) -> BackfillVariant:
    throughput = measure_throughput(settings, base, root / f"backfill-{name}", new_model, docs, batch)
    # The throttled run keeps the config's default batch: a batch is one burst of CPU the queries wait behind.
    throttle_batch = min(batch, BackfillConfig().batch_size)
    throttled = measure_throttled(
        settings,
        base,
        root / f"throttle-{name}",
        new_model,
        docs,
        throttle_batch,
        throughput.backfill_docs_per_s,
    )
    return BackfillVariant(name, throughput, throttled)


def measure_throughput(
    settings: BenchSettings,
    base: BaseCorpus,
    workdir: Path,
    new_model: dict[str, Any],
    docs: list[CorpusDoc],
    batch: int,
    *,
    migration_extra: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    settle: bool = False,
) -> Throughput:
    """One backfill into an empty B from start to `complete`; `settle` samples on while retiring goes on.

    The raw embedding rate is measured before and after the backfill and the two combined, so drift in the
    machine's speed during the run hits both sides alike.
    """
    texts = [d.text for d in docs]
    embed_before = raw_embed_rate(new_model, texts, batch)
    data_dir = _data_dir_with_old(base, workdir, docs)
    migration = {**backfill_settings(batch), **(migration_extra or {})}
    config = sidecar_config(data_dir, settings.dim, migration=migration, new_model=new_model, query=query)
    one_copy = storage_sample(data_dir, time.perf_counter()).old_bytes
    sidecar, _ = start_sidecar(config, workdir)
    try:
        with sidecar.client() as client:
            samples: list[StorageSample] = []
            rate, wall, started = run_to_completion(
                client, lambda started: samples.append(storage_sample(data_dir, started))
            )
            if settle:
                samples += _settle(client, data_dir, started)
            storage = status(client).storage
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    samples.append(storage_sample(data_dir, started))
    # Both timings embed the same texts: the rate over both is the harmonic mean of the two.
    embed_rate = 2 / (1 / embed_before + 1 / raw_embed_rate(new_model, texts, batch))
    return Throughput(
        new_model["kind"],
        len(docs),
        batch,
        embed_rate,
        rate,
        wall,
        one_copy,
        samples,
        storage.policy or "keep_old",
        storage.peak_ratio,
        storage.retired,
    )


def _settle(client: SwitchyardClient, data_dir: Path, started: float) -> list[StorageSample]:
    """Samples on while old copies are still being retired (retire_as_you_go trails the backfill)."""
    samples: list[StorageSample] = []
    deadline = time.perf_counter() + _SETTLE_TIMEOUT_S
    last, still_since = -1, time.perf_counter()
    while time.perf_counter() < deadline and time.perf_counter() - still_since < _SETTLED_AFTER_S:
        samples.append(storage_sample(data_dir, started))
        retired = status(client).storage.retired
        if retired != last:
            last, still_since = retired, time.perf_counter()
        time.sleep(0.1)
    return samples


def raw_embed_rate(new_model: dict[str, Any], texts: list[str], batch: int) -> float:
    """Docs/s of a fresh embedder of the model over the texts, in batches, nothing else.

    The first batch is a warm-up left out of the figure, as the backfill's rate leaves out its first batch
    (it is counted from the first progress on).
    """
    embedder = _embedder(new_model)
    batches = [texts[start : start + batch] for start in range(0, len(texts), batch)]
    embedder.embed(batches[0])
    timed = batches[1:] or batches
    started = time.perf_counter()
    for block in timed:
        embedder.embed(block)
    return sum(len(b) for b in timed) / (time.perf_counter() - started)


def run_to_completion(
    client: SwitchyardClient, on_poll: Callable[[float], object] = lambda started: None
) -> tuple[float, float, float]:
    """Starts the backfill and polls it to the end: (docs/s counted from the first progress on, wall time,
    perf_counter at the start); `on_poll(started)` runs before each status read (a storage sample)."""
    started = time.perf_counter()
    start_migration(client)
    first: tuple[float, int] | None = None
    while time.perf_counter() - started < _COMPLETE_TIMEOUT_S:
        on_poll(started)
        progress = status(client).backfill
        now = time.perf_counter()
        if first is None and progress.done > 0:
            first = (now, progress.done)
        if progress.complete:
            assert first is not None
            elapsed = now - first[0]
            # A backfill done within one poll has no interval to divide by: fall back to the wall time.
            rate = (progress.done - first[1]) / elapsed if elapsed > 0.5 else progress.done / (now - started)
            return rate, now - started, started
        time.sleep(0.1)
    raise TimeoutError(f"backfill not complete after {_COMPLETE_TIMEOUT_S:.0f}s")


def measure_throttled(
    settings: BenchSettings,
    base: BaseCorpus,
    workdir: Path,
    new_model: dict[str, Any],
    docs: list[CorpusDoc],
    batch: int,
    unthrottled_rate: float,
) -> Throttled:
    phase_s = 2 * settings.round_s
    busy_total = settings.throttle_rounds * phase_s
    # The backfill must outlast the busy phases; a small corpus gets a rate limit that stretches it.
    expected_s = len(docs) / max(unthrottled_rate, 1e-9)
    rate_limit = 0.0 if expected_s > 1.5 * busy_total else round(len(docs) / (1.5 * busy_total), 1)
    extra = {"latency_budget_ms": settings.latency_budget_ms, "rate_limit": rate_limit}
    data_dir = _data_dir_with_old(base, workdir, docs)
    config = sidecar_config(
        data_dir, settings.dim, migration=backfill_settings(batch, **extra), new_model=new_model
    )
    sidecar, _ = start_sidecar(config, workdir)
    try:
        with sidecar.client() as client:
            phase = _query_phase(settings, sidecar.target, phase_s)
            run = _alternate(client, phase, workdir, base, settings.throttle_rounds, sidecar)
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    return Throttled(
        new_model["kind"],
        batch,
        run.budget_ms,
        rate_limit,
        settings.throttle_clients,
        summarize_label(run.idle, "idle"),
        summarize_label(run.busy, "busy"),
        run.busy_docs / run.busy_s if run.busy_s else 0.0,
        run.overlapped,
        _round_ratios(run),
        run.duties,
        run.last_reason,
    )


def _round_ratios(run: _Alternation) -> list[float]:
    pairs = zip(run.idle, run.busy, strict=True)
    return [ratio(_p99([busy]), _p99([idle])) for idle, busy in pairs]


def _p99(results: list[PhaseResult]) -> float:
    return summarize_label(results, results[0].label).p99_ms


@dataclass
class _Alternation:
    budget_ms: float = 0.0
    idle: list[PhaseResult] = field(default_factory=list)
    busy: list[PhaseResult] = field(default_factory=list)
    busy_docs: int = 0
    busy_s: float = 0.0
    overlapped: bool = True
    duties: list[float] = field(default_factory=list)
    last_reason: str = ""


def _alternate(
    client: SwitchyardClient,
    phase: Phase,
    workdir: Path,
    base: BaseCorpus,
    rounds: int,
    sidecar: SidecarProcess,
) -> _Alternation:
    """idle (planned) / busy / idle (paused) / busy ..., after an unmeasured warm-up."""
    run = _Alternation()
    # As long as the sidecar's latency window: the p99 the budget is set from must not include the first
    # queries' cold caches.
    _load(replace(phase, duration_s=LatencyWindow().window_s), "warm-up", workdir, base)
    for number in range(rounds):
        run.idle += _load(phase, "idle", workdir, base)
        if number == 0:
            # As an operator would: allow the p99 the sidecar reports for this load before any backfill
            # runs, plus the slack the target allows.
            run.budget_ms = round(BUDGET_OVER_IDLE * status(client).backfill.query_p99_ms, 2)
            set_latency_budget(sidecar, run.budget_ms)
            start_migration(client)
        else:
            resume(client)
        before, started = status(client).backfill.done, time.perf_counter()
        run.busy += _load(phase, "busy", workdir, base)
        progress = status(client).backfill
        run.busy_docs += progress.done - before
        run.busy_s += time.perf_counter() - started
        run.overlapped = run.overlapped and not progress.complete
        run.duties.append(progress.throttle_duty)
        run.last_reason = progress.throttle_reason or "full duty"
        pause(client)
    return run


def set_latency_budget(sidecar: SidecarProcess, budget_ms: float, timeout_s: float = 30.0) -> None:
    """Edits the running sidecar's config file and waits until it says it applied the new budget."""
    config = sidecar.config
    config["migration"]["backfill"]["latency_budget_ms"] = budget_ms
    sidecar.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    expected = f"backfill latency budget set to {budget_ms:g} ms"
    deadline = time.monotonic() + timeout_s
    while expected not in sidecar.log_path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sidecar did not apply the latency budget:\n{sidecar.log_tail()}")
        time.sleep(0.1)


def _load(phase: Phase, label: str, workdir: Path, base: BaseCorpus) -> list[PhaseResult]:
    labelled = Phase(**{**phase.__dict__, "label": label})
    return run_load([labelled], workdir, vectors_file=base.query_vectors_file)


def _query_phase(settings: BenchSettings, target: str, duration_s: float) -> Phase:
    return Phase(
        label="",
        target=target,
        method=SIDECAR_METHOD,
        payload="vector",
        model=OLD_MODEL,
        concurrency=settings.throttle_clients,
        duration_s=duration_s,
        max_requests=settings.max_requests,
        warmup=settings.warmup,
    )


def _data_dir_with_old(base: BaseCorpus, workdir: Path, docs: list[CorpusDoc]) -> Path:
    """A data dir holding index A of exactly `docs` (the base A when they are the whole corpus)."""
    data_dir = workdir / "data"
    if len(docs) == len(base.docs):
        copy_index(base.old_index.directory, index_dir(data_dir, OLD_INDEX))
    else:
        build_index(
            index_dir(data_dir, OLD_INDEX), docs, embedded_vectors(base.old_embedder, [d.text for d in docs])
        )
    return data_dir


def _embedder(new_model: dict[str, Any]) -> Embedder:
    return build_embedder(NEW_MODEL, pydantic.TypeAdapter(ModelConfig).validate_python(new_model))


def _unavailable(new_model: dict[str, Any]) -> str:
    """Why the model cannot load here ('' when it can): the `models` extra may not be installed."""
    try:
        _embedder(new_model)
    except ConfigError as exc:
        return str(exc)
    return ""
