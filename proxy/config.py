"""Typed configuration: load a YAML file, validate it, name the bad field when it is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy.errors import ConfigError


class _Strict(BaseModel):
    # A typo in a config key must fail loudly instead of silently falling back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    listen: str = "127.0.0.1:50051"
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


ModelConfig = Annotated[HashingModelConfig, Field(discriminator="kind")]


class HnswParams(_Strict):
    m: Annotated[int, Field(ge=2, le=256)] = 16
    ef_construction: Annotated[int, Field(ge=1)] = 200
    ef_search: Annotated[int, Field(ge=1)] = 64
    initial_capacity: Annotated[int, Field(ge=1)] = 1024


class IndexConfig(_Strict):
    model: str
    backend: Literal["hnsw"] = "hnsw"
    space: Literal["cosine", "ip"] = "cosine"
    hnsw: HnswParams = HnswParams()


class BackfillConfig(_Strict):
    batch_size: Annotated[int, Field(gt=0, le=10_000)] = 64
    rate_limit: Annotated[float, Field(ge=0)] = 0.0
    """Documents per second; 0 means unlimited."""
    latency_budget_ms: Annotated[float, Field(gt=0)] | None = None
    """Back off while query p99 over the recent window exceeds this."""
    lease_ttl_s: Annotated[float, Field(gt=0)] = 15.0
    slice_size: Annotated[int, Field(gt=0)] = 2_000


class LazyConfig(_Strict):
    enabled: bool = True
    sync_budget: Annotated[int, Field(ge=0)] = 0
    """Re-embed up to this many touched, uncovered documents inline before answering a query."""


class MigrationConfig(_Strict):
    old_index: str
    new_index: str
    backfill: BackfillConfig = BackfillConfig()
    lazy: LazyConfig = LazyConfig()


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

    @model_validator(mode="after")
    def _check_references(self) -> SwitchyardConfig:
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
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    config = parse_config(raw, str(path))
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (path.parent / config.data_dir).resolve()})
    return config


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"] if part != "hashing")
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)
