"""Config to remote embedders: each kind's URL and defaults, the backfill page a remote model gets, field names
in errors."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.adapters.embedders.remote_http import RemoteEmbedder
from proxy.app.config import parse_config
from proxy.app.config_models import ModelConfig
from proxy.app.wiring import REMOTE_ROUNDS_PER_PAGE, backfill_batch_size, build_embedder, migration_settings
from proxy.core.errors import ConfigError


def model(entry: dict[str, Any]) -> ModelConfig:
    raw = {"models": {"m": entry}, "indexes": {"i": {"model": "m"}}, "serving_index": "i"}
    return parse_config(raw).models["m"]


@pytest.mark.parametrize(
    ("entry", "url", "concurrency"),
    [
        ({"kind": "openai", "base_url": "http://h/v1/", "model": "x"}, "http://h/v1/embeddings", 4),
        (
            {"kind": "azure-openai", "endpoint": "https://r.openai.azure.com", "deployment": "d"},
            "https://r.openai.azure.com/openai/v1/embeddings",
            4,
        ),
        (
            {
                "kind": "azure-openai",
                "endpoint": "https://r.openai.azure.com/",
                "deployment": "my dep",
                "api_version": "2024-10-21",
            },
            "https://r.openai.azure.com/openai/deployments/my%20dep/embeddings?api-version=2024-10-21",
            4,
        ),
        ({"kind": "tei", "base_url": "http://tei:8080"}, "http://tei:8080/embed", 8),
        ({"kind": "ollama", "base_url": "http://o:11434", "model": "x"}, "http://o:11434/api/embed", 1),
    ],
)
def test_each_kind_builds_a_remote_embedder_with_its_url_and_default_concurrency(
    entry: dict[str, Any], url: str, concurrency: int
) -> None:
    embedder = build_embedder("m", model({**entry, "dim": 8}))
    assert isinstance(embedder, RemoteEmbedder)
    assert embedder.url == url
    assert embedder.load().max_concurrency == concurrency
    embedder.close()


def test_a_remote_model_gets_a_backfill_page_of_full_batches_for_every_slot() -> None:
    remote = model({"kind": "tei", "base_url": "http://t", "dim": 8, "batch_size": 16, "max_concurrency": 6})
    assert backfill_batch_size(64, remote) == 16 * 6 * REMOTE_ROUNDS_PER_PAGE
    assert backfill_batch_size(10_000, remote) == 10_000  # a larger configured page stays
    assert backfill_batch_size(64, model({"kind": "hashing", "dim": 8})) == 64


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"kind": "ollama", "base_url": "http://o", "model": "x", "dim": 8, "max_concurrency": 0},
            "models.m.max_concurrency: Input should be greater than or equal to 1",
        ),
        ({"kind": "tei", "base_url": "tei:8080", "dim": 8}, "models.m.base_url: String should match pattern"),
        (
            {"kind": "azure-openai", "endpoint": "https://r", "deployment": "d", "dim": 8, "auth": "basic"},
            "models.m.auth: Input should be 'api-key' or 'bearer'",
        ),
        (
            {"kind": "openai", "base_url": "http://h", "model": "x", "dim": 8, "requests_per_minute": 0},
            "models.m.requests_per_minute: Input should be greater than 0",
        ),
    ],
)
def test_bad_remote_fields_are_named_without_the_kind_in_the_path(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        model(entry)


def test_slices_are_never_smaller_than_a_remote_model_s_page() -> None:
    raw = {
        "models": {
            "a": {"kind": "hashing", "dim": 8},
            "b": {
                "kind": "openai",
                "base_url": "http://h/v1",
                "model": "x",
                "dim": 8,
                "batch_size": 256,
                "max_concurrency": 16,
            },
        },
        "indexes": {"ia": {"model": "a"}, "ib": {"model": "b"}},
        "serving_index": "ia",
        "migration": {"old_index": "ia", "new_index": "ib", "backfill": {"slice_size": 2000}},
    }
    config = parse_config(raw)
    assert config.migration is not None
    settings = migration_settings(config.migration, config.models["b"]).backfill
    assert settings.batch_size == 256 * 16 * REMOTE_ROUNDS_PER_PAGE
    assert settings.slice_size == settings.batch_size
    assert migration_settings(config.migration, config.models["a"]).backfill.slice_size == 2000
