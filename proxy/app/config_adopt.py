"""The `pgvector.adopt` section: an application's own table, served in place."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from proxy.adapters.pgvector.adopted_table import TableConfig
from proxy.app.config_server import StrictModel

_COLUMN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class AdoptConfig(StrictModel):
    """An application's own table, served in place (`switchyard adopt` writes this section)."""

    table: Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,39}$")]
    """`table` or `schema.table` (schema public)."""
    id_column: Annotated[str, Field(pattern=_COLUMN)]
    """Its primary key: bigint, integer, smallint, text, varchar or uuid."""
    text_columns: Annotated[list[Annotated[str, Field(pattern=_COLUMN)]], Field(min_length=1)]
    """What the models embed: these columns as text, joined by a newline in this order, NULLs left out."""
    metadata_columns: list[Annotated[str, Field(pattern=_COLUMN)]] = Field(default_factory=list)
    """Returned with hits as strings, and what `where` filters may name."""
    vector_column: Annotated[str, Field(pattern=_COLUMN)] | None = None
    """The application's vector column this index serves (the old model's). Unset: this index's vectors live
    in a side table beside the application's (`table` of the pgvector section, default
    switchyard_<table>_<index>): the new model's."""

    def table_config(self) -> TableConfig:
        schema, _, table = self.table.rpartition(".")
        return TableConfig(
            schema or "public",
            table,
            self.id_column,
            tuple(self.text_columns),
            tuple(self.metadata_columns),
        )
