"""The `milvus` backend's config: defaults, the URI's two forms, the token from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.app.config import parse_config
from proxy.app.config_milvus import MilvusParams
from proxy.core.errors import ConfigError


def _config(index: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": {"a": {"kind": "hashing", "dim": 8, "seed": 1}},
        "indexes": {"ia": {"model": "a", **index}},
        "serving_index": "ia",
    }


def test_backend_milvus_alone_is_milvus_lite_under_data_dir() -> None:
    config = parse_config(_config({"backend": "milvus"}))
    index = config.indexes["ia"]
    assert index.milvus is None
    params = MilvusParams()
    assert params.resolved_uri(Path("/data")) == "/data/milvus.db"
    assert (params.m, params.ef_construction, params.ef_search, params.consistency_level) == (
        16,
        200,
        64,
        "Strong",
    )


def test_a_server_uri_is_kept_and_an_absolute_path_is_not_moved() -> None:
    server = parse_config(_config({"backend": "milvus", "milvus": {"uri": "https://milvus.internal:19530"}}))
    assert server.indexes["ia"].milvus is not None
    assert server.indexes["ia"].milvus.resolved_uri(Path("/data")) == "https://milvus.internal:19530"
    lite = parse_config(_config({"backend": "milvus", "milvus": {"uri": "/srv/vectors.db"}}))
    assert lite.indexes["ia"].milvus is not None
    assert lite.indexes["ia"].milvus.resolved_uri(Path("/data")) == "/srv/vectors.db"


@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        (
            {"backend": "milvus", "milvus": {"uri": "milvus"}},
            "indexes.ia.milvus: uri: a milvus-lite path ending in .db",
        ),
        ({"milvus": {"uri": "x.db"}}, "a `milvus:` section is set but backend is hnsw"),
        (
            {"backend": "milvus", "milvus": {"consistency_level": "Weak"}},
            "indexes.ia.milvus.consistency_level",
        ),
        ({"backend": "milvus", "milvus": {"collection": "1bad"}}, "indexes.ia.milvus.collection"),
        ({"backend": "milvus", "milvus": {"ef": 10}}, "indexes.ia.milvus.ef: Extra inputs"),
    ],
)
def test_invalid_milvus_sections_name_the_field(index: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(index))
    assert fragment in str(info.value)


def test_token_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(
        _config({"backend": "milvus", "milvus": {"uri": "http://m:19530", "token_env": "MV_TOK"}})
    )
    params = config.indexes["ia"].milvus
    assert params is not None
    monkeypatch.delenv("MV_TOK", raising=False)
    with pytest.raises(ConfigError, match=r"milvus\.token_env: environment variable MV_TOK is not set"):
        params.token()
    monkeypatch.setenv("MV_TOK", "root:Milvus")
    assert params.token() == "root:Milvus"
