"""`switchyard adopt`: inspects an application's pgvector table, checks it and the old model against each
other (`adoption_checks`), plans the statements that adopt it in place, applies them in one transaction when
asked, and writes the config that serves the table and migrates it to the new model."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import TypeAdapter, ValidationError

from proxy.adapters.pgvector.adopted_ddl import (
    LOCK_TIMEOUT,
    TableFacts,
    id_type_of,
    inspect_table,
    set_lock_timeout,
    side_table_statements,
    tracking_statements,
)
from proxy.adapters.pgvector.adopted_table import AdoptedTable, check_name, split_table
from proxy.adapters.pgvector.schema import Space
from proxy.adapters.pgvector.side_index import default_side_table
from proxy.app.adoption_checks import (
    AdoptionRefused,
    SampleCheck,
    TableCounts,
    check_privileges,
    check_shape,
    check_text,
    check_vector,
    count_table,
    sample_check,
)
from proxy.app.config import parse_config
from proxy.app.config_models import ModelConfig
from proxy.app.wiring import build_embedder
from proxy.core.errors import Unavailable
from proxy.migration.retirement import StoragePolicy

__all__ = [
    "LOCK_TIMEOUT",
    "AdoptRequest",
    "AdoptionPlan",
    "AdoptionRefused",
    "ModelChoice",
    "SampleCheck",
    "TableCounts",
    "apply_plan",
    "config_dict",
    "connect",
    "dsn_has_password",
    "model_from_spec",
    "plan_adoption",
    "resolve_models",
    "write_config",
]

_MODEL = TypeAdapter(ModelConfig)
_HASHING = re.compile(r"hashing:(\d+)(?::(-?\d+))?")


@dataclass(frozen=True)
class ModelChoice:
    """A `models:` entry: its name and the entry as written."""

    name: str
    entry: dict[str, Any]

    @property
    def config(self) -> ModelConfig:
        return _MODEL.validate_python(self.entry)


def model_from_spec(spec: str) -> ModelChoice:
    """`minilm`, `e5-small` or `hashing:DIM[:SEED]` (the test embedder) as a model entry."""
    if spec in ("minilm", "e5-small"):
        return ModelChoice(spec, {"kind": spec})
    hashing = _HASHING.fullmatch(spec)
    if hashing is None:
        raise AdoptionRefused(
            f"model {spec!r}: without --config a model is minilm, e5-small or hashing:DIM[:SEED]; other"
            " models (openai, batch sizes...) come from a config file's `models:` section (--config)"
        )
    dim, seed = int(hashing.group(1)), int(hashing.group(2) or 0)
    return ModelChoice(f"hashing-{dim}-{seed}", {"kind": "hashing", "dim": dim, "seed": seed})


def resolve_models(config_path: Path | None, old: str, new: str) -> tuple[ModelChoice, ModelChoice]:
    """The old and new models: entries of the config file's `models:` section, or specs without one."""
    if config_path is None:
        chosen = model_from_spec(old), model_from_spec(new)
    else:
        models = _models_section(config_path)
        for name in (old, new):
            if name not in models:
                raise AdoptionRefused(
                    f"{config_path}: no model {name!r} in `models:`; defined: {', '.join(models) or 'none'}"
                )
        chosen = ModelChoice(old, models[old]), ModelChoice(new, models[new])
    for model in chosen:
        try:
            model.config  # noqa: B018 - validates the entry
        except ValidationError as exc:
            raise AdoptionRefused(f"model {model.name}: {exc.errors()[0]['msg']}") from None
    if chosen[0].name == chosen[1].name:
        raise AdoptionRefused("the old and the new model are the same: nothing to migrate to")
    return chosen


def _models_section(path: Path) -> dict[str, dict[str, Any]]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AdoptionRefused(f"cannot read config file {path}: {exc}") from None
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise AdoptionRefused(f"{path}: no `models:` section")
    return {str(name): dict(entry) for name, entry in models.items() if isinstance(entry, dict)}


@dataclass(frozen=True)
class AdoptRequest:
    """What to adopt and how, as the operator gave it (every name checked)."""

    dsn: str
    table: str
    """`table` or `schema.table`."""
    id_column: str
    vector_column: str
    text_columns: tuple[str, ...]
    old: ModelChoice
    new: ModelChoice
    metadata_columns: tuple[str, ...] = ()
    dsn_env: str | None = None
    """Written to the config instead of the DSN itself."""
    sample: int = 32
    redis_url: str | None = None
    """State in Redis (several sidecar replicas); None: local state in data_dir."""
    data_dir: str = "switchyard-data"

    def __post_init__(self) -> None:
        try:
            split_table(self.table)
            for column in (self.id_column, self.vector_column, *self.text_columns, *self.metadata_columns):
                check_name("column", column)
        except ValueError as exc:
            raise AdoptionRefused(str(exc)) from None
        if not self.text_columns:
            raise AdoptionRefused("--text-columns: at least one column")
        if self.vector_column in (self.id_column, *self.text_columns, *self.metadata_columns):
            raise AdoptionRefused(f"{self.vector_column} cannot be the vector column and a key/text column")
        if self.sample < 1:
            raise AdoptionRefused("--sample: at least 1 row")

    @property
    def schema_table(self) -> tuple[str, str]:
        return split_table(self.table)


@dataclass(frozen=True)
class AdoptionPlan:
    """What the checks found and the statements `--apply` runs, in order, in one transaction."""

    facts: TableFacts
    spec: AdoptedTable
    counts: TableCounts
    vector_dim: int
    new_dim: int
    vector_indexes: dict[str, str]
    space: Space
    sample: SampleCheck | None
    already_adopted: bool
    side_table: str
    statements: list[sql.Composed]
    rendered: list[str]
    notes: list[str] = field(default_factory=list)


def connect(dsn: str) -> psycopg.Connection:
    """An autocommit connection (the checks only read; `apply` opens its own transaction)."""
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise Unavailable(f"cannot connect to PostgreSQL: {str(exc).strip()}") from None


def plan_adoption(conn: psycopg.Connection, request: AdoptRequest) -> AdoptionPlan:
    """Every check, then the plan; reads only. AdoptionRefused says what to fix."""
    schema, table = request.schema_table
    facts = inspect_table(conn, schema, table)
    if facts is None:
        raise AdoptionRefused(f"no table {schema}.{table} (as this role sees it; check --table and --dsn)")
    check_shape(
        facts,
        [request.id_column, request.vector_column, *request.text_columns, *request.metadata_columns],
        request.id_column,
    )
    old, new = (build_embedder(m.name, m.config) for m in (request.old, request.new))
    dim = check_vector(facts, request.vector_column, request.old.name, old.dim)
    check_privileges(conn, facts)
    spec = _spec(facts, request)
    try:
        counts = count_table(conn, spec, request.vector_column, facts)
        check_text(counts)
        sample = sample_check(conn, spec, request.vector_column, old, request.sample, counts)
    except errors.InsufficientPrivilege as exc:
        raise AdoptionRefused(f"insufficient privileges: {exc.diag.message_primary}") from None
    indexes = _vector_indexes(facts, request.vector_column)
    space, notes = _space(indexes, request.vector_column)
    if sample is None:
        notes.append("no row has both text and a vector: the sample check was skipped")
    side_name = default_side_table(table, request.new.name)
    statements = _statements(conn, spec, facts, side_name, new.dim, notes)
    return AdoptionPlan(
        facts=facts,
        spec=spec,
        counts=counts,
        vector_dim=dim,
        new_dim=new.dim,
        vector_indexes=indexes,
        space=space,
        sample=sample,
        already_adopted=_adopted(facts),
        side_table=f"{schema}.{side_name}",
        statements=statements,
        rendered=[s.as_string(conn) for s in statements],
        notes=notes,
    )


def _spec(facts: TableFacts, request: AdoptRequest) -> AdoptedTable:
    id_type = id_type_of(facts.columns[request.id_column].type)
    assert id_type is not None, "check_shape refuses other key types"
    try:
        return AdoptedTable(
            facts.schema,
            facts.table,
            request.id_column,
            id_type,
            request.text_columns,
            request.metadata_columns,
        )
    except ValueError as exc:
        raise AdoptionRefused(str(exc)) from None


def _statements(
    conn: psycopg.Connection,
    spec: AdoptedTable,
    facts: TableFacts,
    side_name: str,
    dim: int,
    notes: list[str],
) -> list[sql.Composed]:
    """The side table first, the triggers (the only statements that lock the application's table) after."""
    if side_name in {
        f"switchyard_{spec.table}{s}" for s in ("_changes", "_version_seq", "_track", "_pending")
    }:
        raise AdoptionRefused(
            f"the new model's side table would be named {side_name}, like another Switchyard object beside"
            " the table; name the model otherwise"
        )
    side = sql.Identifier(spec.schema, side_name)
    if not _adopted(facts) and _has_rows(conn, side):
        # Its vectors and versions belong to an earlier adoption (of a table since dropped and made again, say):
        # against a new changes table they would pass for current.
        raise AdoptionRefused(
            f"table {spec.schema}.{side_name} already holds vectors from an earlier adoption, but {spec.qualified}"
            f" is not adopted now; drop it (DROP TABLE {side.as_string(conn)}) or name the new model otherwise"
        )
    if _exists(conn, side) and not _adopted(facts):
        notes.append(f"table {spec.schema}.{side_name} exists already, empty: it is kept as the side table")
    return [
        *side_table_statements(spec, side, sql.Identifier(f"{side_name}_hnsw"), dim, "cosine", 16, 64),
        *tracking_statements(spec),
    ]


def _adopted(facts: TableFacts) -> bool:
    return "switchyard_track_writes" in facts.triggers


def _has_rows(conn: psycopg.Connection, name: sql.Identifier) -> bool:
    if not _exists(conn, name):
        return False
    return conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(name)).fetchone() == (True,)


def _exists(conn: psycopg.Connection, name: sql.Identifier) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name.as_string(conn),)).fetchone()
    return bool(row and row[0])


def dsn_has_password(dsn: str) -> bool:
    """Whether the DSN carries a password (which the written config would then hold in clear)."""
    try:
        return bool(conninfo_to_dict(dsn).get("password"))
    except psycopg.ProgrammingError:
        return False


def _vector_indexes(facts: TableFacts, column: str) -> dict[str, str]:
    pattern = re.compile(rf"USING (hnsw|ivfflat) \(\"?{re.escape(column)}\"?[\s)]")
    return {name: d for name, d in facts.indexes.items() if pattern.search(d)}


def _space(indexes: dict[str, str], column: str) -> tuple[Space, list[str]]:
    """The distance the old leg queries with: the application's vector index's, cosine when there is none."""
    definitions = " ".join(indexes.values())
    if "vector_ip_ops" in definitions:
        return "ip", []
    if "vector_cosine_ops" in definitions:
        return "cosine", []
    if indexes:
        return "cosine", [
            f"the vector indexes on {column} use L2 distance; Switchyard queries the old leg by cosine"
            " distance, which they do not serve: add an index with vector_cosine_ops (CREATE INDEX"
            " CONCURRENTLY) or expect exact scans"
        ]
    return "cosine", [f"no vector index on {column}: the old leg's queries scan the table (exact, slower)"]


def apply_plan(
    conn: psycopg.Connection,
    plan: AdoptionPlan,
    before: Callable[[int, str], None],
    after: Callable[[float], None],
) -> None:
    """Runs the plan's statements in one transaction under lock_timeout: all of them or none."""
    try:
        with conn.transaction():
            set_lock_timeout(conn)
            for number, (statement, text) in enumerate(zip(plan.statements, plan.rendered, strict=True), 1):
                before(number, text)
                started = time.perf_counter()
                conn.execute(statement)
                after(time.perf_counter() - started)
    except errors.InsufficientPrivilege as exc:
        raise AdoptionRefused(
            f"insufficient privileges: {exc.diag.message_primary}; everything was rolled back. The role"
            f" needs TRIGGER on {plan.spec.qualified} (its owner has it) and CREATE on schema"
            f" {plan.spec.schema}; re-running an adoption also needs ownership of the table"
        ) from None
    except errors.LockNotAvailable:
        raise AdoptionRefused(
            f"gave up waiting {LOCK_TIMEOUT} for a lock on {plan.spec.qualified} (a long transaction holds"
            " it); everything was rolled back: try again when it is done"
        ) from None
    except psycopg.Error as exc:
        raise AdoptionRefused(f"{str(exc).strip()}; everything was rolled back") from None


def config_dict(request: AdoptRequest, plan: AdoptionPlan) -> dict[str, Any]:
    """The config that serves the table in place (old leg: its vector column) and migrates it to a side
    table of the new model's vectors; checked with parse_config."""
    connection = {"dsn_env": request.dsn_env} if request.dsn_env else {"dsn": request.dsn}
    schema, table = request.schema_table

    def adopt(**vector: str) -> dict[str, Any]:
        # A fresh dict and lists for each index: shared objects would be written as YAML anchors.
        return {
            "table": table if schema == "public" else f"{schema}.{table}",
            "id_column": request.id_column,
            "text_columns": list(request.text_columns),
            **({"metadata_columns": list(request.metadata_columns)} if request.metadata_columns else {}),
            **vector,
        }

    old, new = request.old.name, request.new.name
    state: dict[str, Any] = {"backend": "local"}
    if request.redis_url:
        state = {"backend": "redis", "redis_url": request.redis_url}
    config: dict[str, Any] = {
        "data_dir": request.data_dir,
        "models": {old: request.old.entry, new: request.new.entry},
        "indexes": {
            old: {
                "model": old,
                "backend": "pgvector",
                "space": plan.space,
                "pgvector": {**connection, "adopt": adopt(vector_column=request.vector_column)},
            },
            new: {"model": new, "backend": "pgvector", "pgvector": {**connection, "adopt": adopt()}},
        },
        "serving_index": old,
        "migration": {"old_index": old, "new_index": new, "storage_policy": StoragePolicy.KEEP_OLD.value},
        "state": state,
    }
    parse_config(config, "the adopted config")
    return config


def write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
