"""Section 10, adopted pgvector table: an application's own table migrated in place (issue #16).

Per run (hashing models at the full size; a real pair, all-MiniLM-L6-v2 -> multilingual-e5-small, at a few
thousand rows): the application's table `items` (bigint key, title, body, category, updated_at, the old model's
vector with its HNSW index) in the bench database; then, with the application writing it directly at a steady
pace all along (`adopt_app.DirectWriter`): its writes' latency before adoption, each DDL step of adoption
(time, and the slowest write that overlapped it), its writes' latency adopted but idle, a backfill through a
sidecar process (the two adopted indexes of `pgvector.adopt`) with the storage PostgreSQL reports sampled every
0.5 s, and the retirement of the old vector column. References measured in the same run on the same rows
(`adopt_refs`): the new model's raw embedding rate, the database's bulk rates, and (hashing run) the
alternative to a side table: a new column on the table filled by UPDATEs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from proxy.adapters.pgvector.adopted_table import AdoptedTable, TableConfig
from proxy.adapters.pgvector.side_index import SideVectorIndex, default_side_table
from proxy.app.config_models import ModelConfig
from proxy.app.wiring import build_embedder
from proxy.bench.adopt_app import (
    AppRow,
    DirectWriter,
    LoadTimes,
    StorageSampler,
    WriteCounts,
    app_rows,
    checkpoint,
    count_rows,
    create_application,
    relation_bytes,
)
from proxy.bench.adopt_refs import (
    BulkRates,
    NewColumnAlternative,
    bulk_rates,
    new_column_alternative,
    raw_embed,
)
from proxy.bench.adopt_steps import (
    NEW_INDEX,
    PREFIX,
    Step,
    adopt,
    claimed,
    drop_leftovers,
    retire,
    side_tables,
    sidecar_config,
)
from proxy.bench.backfill import run_to_completion
from proxy.bench.pg_server import PgServer, connection, find_server
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import (
    NEW_MODEL,
    OLD_MODEL,
    ensure_running,
    model_config,
    start_sidecar,
)
from proxy.bench.stats import LatencySummary, ratio
from proxy.core.errors import ConfigError
from proxy.core.ports import Embedder

WRITES_PER_S = {"hashing": 25.0, "real": 5.0}
"""The application's direct writes a second (see `DirectWriter` for the mix). Nearly every one is a row to
embed again: the real run writes about a tenth of what its new model embeds a second (40-60 on 2 cores), so the
change feed does not crowd the backfill out; the hashing run's model is hundreds of times faster."""
REAL_PAIR = ("minilm", "all-MiniLM-L6-v2", "multilingual-e5-small")
_POOL = 256
_CONVERGE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DdlStep:
    phase: str
    """adopt (one transaction: the statements, then COMMIT), side table, or retire."""
    statement: str
    ms: float
    writer_max_ms: float
    """The slowest direct write running at some moment of the step: a lock wait shows here."""
    writes: int


@dataclass(frozen=True)
class WriterLatency:
    rate: float
    before: LatencySummary
    """Before adoption: no trigger, no backfill."""
    adopted_idle: LatencySummary
    """Adopted (the triggers fire), no backfill yet."""
    during: LatencySummary
    """From StartMigration until the backfill reports complete."""
    counts: WriteCounts

    @property
    def p50_ratio(self) -> float:
        return ratio(self.during.p50_ms, self.before.p50_ms)

    @property
    def p99_ratio(self) -> float:
        return ratio(self.during.p99_ms, self.before.p99_ms)


@dataclass(frozen=True)
class AdoptStorage:
    baseline_bytes: int
    """The application's table (heap, TOAST, indexes) just before adoption."""
    peak_bytes: int
    """Highest sum over the table, switchyard_<table>_changes and the side table, sampled every 0.5 s."""
    end_bytes: int
    samples: int
    side_bytes: int
    changes_bytes: int
    retired_bytes: int
    app_end_bytes: int
    """The application's table alone at the end of the backfill: it grows with the application's own writes."""
    """The application's table after its old vector column was dropped (space comes back only on rewrite)."""

    @property
    def peak_ratio(self) -> float:
        return ratio(self.peak_bytes, self.baseline_bytes)

    @property
    def end_ratio(self) -> float:
        return ratio(self.end_bytes, self.baseline_bytes)


@dataclass(frozen=True)
class AdoptRun:
    name: str
    old_model: str
    new_model: str
    rows: int
    dim: int
    batch: int
    load: LoadTimes
    embed_docs_per_s: float
    """The new model in this process over the same texts, in the backfill's batches (first batch left out)."""
    bulk: BulkRates
    backfill_wall_s: float
    """StartMigration until complete, no direct write pending and, the writer stopped, no row behind."""
    complete_s: float
    """StartMigration until the backfill reported complete."""
    progress_docs_per_s: float
    """The backfill's own rate from its first progress to complete (as the other sections count it)."""
    writer: WriterLatency
    ddl: list[DdlStep]
    storage: AdoptStorage
    app_rows: int
    side_rows: int
    """The side table's live (not deleted) rows after convergence: equal to app_rows when nothing is behind."""
    rows_behind: int
    direct_writes_pending: int
    alternative: NewColumnAlternative | None

    @property
    def backfill_docs_per_s(self) -> float:
        return ratio(self.rows, self.backfill_wall_s)

    @property
    def bound(self) -> float:
        return min(self.embed_docs_per_s, self.bulk.bulk_rows_per_s)

    @property
    def binds(self) -> str:
        """The slower stage, the database's as the backfill writes (INSERTs into the graph, at its fullest)."""
        return "embedding" if self.embed_docs_per_s <= self.bulk.full_insert_rows_per_s else "database"

    @property
    def ratio(self) -> float:
        """Backfill docs/s over min(raw embed, COPY + index build)."""
        return ratio(self.backfill_docs_per_s, self.bound)

    @property
    def insert_ratio(self) -> float:
        """Backfill docs/s over min(raw embed, batched INSERTs into an HNSW-indexed table): the way the side
        table is written (its index exists from the start, so the new leg serves what has arrived)."""
        return ratio(self.backfill_docs_per_s, min(self.embed_docs_per_s, self.bulk.insert_rows_per_s))

    @property
    def full_insert_ratio(self) -> float:
        """The same, against INSERTs into a graph already holding the table's rows (the slowest point)."""
        return ratio(self.backfill_docs_per_s, min(self.embed_docs_per_s, self.bulk.full_insert_rows_per_s))


@dataclass(frozen=True)
class AdoptResult:
    server: PgServer
    window_s: float
    runs: list[AdoptRun]
    notes: list[str]


def run_adopt(settings: BenchSettings, root: Path) -> AdoptResult:
    server = find_server()
    drop_leftovers(server.dsn)
    hashing = model_config("hashing", settings.dim, 1), model_config("hashing", settings.dim, 2)
    runs = [
        _one_run(
            settings,
            server,
            root / "adopt-hashing",
            "hashing",
            hashing,
            settings.adopt_rows,
            settings.backfill_batch,
        )
    ]
    notes: list[str] = []
    if settings.real_model is None or settings.adopt_real_rows <= 0:
        notes.append(
            "real-model run skipped: " + ("--real-model none" if settings.real_model is None else "size 0")
        )
    else:
        real = model_config(REAL_PAIR[0], 0, 0), model_config(settings.real_model, 0, 0)
        reason = _unavailable(real)
        if reason:
            notes.append(f"real-model run skipped: {reason}")
        else:
            runs.append(
                _one_run(
                    settings,
                    server,
                    root / "adopt-real",
                    "real",
                    real,
                    settings.adopt_real_rows,
                    settings.model_batch,
                )
            )
    return AdoptResult(server, settings.adopt_window_s, runs, notes)


@dataclass(frozen=True)
class _Application:
    """A run's application table, loaded, and the references measured on its rows before adoption."""

    name: str
    spec: AdoptedTable
    side: str
    rows: int
    dim: int
    pool: list[tuple[AppRow, np.ndarray]]
    """Texts and old-model vectors the writer writes."""
    load: LoadTimes
    embed_rate: float
    bulk: BulkRates
    alternative: NewColumnAlternative | None

    @property
    def table(self) -> str:
        return self.spec.table


@dataclass(frozen=True)
class _Migration:
    """What adoption and the backfill measured; the writer's windows as perf_counter pairs."""

    before: tuple[float, float]
    adopted_idle: tuple[float, float]
    during: tuple[float, float]
    steps: list[Step]
    baseline_bytes: int
    peak_bytes: int
    end_bytes: int
    samples: int
    wall_s: float
    complete_s: float
    progress_rate: float
    rows_behind: int
    direct_writes_pending: int


def _one_run(
    settings: BenchSettings,
    server: PgServer,
    workdir: Path,
    name: str,
    models: tuple[dict[str, Any], dict[str, Any]],
    count: int,
    batch: int,
) -> AdoptRun:
    dsn, rate = server.dsn, WRITES_PER_S[name]
    with claimed(dsn) as run_id:
        app = _prepare(settings, dsn, f"{PREFIX}{name}_{run_id}", name, models, count, batch)
        writer = DirectWriter(dsn, app.table, count, app.pool, rate).start()
        try:
            migration = _migrate(settings, dsn, workdir, app, models, batch, writer)
        finally:
            writer.stop()
        app_rows, side_rows = count_rows(dsn, app.table), count_rows(dsn, app.side, " WHERE NOT deleted")
        with connection(dsn) as conn:
            side_bytes, changes_bytes, app_bytes = (
                relation_bytes(conn, [t]) for t in (app.side, f"switchyard_{app.table}_changes", app.table)
            )
        # The application stops writing its old vector column before it is retired.
        retire_writer = DirectWriter(
            dsn, app.table, count, app.pool, rate, with_vectors=False, first_new_id=writer.next_id
        )
        retire_writer.deleted |= writer.deleted
        retire_writer.start()
        try:
            time.sleep(1.0)
            retire_steps = retire(dsn, app.table)
            time.sleep(1.0)
        finally:
            retire_writer.stop()
        with connection(dsn) as conn:
            retired_bytes = relation_bytes(conn, [app.table])
    m = migration
    ddl = [_step(writer, *s) for s in m.steps] + [_step(retire_writer, *s) for s in retire_steps]
    latency = WriterLatency(
        rate,
        writer.summary(*m.before),
        writer.summary(*m.adopted_idle),
        writer.summary(*m.during),
        writer.counts(),
    )
    storage = AdoptStorage(
        m.baseline_bytes,
        m.peak_bytes,
        m.end_bytes,
        m.samples,
        side_bytes,
        changes_bytes,
        retired_bytes,
        app_bytes,
    )
    return AdoptRun(
        name,
        _model_name(models[0]),
        _model_name(models[1]),
        count,
        app.dim,
        batch,
        app.load,
        app.embed_rate,
        app.bulk,
        m.wall_s,
        m.complete_s,
        m.progress_rate,
        latency,
        ddl,
        storage,
        app_rows,
        side_rows,
        m.rows_behind,
        m.direct_writes_pending,
        app.alternative,
    )


def _prepare(
    settings: BenchSettings,
    dsn: str,
    table: str,
    name: str,
    models: tuple[dict[str, Any], dict[str, Any]],
    count: int,
    batch: int,
) -> _Application:
    """The application's table loaded with the old model's vectors; the references on the new model's."""
    old, new = _embedder(OLD_MODEL, models[0]), _embedder(NEW_MODEL, models[1])
    rows, pool_rows = app_rows(name, count), app_rows(name, _POOL, offset=count)
    texts = [r.text for r in rows]
    load = create_application(dsn, table, old.dim, rows, np.asarray(old.embed(texts), dtype=np.float32))
    pool_vectors = np.asarray(old.embed([r.text for r in pool_rows]), dtype=np.float32)
    embed_rate, new_vectors = raw_embed(new, texts, batch)
    bulk = bulk_rates(dsn, f"{table}_copy", f"{table}_ins", new_vectors, settings.adopt_insert_rows)
    # The alternative's figures are the storage and time of UPDATEs; the hashing run's size shows them.
    alternative = (
        new_column_alternative(dsn, table, f"{table}_alt", new_vectors) if name == "hashing" else None
    )
    spec = AdoptedTable("public", table, "item_id", "bigint", ("title", "body"), ("category",))
    return _Application(
        name,
        spec,
        default_side_table(table, NEW_INDEX),
        count,
        new.dim,
        list(zip(pool_rows, pool_vectors, strict=True)),
        load,
        embed_rate,
        bulk,
        alternative,
    )


def _migrate(
    settings: BenchSettings,
    dsn: str,
    workdir: Path,
    app: _Application,
    models: tuple[dict[str, Any], dict[str, Any]],
    batch: int,
    writer: DirectWriter,
) -> _Migration:
    """With the writer running: a window before adoption, the DDL, a window adopted but idle, the backfill
    until it converged (the writer stopped at the end, so nothing more can come behind)."""
    window = settings.adopt_window_s
    checkpoint(dsn)
    before = _window(window)
    with connection(dsn) as conn:
        baseline = relation_bytes(conn, [app.table])
    steps = adopt(dsn, app.spec) + side_tables(dsn, app.spec, app.side, app.dim)
    adopted_idle = _window(window)
    config = sidecar_config(workdir, dsn, app.table, models, app.dim, batch)
    sidecar, _ = start_sidecar(config, workdir)
    try:
        watched = [app.table, f"switchyard_{app.table}_changes", app.side]
        with StorageSampler(dsn, watched) as sampler, sidecar.client() as client:
            progress_rate, complete_s, started = run_to_completion(client)
            completed = time.perf_counter()
            _wait(lambda: client.status().backfill.direct_writes_pending == 0, "direct writes pending")
            writer.stop()
            behind = _side_index(dsn, app.spec, app.dim)
            try:
                _wait(lambda: behind.rows_behind() == 0, "rows behind")
                converged = time.perf_counter()
                rows_behind = behind.rows_behind()
                pending = client.status().backfill.direct_writes_pending
            finally:
                behind.close()
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    return _Migration(
        before,
        adopted_idle,
        (started, completed),
        steps,
        baseline,
        sampler.peak,
        sampler.last,
        sampler.samples,
        converged - started,
        complete_s,
        progress_rate,
        rows_behind,
        pending,
    )


def _window(seconds: float) -> tuple[float, float]:
    started = time.perf_counter()
    time.sleep(seconds)
    return started, time.perf_counter()


def _step(writer: DirectWriter, phase: str, statement: str, start: float, end: float) -> DdlStep:
    slowest, writes = writer.max_overlapping(start, end)
    return DdlStep(phase, statement, 1000 * (end - start), slowest, writes)


def _side_index(dsn: str, spec: AdoptedTable, dim: int) -> SideVectorIndex:
    """The new leg as the sidecar opens it, for its `rows_behind` (the cut-over's own check)."""
    config = TableConfig(spec.schema, spec.table, spec.id_column, spec.text_columns, spec.metadata_columns)
    return SideVectorIndex(NEW_INDEX, dim, dsn, table=config, pool_size=1)


def _wait(done: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + _CONVERGE_TIMEOUT_S
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"adopted backfill: {what} still not 0 after {_CONVERGE_TIMEOUT_S:.0f}s")
        time.sleep(0.1)


def _embedder(name: str, config: dict[str, Any]) -> Embedder:
    return build_embedder(name, pydantic.TypeAdapter(ModelConfig).validate_python(config))


def _unavailable(models: tuple[dict[str, Any], dict[str, Any]]) -> str:
    try:
        for model in models:
            _embedder(NEW_MODEL, model)
    except ConfigError as exc:
        return str(exc)
    return ""


def _model_name(config: dict[str, Any]) -> str:
    if config["kind"] == "hashing":
        return f"hashing (seed {config['seed']})"
    return {"minilm": REAL_PAIR[1], "e5-small": REAL_PAIR[2]}.get(str(config["kind"]), str(config["kind"]))
