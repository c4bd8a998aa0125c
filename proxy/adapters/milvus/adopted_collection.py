"""An application's own Milvus collection as Switchyard reads it: which fields, and what they must be.

Shared by the old leg (`adopted_index`), which raises a problem as ConfigError when the sidecar opens it, and
by `switchyard adopt`, which raises it as a refusal before anything is created.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pymilvus import DataType

from proxy.adapters.milvus.expressions import literal

ORDERABLE_KEYS: dict[DataType, str] = {DataType.INT64: "int", DataType.VARCHAR: "str"}
"""Primary keys the backfill can slice: integers in numeric order, strings in byte (code point) order."""
TEXT_TYPES = (DataType.VARCHAR,)
SCALAR_TYPES = (
    DataType.BOOL,
    DataType.INT8,
    DataType.INT16,
    DataType.INT32,
    DataType.INT64,
    DataType.FLOAT,
    DataType.DOUBLE,
    DataType.VARCHAR,
)
_INTEGERS = (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


@dataclass(frozen=True)
class CollectionSpec:
    """The application's collection and the fields Switchyard reads from it."""

    collection: str
    id_field: str
    text_fields: tuple[str, ...]
    metadata_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (self.collection, self.id_field, *self.text_fields, *self.metadata_fields):
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a Milvus collection or field name")
        if not self.text_fields:
            raise ValueError("at least one text field")


def shape_problem(
    fields: dict[str, dict[str, Any]], spec: CollectionSpec, vector_field: str | None, dim: int | None
) -> str | None:
    """What makes the collection unfit for `spec` (None: nothing), naming the field; `dim`: the old model's."""
    where = f"collection {spec.collection}"
    present = ", ".join(f"{n} {f['type'].name}" for n, f in fields.items())
    wanted = [
        spec.id_field,
        *spec.text_fields,
        *spec.metadata_fields,
        *([vector_field] if vector_field else []),
    ]
    missing = [name for name in dict.fromkeys(wanted) if name not in fields]
    if missing:
        return f"{where} has no field {', '.join(missing)} (its fields: {present})"
    key = fields[spec.id_field]
    if not key.get("is_primary"):
        primary = next((n for n, f in fields.items() if f.get("is_primary")), "none")
        return f"id field {spec.id_field} is not the primary key of {where}; its primary key is {primary}"
    if key["type"] not in ORDERABLE_KEYS:
        return (
            f"id field {spec.id_field} is {key['type'].name}: the backfill slices the collection in key order,"
            " and Switchyard orders INT64 and VARCHAR keys only"
        )
    for name in spec.text_fields:
        if fields[name]["type"] not in TEXT_TYPES:
            return f"text field {name} is {fields[name]['type'].name}; a text field is VARCHAR"
    for name in spec.metadata_fields:
        if fields[name]["type"] not in SCALAR_TYPES:
            return f"metadata field {name} is {fields[name]['type'].name}; filters read scalar fields only"
    if vector_field is not None:
        vector = fields[vector_field]
        if vector["type"] != DataType.FLOAT_VECTOR:
            return f"vector field {vector_field} is {vector['type'].name}; Switchyard serves a FLOAT_VECTOR field"
        stored = int(vector["params"].get("dim", 0))
        if dim is not None and stored != dim:
            return (
                f"vector field {vector_field} has dim {stored} but the old model gives {dim} dimensions: check"
                " the old model (the one that produced the stored vectors)"
            )
    return None


def document_text(row: dict[str, Any], text_fields: tuple[str, ...]) -> str:
    """The text fields joined by a newline, empty ones left out: what the models embed."""
    return "\n".join(str(row[f]) for f in text_fields if row.get(f) not in (None, ""))


def metadata_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def key_literal(kind: str, doc_id: str) -> str | None:
    """`doc_id` as a literal of the key's type; None when it cannot be one (then no row has it)."""
    if kind == "str":
        return literal(doc_id)
    try:
        value = int(doc_id)
    except ValueError:
        return None
    return str(value) if -(1 << 63) <= value < (1 << 63) else None


def field_equals(field: str, kind: DataType, value: str) -> str | None:
    """`field == value` for a scalar field, the string compared as the field's type (None: never equal)."""
    if kind == DataType.VARCHAR:
        return f"{field} == {literal(value)}"
    if kind == DataType.BOOL:
        return {"true": f"{field} == true", "false": f"{field} == false"}.get(value)
    try:
        number = int(value) if kind in _INTEGERS else float(value)
    except ValueError:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return f"{field} == {number!r}"
