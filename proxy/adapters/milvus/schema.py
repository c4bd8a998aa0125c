"""The collection of one Switchyard index: its fields, its HNSW index, and the check of an existing one.

One entity per document id, live or tombstoned: (id, version, deleted, text, metadata, vector). A tombstone
keeps its id and version so that an older write can never bring the document back; Milvus has no nullable
vector field before 3.0 (and milvus-lite needs a value even then), so a tombstone carries a fixed placeholder
vector, and every search filters `deleted == false`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pymilvus import DataType, MilvusClient

from proxy.adapters.milvus.connection import Client
from proxy.core.errors import ConfigError, IndexConfigMismatch

Space = Literal["cosine", "ip"]
METRICS: dict[str, str] = {"cosine": "COSINE", "ip": "IP"}

ID_MAX_BYTES = 2048
"""Milvus counts VARCHAR lengths in bytes: the proxy's 512-character ids take up to 2,048 in UTF-8."""
TEXT_MAX_BYTES = 65_535
"""Milvus's largest VARCHAR by default (a server's proxy.maxVarCharLength); a longer text is refused."""

ID, VERSION, DELETED, TEXT, METADATA, VECTOR = "id", "version", "deleted", "text", "metadata", "vector"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


@dataclass(frozen=True)
class IndexCollection:
    index: str
    name: str
    dim: int
    space: Space


def default_collection(index: str) -> str:
    """`switchyard_<index>`, with every character Milvus does not allow in a name as `_`."""
    return "switchyard_" + re.sub(r"[^A-Za-z0-9_]", "_", index)


def default_adopted_collection(collection: str, index: str) -> str:
    """`switchyard_<collection>_<index>`: the new model's collection beside an adopted one."""
    return default_collection(f"{collection}_{index}")[:255]


def check_collection_name(index: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"milvus index {index!r}: collection {name!r} is not a Milvus name (letters, digits and '_',"
            " not starting with a digit, at most 255 characters)"
        )


def _schema(client: MilvusClient, dim: int) -> Any:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ID, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
    schema.add_field(VERSION, DataType.INT64)
    schema.add_field(DELETED, DataType.BOOL)
    schema.add_field(TEXT, DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
    schema.add_field(METADATA, DataType.JSON)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    return schema


_EXPECTED: dict[str, DataType] = {
    ID: DataType.VARCHAR,
    VERSION: DataType.INT64,
    DELETED: DataType.BOOL,
    TEXT: DataType.VARCHAR,
    METADATA: DataType.JSON,
    VECTOR: DataType.FLOAT_VECTOR,
}


def ensure_collection(
    client: Client,
    target: IndexCollection,
    *,
    hnsw_m: int,
    hnsw_ef_construction: int,
    consistency_level: str,
) -> None:
    """Creates the collection with its HNSW index when absent; checks and loads an existing one.

    ConfigError (naming the field) when an existing collection has another shape, IndexConfigMismatch when it
    was made for another dim or space."""

    def create(c: MilvusClient) -> None:
        if c.has_collection(target.name):
            return
        params = c.prepare_index_params()
        params.add_index(
            VECTOR,
            index_type="HNSW",
            metric_type=METRICS[target.space],
            params={"M": hnsw_m, "efConstruction": hnsw_ef_construction},
        )
        c.create_collection(
            target.name,
            schema=_schema(c, target.dim),
            index_params=params,
            consistency_level=consistency_level,
        )

    client.call(create)
    check_shape(client, target)
    client.run("load_collection", target.name)


def describe_fields(client: Client, collection: str) -> dict[str, dict[str, Any]]:
    """The collection's fields by name, as `describe_collection` gives them."""
    described = client.run("describe_collection", collection)
    return {field["name"]: field for field in described["fields"]}


def check_shape(client: Client, target: IndexCollection) -> None:
    where = f"milvus index {target.index!r}: collection {target.name!r} at {client.uri}"
    fields = describe_fields(client, target.name)
    for name, kind in _EXPECTED.items():
        field = fields.get(name)
        if field is None:
            raise ConfigError(f"{where} has no field {name!r}: it was not made by Switchyard")
        if field["type"] != kind:
            raise ConfigError(f"{where}: field {name!r} is {field['type'].name}, expected {kind.name}")
    if not fields[ID].get("is_primary"):
        raise ConfigError(f"{where}: field {ID!r} is not the primary key")
    dim = int(fields[VECTOR]["params"].get("dim", 0))
    if dim != target.dim:
        raise IndexConfigMismatch(
            f"{where}: field {VECTOR!r} has dim {dim}, the index is configured for {target.dim}"
        )
    metric = vector_metric(client, target.name, VECTOR)
    if metric is not None and metric != METRICS[target.space]:
        raise IndexConfigMismatch(
            f"{where}: field {VECTOR!r} is indexed with metric {metric}, the index is configured for"
            f" space {target.space!r} ({METRICS[target.space]})"
        )


def vector_metric(client: Client, collection: str, field: str) -> str | None:
    """The metric of the index on `field` (None: the field has no index)."""
    for name in client.run("list_indexes", collection, field_name=field):
        described = client.run("describe_index", collection, name)
        if described.get("field_name", field) == field:
            return str(described.get("metric_type", "")).upper() or None
    return None
