"""An application's own table, served in place: what Switchyard reads of it and the objects it adds beside it.

The application's table keeps its rows, its columns and its writes. Switchyard adds, in the table's schema:
  switchyard_<table>_changes      (id, version, deleted, pending): one row per application row written since
                                   adoption, kept by two triggers; a row's version comes from
  switchyard_<table>_version_seq  (starting at 2: a row never written since adoption is at version 1)
  switchyard_<table>_track()      the trigger function, fired AFTER INSERT OR DELETE, and AFTER UPDATE OF the
                                   id or text columns WHEN one of them really changed (metadata-only updates
                                   cost nothing)
and, per new model, a side table of (id, version, deleted, embedding) with an HNSW index (`side_index`).

Ids travel as text (`id::text`): a bigint key as its decimal digits, a uuid in its canonical lower-case form.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from psycopg import sql

IdType = Literal["bigint", "integer", "smallint", "text", "uuid"]
ID_TYPES: tuple[IdType, ...] = ("bigint", "integer", "smallint", "text", "uuid")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The longest suffix added to the table's name ("_version_seq") must fit PostgreSQL's 63-byte identifiers.
_MAX_TABLE = 63 - len("switchyard__version_seq")
TEXT_SEPARATOR = "\n"
"""Several text columns are joined with this, in the configured order, NULLs left out (`concat_ws`)."""


def check_name(what: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} must be letters, digits and underscores, not starting with a digit"
        )
    return name


def split_table(qualified: str) -> tuple[str, str]:
    """`schema.table` or `table` (schema public) as (schema, table), each checked."""
    schema, _, table = qualified.rpartition(".")
    return check_name("schema", schema or "public"), check_name("table", table)


@dataclass(frozen=True)
class TableConfig:
    """An application's table as configured: which columns hold the key, the text and the metadata."""

    schema: str
    table: str
    id_column: str
    text_columns: tuple[str, ...]
    metadata_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdoptedTable:
    """Where an application keeps its documents, as configured (every name checked) and its id type."""

    schema: str
    table: str
    id_column: str
    id_type: IdType
    text_columns: tuple[str, ...]
    metadata_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name("schema", self.schema)
        check_name("table", self.table)
        if len(self.table) > _MAX_TABLE:
            raise ValueError(
                f"table name {self.table!r}: at most {_MAX_TABLE} characters for an adopted table"
            )
        for column in (self.id_column, *self.text_columns, *self.metadata_columns):
            check_name("column", column)
        if not self.text_columns:
            raise ValueError("an adopted table needs at least one text column to re-embed")
        if self.id_type not in ID_TYPES:
            raise ValueError(f"id column type {self.id_type!r}: supported are {', '.join(ID_TYPES)}")

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def name(self, suffix: str = "") -> sql.Identifier:
        """A Switchyard object beside the table: `switchyard_<table><suffix>` in the table's schema."""
        return sql.Identifier(self.schema, f"switchyard_{self.table}{suffix}")

    @property
    def app(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def changes(self) -> sql.Identifier:
        return self.name("_changes")

    @property
    def sequence(self) -> sql.Identifier:
        return self.name("_version_seq")

    @property
    def function(self) -> sql.Identifier:
        return self.name("_track")

    @property
    def id(self) -> sql.Identifier:
        return sql.Identifier(self.id_column)

    @property
    def sql_type(self) -> sql.SQL:
        return sql.SQL(self.id_type)

    def text_expression(self, alias: str = "t") -> sql.Composable:
        """The text the models embed: the text columns joined by TEXT_SEPARATOR, NULLs left out."""
        columns = sql.SQL(", ").join(
            sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c)) for c in self.text_columns
        )
        return sql.SQL("concat_ws({sep}, {columns})").format(sep=sql.Literal(TEXT_SEPARATOR), columns=columns)

    def metadata_expression(self, alias: str = "t") -> sql.Composable:
        """The metadata columns as one JSON object of strings (NULLs left out), as every index returns it."""
        if not self.metadata_columns:
            return sql.SQL("'{}'::jsonb")
        pairs = sql.SQL(", ").join(
            sql.SQL("{key}, {alias}.{column}::text").format(
                key=sql.Literal(c), alias=sql.Identifier(alias), column=sql.Identifier(c)
            )
            for c in self.metadata_columns
        )
        return sql.SQL("jsonb_strip_nulls(jsonb_build_object({}))").format(pairs)

    def filter_clause(self, keys: tuple[str, ...], alias: str = "t") -> sql.Composable:
        """` AND col::text = %(f_col)s` per filtered metadata column (callers check `keys` first)."""
        return sql.Composed(
            [
                sql.SQL(" AND {alias}.{column}::text = {param}").format(
                    alias=sql.Identifier(alias), column=sql.Identifier(k), param=sql.Placeholder(f"f_{k}")
                )
                for k in keys
            ]
        )

    def ordered_id(self, alias: str = "t", column_name: str | None = None) -> sql.Composable:
        """The id in the order `scan` pages by: the key's own order, byte order for text keys. `column_name`:
        a key column named otherwise (a side table's `id`)."""
        column = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column_name or self.id_column))
        return sql.SQL('{} COLLATE "C"').format(column) if self.id_type == "text" else column

    # ---- ids ----------------------------------------------------------------------------------------------

    def parse_id(self, doc_id: str) -> str | None:
        """`doc_id` in the form the table returns it, or None when no row could have it (not a number...)."""
        if self.id_type == "text":
            return doc_id
        if self.id_type == "uuid":
            try:
                return str(uuid.UUID(doc_id))
            except ValueError:
                return None
        return doc_id if re.fullmatch(r"-?[0-9]{1,19}", doc_id) and _fits(int(doc_id), self.id_type) else None

    def id_key(self, doc_id: str) -> tuple[int, str]:
        """The sort key of `doc_id` in `scan` order."""
        if self.id_type in ("bigint", "integer", "smallint"):
            return int(doc_id), ""
        return 0, doc_id


_BITS = {"smallint": 16, "integer": 32, "bigint": 64}


def _fits(value: int, id_type: str) -> bool:
    half = 1 << (_BITS[id_type] - 1)
    return -half <= value < half
