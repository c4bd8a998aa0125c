"""The `milvus` section of an index: milvus-lite from a `.db` path, or a Milvus server or cluster by URI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from proxy.adapters.milvus.adopted_collection import CollectionSpec
from proxy.app.config_server import StrictModel
from proxy.core.errors import ConfigError

_FIELD = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"


class MilvusAdoptConfig(StrictModel):
    """An application's own Milvus collection, served in place (`switchyard adopt --milvus-uri` writes it)."""

    collection: Annotated[str, Field(pattern=_FIELD)]
    id_field: Annotated[str, Field(pattern=_FIELD)]
    """Its primary key: INT64 or VARCHAR."""
    text_fields: Annotated[list[Annotated[str, Field(pattern=_FIELD)]], Field(min_length=1)]
    """What the models embed: these VARCHAR fields joined by a newline in this order, empty ones left out."""
    metadata_fields: list[Annotated[str, Field(pattern=_FIELD)]] = Field(default_factory=list)
    """Scalar fields returned with hits as strings, and what `where` filters may name."""
    vector_field: Annotated[str, Field(pattern=_FIELD)] | None = None
    """The application's vector field this index serves (the old model's). Unset: this index's vectors live in
    a collection of Switchyard's own (`collection` of the milvus section, default
    switchyard_<collection>_<index>), keyed by the same ids: the new model's."""

    def spec(self) -> CollectionSpec:
        return CollectionSpec(
            self.collection, self.id_field, tuple(self.text_fields), tuple(self.metadata_fields)
        )


class MilvusParams(StrictModel):
    """Where the index's collection lives and how it is searched.

    Moving from the embedded engine to a cluster changes `uri` alone: the same collection layout, calls and
    guarantees (copy the data over with a migration, milvus-lite -> cluster, like any other)."""

    uri: str = "milvus.db"
    """A path ending in `.db` runs milvus-lite inside the sidecar (relative: under `data_dir`); an
    `http(s)://host:19530` URI reaches a Milvus server or cluster."""
    token_env: str | None = None
    """Name of an environment variable holding the server's token (`user:password` or an API key)."""
    collection: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")] | None = None
    """Defaults to switchyard_<index name>."""
    m: Annotated[int, Field(ge=2, le=2048)] = 16
    ef_construction: Annotated[int, Field(ge=1)] = 200
    ef_search: Annotated[int, Field(ge=1, le=32_768)] = 64
    """HNSW `ef` of a search; a search for more neighbours than this raises it to k for itself."""
    consistency_level: Literal["Strong", "Bounded", "Session", "Eventually"] = "Strong"
    """Of searches (version checks and scans always read at Strong): Strong shows a write to the next
    search; Bounded saves a server a wait for the newest writes at the cost of a few seconds' staleness."""
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    """Of each call to Milvus."""
    adopt: MilvusAdoptConfig | None = None
    """Serve an application's own collection in place instead of a collection of Switchyard's."""

    @model_validator(mode="after")
    def _check_uri(self) -> MilvusParams:
        remote = self.uri.startswith(("http://", "https://", "tcp://"))
        if not remote and not self.uri.endswith(".db"):
            raise ValueError(
                "uri: a milvus-lite path ending in .db, or an http(s):// or tcp:// URI of a server"
            )
        return self

    def resolved_uri(self, data_dir: Path) -> str:
        if self.uri.startswith(("http://", "https://", "tcp://")):
            return self.uri
        path = Path(self.uri)
        return str(path if path.is_absolute() else data_dir / path)

    def token(self) -> str | None:
        """The token from `token_env`; ConfigError names a variable that is not set."""
        if self.token_env is None:
            return None
        value = os.environ.get(self.token_env)
        if value is None:
            raise ConfigError(f"milvus.token_env: environment variable {self.token_env} is not set")
        return value
