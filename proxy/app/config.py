"""Typed configuration: load a YAML file, validate it, name the bad field when it is wrong."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from proxy.app.config_adopt import AdoptConfig
from proxy.app.config_milvus import MilvusParams
from proxy.app.config_models import _MODEL_KINDS, ModelConfig
from proxy.app.config_server import ServerConfig, StateConfig, StrictModel, TelemetryConfig
from proxy.core.errors import ConfigError
from proxy.core.rerank import MAX_RERANK_CANDIDATES, RerankSettings
from proxy.migration.retirement import StoragePolicy


class HnswParams(StrictModel):
    m: Annotated[int, Field(ge=2, le=256)] = 16
    ef_construction: Annotated[int, Field(ge=1)] = 200
    ef_search: Annotated[int, Field(ge=1)] = 64
    initial_capacity: Annotated[int, Field(ge=1)] = 1024
    row_cache: Annotated[int, Field(ge=0)] = 100_000
    """Rows (id, version, metadata) of recently returned documents kept in memory; 0 turns it off."""
    insert_threads: Annotated[int, Field(ge=-1, le=256)] = 1
    """Threads hnswlib may use to insert one write's vectors (-1: every core); more speeds bulk writes and
    the backfill but takes cores from queries."""

    @model_validator(mode="after")
    def _threads_not_zero(self) -> HnswParams:
        if self.insert_threads == 0:
            raise ValueError("insert_threads must be -1 (every core) or at least 1")
        return self


class PgVectorParams(StrictModel):
    """A PostgreSQL table with pgvector; the DSN's secrets can stay out of the file (`dsn_env`, `${VAR}`)."""

    dsn: str | None = None
    """libpq DSN or URI; `${VAR}` parts are read from the environment when the index opens."""
    dsn_env: str | None = None
    """Name of an environment variable holding the whole DSN (instead of `dsn`)."""
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")] | None = None
    """Defaults to switchyard_<index name>."""
    m: Annotated[int, Field(ge=2, le=100)] = 16
    ef_construction: Annotated[int, Field(ge=4, le=1_000)] = 64
    ef_search: Annotated[int, Field(ge=1, le=1_000)] = 40
    pool_size: Annotated[int, Field(ge=1, le=1_000)] = 8
    adopt: AdoptConfig | None = None
    """Serve an application's own table in place instead of a table of Switchyard's."""
    build_index: Literal["live", "deferred"] = "live"
    """`deferred`, for a migration's new index: a table without its HNSW index (a new one) is backfilled
    without it, and the migration's worker builds it once (CREATE INDEX CONCURRENTLY) when the backfill
    reaches `build_index_at`. Meanwhile its searches scan the whole table (exact, slow on big tables), and
    `validated`, `shifting`, `cut_over` and validation reports wait for the build."""
    build_index_at: Annotated[float, Field(gt=0, le=1)] = 1.0
    """With `deferred`: the backfill's progress (done / total) at which the build starts; 1.0 = when it
    completes. Earlier, the rest of the backfill pays the graph's per-row insert cost again."""

    @model_validator(mode="after")
    def _check(self) -> PgVectorParams:
        if (self.dsn is None) == (self.dsn_env is None):
            raise ValueError("set exactly one of `dsn` and `dsn_env`")
        if self.build_index == "deferred" and self.adopt is not None:
            raise ValueError("build_index: deferred is for Switchyard's own tables, not an adopted one")
        if self.ef_construction < 2 * self.m:
            raise ValueError("ef_construction must be at least 2 * m (pgvector's rule)")
        return self

    def resolved_dsn(self) -> str:
        """The DSN with environment variables filled in; ConfigError names a variable that is not set."""
        if self.dsn_env is not None:
            return _env(self.dsn_env, "pgvector.dsn_env")
        assert self.dsn is not None
        return re.sub(r"\$\{(\w+)\}", lambda m: _env(m.group(1), "pgvector.dsn"), self.dsn)


def _env(name: str, field: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(f"{field}: environment variable {name} is not set")
    return value


class IndexConfig(StrictModel):
    model: str
    backend: Literal["hnsw", "pgvector", "milvus"] = "hnsw"
    space: Literal["cosine", "ip"] = "cosine"
    hnsw: HnswParams = HnswParams()
    pgvector: PgVectorParams | None = None
    """Required when backend is pgvector."""
    milvus: MilvusParams | None = None
    """With backend milvus; absent: milvus-lite in data_dir/milvus.db."""

    @model_validator(mode="after")
    def _check_backend(self) -> IndexConfig:
        if self.backend == "pgvector" and self.pgvector is None:
            raise ValueError("backend pgvector needs a `pgvector:` section with a `dsn` (or `dsn_env`)")
        if self.backend != "pgvector" and self.pgvector is not None:
            raise ValueError(
                f"a `pgvector:` section is set but backend is {self.backend}; add `backend: pgvector`"
            )
        if self.backend != "milvus" and self.milvus is not None:
            raise ValueError(
                f"a `milvus:` section is set but backend is {self.backend}; add `backend: milvus`"
            )
        return self


class BackfillConfig(StrictModel):
    batch_size: Annotated[int, Field(gt=0, le=10_000)] = 64
    rate_limit: Annotated[float, Field(ge=0)] = 0.0
    """Documents per second; 0 means unlimited."""
    latency_budget_ms: Annotated[float, Field(gt=0)] | None = None
    """Back off while query p99 over the recent window exceeds this."""
    batch_time_ms: Annotated[float, Field(gt=0, le=60_000)] = 100.0
    """With a latency budget, a batch takes only as many documents as fit in this time (at least one), so
    queries meet short bursts of backfill work rather than a whole batch of a slow model."""
    lease_ttl_s: Annotated[float, Field(gt=0)] = 15.0
    slice_size: Annotated[int, Field(gt=0)] = 2_000
    embed_nice: Annotated[int, Field(ge=0, le=19)] = 19
    """Niceness added to the thread on which a local new model (e5-small, minilm) embeds backfill batches
    (Linux), so queries get the cores first; 0: normal priority."""


class LazyConfig(StrictModel):
    enabled: bool = True
    sync_budget: Annotated[int, Field(ge=0)] = 0
    """Re-embed up to this many touched, uncovered documents inline before answering a query."""


class GatesConfig(StrictModel):
    """Thresholds a validation report and each promotion step must meet; None disables a gate."""

    min_coverage: Annotated[float, Field(ge=0, le=1)] = 1.0
    """Validation only: share of the corpus the new index must hold."""
    min_health_recall: Annotated[float, Field(ge=0, le=1)] | None = 0.9
    """recall@k of the new index's approximate search against exact search over its own vectors."""
    max_quality_drop: Annotated[float, Field(ge=0, le=1)] | None = 0.02
    """Golden set: the new index's nDCG@10 may trail the old one's by at most this."""
    max_error_rate: Annotated[float, Field(ge=0, le=1)] | None = 0.01
    """Share of new-path queries whose new leg failed or timed out."""
    max_p99_ms: Annotated[float, Field(gt=0)] | None = None
    """p99 latency budget of queries on the new path."""
    min_shadow_overlap: Annotated[float, Field(ge=0, le=1)] | None = None
    """Mean overlap@k of shadow answers with the old answers."""


class ValidationConfig(StrictModel):
    k: Annotated[int, Field(gt=0, le=1000)] = 10
    health_sample: Annotated[int, Field(gt=0)] = 200
    """Documents of the new index used as self-queries to check its approximate search."""
    golden_set: Path | None = None
    """JSON Lines of {"query": text, "relevant": [ids] or {id: gain}}; relative paths from the config file."""
    gates: GatesConfig = GatesConfig()


class PromotionConfig(StrictModel):
    """Progressive promotion in steps, each held until its gates pass (like canary analysis)."""

    auto: bool = False
    """Advance and roll back by itself while the migration is in phase `shifting`."""
    steps: tuple[Annotated[float, Field(gt=0, le=100)], ...] = (5.0, 25.0, 50.0, 100.0)
    min_dwell_s: Annotated[float, Field(ge=0)] = 60.0
    min_samples: Annotated[int, Field(ge=0)] = 100
    """New-path queries a step must see before it may advance."""
    interval_s: Annotated[float, Field(gt=0)] = 2.0

    @model_validator(mode="after")
    def _increasing(self) -> PromotionConfig:
        if list(self.steps) != sorted(set(self.steps)) or not self.steps:
            raise ValueError("promotion.steps must be increasing percentages, e.g. [5, 25, 50, 100]")
        return self


class MigrationConfig(StrictModel):
    old_index: str
    new_index: str
    backfill: BackfillConfig = BackfillConfig()
    lazy: LazyConfig = LazyConfig()
    validation: ValidationConfig = ValidationConfig()
    promotion: PromotionConfig = PromotionConfig()
    storage_policy: StoragePolicy = StoragePolicy.KEEP_OLD
    """retire_as_you_go deletes a document's old copy once the new index holds it and traffic is on the
    new path, keeping peak storage near one copy; the old index can then no longer serve a rollback."""


class RerankConfig(StrictModel):
    """Candidate re-ranking during a migration: the old leg's candidates that the new index lacks are embedded
    with the new model at query time and ranked with the new leg's hits in the new space."""

    candidates: Annotated[int, Field(ge=0, le=MAX_RERANK_CANDIDATES)] = 0
    """k': old-leg candidates per dual query; 0 (the default) leaves it off and the merge answers. A request
    may set its own (QueryRequest.rerank_candidates)."""
    budget_ms: Annotated[float, Field(gt=0)] = 50.0
    """Longest a query waits for embeddings; past it the merge answers and the embedding finishes behind."""
    max_embed: Annotated[int, Field(ge=0)] = 64
    """Most candidates one query sends to the embedder (cached ones are free)."""
    cache_entries: Annotated[int, Field(ge=1)] = 20_000
    """New-model vectors kept by (id, version), so concurrent and repeated queries embed a document once."""

    def settings(self) -> RerankSettings:
        return RerankSettings(
            candidates=self.candidates,
            budget_s=self.budget_ms / 1000,
            max_embed=self.max_embed,
            cache_entries=self.cache_entries,
        )


class QueryConfig(StrictModel):
    merge: Literal["minmax", "zscore", "rrf", "calibrated"] = "calibrated"
    traffic_percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    new_path: Literal["dual", "new"] = "dual"
    leg_timeout_ms: Annotated[float, Field(gt=0)] = 2_000.0
    shadow_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of queries on the old path that also run against the new index in the background."""
    rerank: RerankConfig = RerankConfig()


DEFAULT_COLLECTION = "default"
"""The name of the one collection a config without `collections:` defines; it keeps the state store's
un-suffixed namespace, so a sidecar that upgrades to this shape finds its migration where it left it."""
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class CollectionConfig(StrictModel):
    """One logical index the API names: what serves it, and its own migration."""

    serving_index: str
    """The index that answers queries when no migration is configured."""
    migration: MigrationConfig | None = None
    query: QueryConfig | None = None
    """Null: the top-level `query` section."""


@dataclass(frozen=True)
class Collection:
    """A collection as the app builds it: the top-level `query` filled in where the collection has none."""

    name: str
    serving_index: str
    migration: MigrationConfig | None
    query: QueryConfig

    def index_names(self) -> tuple[str, ...]:
        if self.migration is None:
            return (self.serving_index,)
        return tuple(dict.fromkeys((self.serving_index, self.migration.old_index, self.migration.new_index)))


class SwitchyardConfig(StrictModel):
    data_dir: Path = Path("switchyard-data")
    server: ServerConfig = ServerConfig()
    models: dict[str, ModelConfig]
    indexes: dict[str, IndexConfig]
    serving_index: str | None = None
    """One collection (named `default`): the index that answers queries when no migration is configured."""
    migration: MigrationConfig | None = None
    """One collection (named `default`): its migration."""
    collections: dict[str, CollectionConfig] | None = None
    """Several collections, each with its own serving index and migration (instead of the two keys above)."""
    default_collection: str | None = None
    """The collection a call without a `collection` acts on; default: the only one, or `default`."""
    query: QueryConfig = QueryConfig()
    state: StateConfig = StateConfig()
    telemetry: TelemetryConfig = TelemetryConfig()

    @model_validator(mode="after")
    def _check_references(self) -> SwitchyardConfig:
        if "\x00" in str(self.data_dir):
            raise ValueError("data_dir: contains a NUL character")
        for name, index in self.indexes.items():
            _require(index.model in self.models, f"indexes.{name}.model", index.model, self.models)
        _check_collection_shape(self)
        prefix = "" if self.collections is None else "collections.{}."
        for collection in self.collection_list():
            where = prefix.format(collection.name)
            _check_collection(collection, where, self.indexes)
        _check_index_owners(self.collection_list())
        _check_deferred_builds(self.indexes, self.collection_list())
        if self.default_collection is not None:
            names = [c.name for c in self.collection_list()]
            _require(
                self.default_collection in names,
                "default_collection",
                self.default_collection,
                dict.fromkeys(names),
            )
        return self

    def collection_list(self) -> list[Collection]:
        """Every collection, in config order; a config without `collections:` has one, named `default`."""
        if self.collections is None:
            assert self.serving_index is not None  # _check_collection_shape
            return [Collection(DEFAULT_COLLECTION, self.serving_index, self.migration, self.query)]
        return [
            Collection(name, c.serving_index, c.migration, c.query or self.query)
            for name, c in self.collections.items()
        ]

    def latency_budget_ms(self) -> float | None:
        """The query p99 budget every backfill respects: the tightest any collection's migration sets, since
        all collections' queries share the sidecar's threads and one p99."""
        budgets = [c.migration.backfill.latency_budget_ms for c in self.collection_list() if c.migration]
        return min((b for b in budgets if b is not None), default=None)

    def default_collection_name(self) -> str | None:
        """The collection an empty `collection` means; None when several exist and none is the default."""
        names = [c.name for c in self.collection_list()]
        if self.default_collection is not None:
            return self.default_collection
        if len(names) == 1:
            return names[0]
        return DEFAULT_COLLECTION if DEFAULT_COLLECTION in names else None


def _check_collection_shape(config: SwitchyardConfig) -> None:
    if config.collections is None:
        if config.serving_index is None:
            raise ValueError("serving_index: required (or define several under `collections:`)")
        return
    if config.serving_index is not None or config.migration is not None:
        raise ValueError(
            "serving_index / migration: with `collections:` each collection names its own; move them into "
            "collections.<name>"
        )
    if not config.collections:
        raise ValueError("collections: define at least one collection")
    for name in config.collections:
        if not _COLLECTION_NAME.fullmatch(name):
            raise ValueError(
                f"collections.{name}: a collection name is 1-63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )


def _check_collection(collection: Collection, where: str, indexes: dict[str, IndexConfig]) -> None:
    _require(collection.serving_index in indexes, f"{where}serving_index", collection.serving_index, indexes)
    m = collection.migration
    if m is None:
        return
    _require(m.old_index in indexes, f"{where}migration.old_index", m.old_index, indexes)
    _require(m.new_index in indexes, f"{where}migration.new_index", m.new_index, indexes)
    if m.old_index == m.new_index:
        raise ValueError(f"{where}migration.new_index must differ from migration.old_index")
    _check_adoption(m, where, indexes)


def _adopted(index: IndexConfig) -> tuple[object, str | None] | None:
    """What an adopted index serves: the application's table or collection and fields, and its vector
    column or field (None: the new model's, kept by Switchyard)."""
    if index.backend == "pgvector" and index.pgvector and index.pgvector.adopt:
        return index.pgvector.adopt.table_config(), index.pgvector.adopt.vector_column
    if index.backend == "milvus" and index.milvus and index.milvus.adopt:
        return index.milvus.adopt.spec(), index.milvus.adopt.vector_field
    return None


def _check_adoption(m: MigrationConfig, where: str, indexes: dict[str, IndexConfig]) -> None:
    """An adopted table migrates from its own vector column to a side table beside it, and keeps its rows."""
    old, new = _adopted(indexes[m.old_index]), _adopted(indexes[m.new_index])
    if old is None and new is None:
        return
    if old is None or new is None or old[0] != new[0]:
        raise ValueError(
            f"{where}migration: an adopted table migrates in place: old_index and new_index both need"
            " `pgvector.adopt` (or `milvus.adopt`) naming the same table (collection) and columns (fields)"
        )
    if old[1] is None or new[1] is not None:
        raise ValueError(
            f"{where}migration: the old index of an adopted table serves its `vector_column`, and the new"
            " index has none (its vectors go to a side table)"
        )
    if m.storage_policy is not StoragePolicy.KEEP_OLD:
        raise ValueError(
            f"{where}migration.storage_policy: an adopted table keeps its rows (they are the application's);"
            " the old vectors go at once when the migration is retired, so use keep_old"
        )


def _check_deferred_builds(indexes: dict[str, IndexConfig], collections: list[Collection]) -> None:
    """Only a migration's worker builds a deferred HNSW index: elsewhere it would never be built."""
    new_indexes = {c.migration.new_index for c in collections if c.migration}
    for name, index in indexes.items():
        if index.pgvector and index.pgvector.build_index == "deferred" and name not in new_indexes:
            raise ValueError(
                f"indexes.{name}.pgvector.build_index: deferred is for a migration's new_index, whose"
                " backfill worker builds the HNSW index; set it to live (or remove it)"
            )


def _check_index_owners(collections: list[Collection]) -> None:
    """An index belongs to one collection: its versions, tombstones and migration state are that
    collection's, and two migrations writing one index would overwrite each other's backfill."""
    owners: dict[str, str] = {}
    for collection in collections:
        for index in collection.index_names():
            owner = owners.setdefault(index, collection.name)
            if owner == collection.name:
                continue
            migrating = [c.name for c in collections if c.migration and c.migration.new_index == index]
            if len(migrating) > 1:
                raise ValueError(
                    f"collections {migrating[0]} and {migrating[1]} both migrate into index {index!r}; "
                    "give each its own new index"
                )
            raise ValueError(
                f"index {index!r} is used by collections {owner} and {collection.name}; an index belongs to "
                "one collection"
            )


def _require(ok: bool, field: str, value: str, known: dict[str, Any]) -> None:
    if not ok:
        raise ValueError(f"{field}: unknown name {value!r}; defined: {', '.join(sorted(known)) or 'none'}")


def parse_config(raw: dict[str, Any], source: str = "<config>") -> SwitchyardConfig:
    try:
        return SwitchyardConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path: Path) -> SwitchyardConfig:
    """Reads and validates a YAML config; relative data_dir is resolved against the file's folder."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a Switchyard config") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    config = parse_config(raw, str(path))
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (path.parent / config.data_dir).resolve()})
    return _resolve_golden_set(config, path.parent)


def _resolve_golden_set(config: SwitchyardConfig, base: Path) -> SwitchyardConfig:
    """Relative golden-set paths are read from the config file's folder, in every collection."""
    if config.collections is None:
        return config.model_copy(update={"migration": _with_golden_base(config.migration, base)})
    collections = {
        name: c.model_copy(update={"migration": _with_golden_base(c.migration, base)})
        for name, c in config.collections.items()
    }
    return config.model_copy(update={"collections": collections})


def _with_golden_base(migration: MigrationConfig | None, base: Path) -> MigrationConfig | None:
    if (
        migration is None
        or migration.validation.golden_set is None
        or migration.validation.golden_set.is_absolute()
    ):
        return migration
    validation = migration.validation.model_copy(
        update={"golden_set": base / migration.validation.golden_set}
    )
    return migration.model_copy(update={"validation": validation})


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in _without_model_kind(error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def _without_model_kind(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic puts the discriminator's tag in the path (models.x.openai.dim); users wrote models.x.dim.
    if len(loc) > 2 and loc[0] == "models" and loc[2] in _MODEL_KINDS:
        return loc[:2] + loc[3:]
    return loc
