"""Collections in the config (the old one-collection shape, `collections:`) and the name resolution the API
uses (an empty name means the default, an unknown name is NOT_FOUND naming the known ones)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.app.config import parse_config
from proxy.core.collections import Collections
from proxy.core.errors import ConfigError, InvalidArgument, NotFound


def _models_and_indexes() -> dict[str, Any]:
    return {
        "models": {
            "a": {"kind": "hashing", "dim": 8, "seed": 1},
            "b": {"kind": "hashing", "dim": 8, "seed": 2},
        },
        "indexes": {name: {"model": name[-1]} for name in ("docs-a", "docs-b", "faq-a", "faq-b")},
    }


def _two_collections(**overrides: Any) -> dict[str, Any]:
    raw = _models_and_indexes()
    raw["collections"] = {
        "docs": {"serving_index": "docs-a", "migration": {"old_index": "docs-a", "new_index": "docs-b"}},
        "faq": {"serving_index": "faq-a", "query": {"merge": "rrf", "traffic_percent": 10}},
    }
    raw.update(overrides)
    return raw


def _config_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "switchyard.yaml")
    return str(info.value)


def test_the_old_one_collection_config_is_one_collection_named_default() -> None:
    raw = _models_and_indexes()
    raw.update(
        serving_index="docs-a",
        migration={"old_index": "docs-a", "new_index": "docs-b", "backfill": {"rate_limit": 50}},
        query={"merge": "zscore", "traffic_percent": 20},
    )
    config = parse_config(raw)
    [collection] = config.collection_list()
    assert collection.name == "default"
    assert collection.serving_index == "docs-a"
    assert collection.migration == config.migration and collection.migration is not None
    assert collection.migration.backfill.rate_limit == 50
    assert collection.query == config.query and collection.query.merge == "zscore"
    assert collection.index_names() == ("docs-a", "docs-b")
    assert config.default_collection_name() == "default"


def test_collections_each_name_their_serving_index_migration_and_query() -> None:
    config = parse_config(_two_collections())
    docs, faq = config.collection_list()
    assert (docs.name, docs.serving_index, faq.name, faq.serving_index) == ("docs", "docs-a", "faq", "faq-a")
    assert docs.migration is not None and docs.migration.new_index == "docs-b"
    assert faq.migration is None and faq.index_names() == ("faq-a",)
    assert faq.query.merge == "rrf" and faq.query.traffic_percent == 10


def test_a_collection_without_a_query_section_takes_the_top_level_one() -> None:
    config = parse_config(_two_collections(query={"merge": "minmax", "leg_timeout_ms": 750}))
    docs, faq = config.collection_list()
    assert docs.query == config.query and docs.query.merge == "minmax" and docs.query.leg_timeout_ms == 750
    assert faq.query.merge == "rrf", "a collection's own query section wins over the top-level one"


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"serving_index": "docs-a"}, ["serving_index / migration", "collections.<name>"]),
        ({"migration": {"old_index": "docs-a", "new_index": "docs-b"}}, ["serving_index / migration"]),
        ({"collections": {}}, ["collections: define at least one collection"]),
        ({"default_collection": "nope"}, ["default_collection: unknown name 'nope'", "docs, faq"]),
    ],
)
def test_a_collections_config_error_names_the_field(change: dict[str, Any], fragments: list[str]) -> None:
    message = _config_error(_two_collections(**change))
    assert message.startswith("switchyard.yaml: ")
    for fragment in fragments:
        assert fragment in message


def test_a_config_with_neither_serving_index_nor_collections_is_refused() -> None:
    message = _config_error(_models_and_indexes())
    assert "serving_index: required" in message and "collections:" in message


@pytest.mark.parametrize("name", ["-leading-dash", "has space", "slash/inside", "x" * 64, "colon:in"])
def test_a_bad_collection_name_is_refused_naming_it(name: str) -> None:
    raw = _two_collections()
    raw["collections"][name] = raw["collections"].pop("faq")
    message = _config_error(raw)
    assert f"collections.{name}: a collection name is 1-63 letters" in message


def test_a_collection_index_that_is_not_defined_names_the_collection_field() -> None:
    raw = _two_collections()
    raw["collections"]["faq"]["serving_index"] = "missing"
    assert "collections.faq.serving_index: unknown name 'missing'" in _config_error(raw)


def test_an_index_shared_by_two_collections_names_the_index_and_both_collections() -> None:
    raw = _two_collections()
    raw["collections"]["faq"]["serving_index"] = "docs-b"
    message = _config_error(raw)
    assert "index 'docs-b' is used by collections docs and faq" in message
    assert "an index belongs to one collection" in message


def test_two_collections_migrating_into_one_index_get_their_own_message() -> None:
    raw = _two_collections()
    raw["collections"]["faq"]["migration"] = {"old_index": "faq-a", "new_index": "docs-b"}
    message = _config_error(raw)
    assert "collections docs and faq both migrate into index 'docs-b'" in message
    assert "give each its own new index" in message


def test_default_collection_name_is_the_explicit_one_else_the_only_one_else_default() -> None:
    assert parse_config(_two_collections(default_collection="faq")).default_collection_name() == "faq"
    assert parse_config(_two_collections()).default_collection_name() is None
    only = _two_collections()
    del only["collections"]["faq"]
    assert parse_config(only).default_collection_name() == "docs"
    with_default = _two_collections()
    with_default["collections"]["default"] = with_default["collections"].pop("faq")
    assert parse_config(with_default).default_collection_name() == "default"
    explicit = _two_collections(default_collection="docs")
    explicit["collections"]["default"] = explicit["collections"].pop("faq")
    assert parse_config(explicit).default_collection_name() == "docs", "explicit wins over `default`"


def test_collections_resolve_an_empty_name_to_the_default() -> None:
    collections = Collections({"docs": 1, "faq": 2}, default="faq")
    assert collections.get("") == 2 and collections.get("docs") == 1
    assert collections.name_of("") == "faq" and collections.name_of("docs") == "docs"


def test_collections_refuse_an_unknown_name_listing_the_known_ones() -> None:
    collections = Collections({"docs": 1, "faq": 2}, default="docs")
    with pytest.raises(NotFound) as info:
        collections.get("nope")
    assert "'nope'" in str(info.value) and "known collections: docs, faq" in str(info.value)
    with pytest.raises(NotFound):
        collections.name_of("nope")


def test_collections_without_a_default_refuse_an_empty_name() -> None:
    collections = Collections({"docs": 1, "faq": 2}, default=None)
    with pytest.raises(InvalidArgument) as info:
        collections.get("")
    assert "collection: required" in str(info.value) and "docs, faq" in str(info.value)
    assert "default_collection" in str(info.value)
    assert collections.get("faq") == 2


def test_collections_refuse_a_default_that_is_not_a_member() -> None:
    with pytest.raises(ValueError, match="'nope' is not one of"):
        Collections({"docs": 1}, default="nope")


def test_collections_map_keeps_the_members_and_the_default() -> None:
    mapped = Collections({"docs": 1, "faq": 2}, default="faq").map(lambda n: n * 10)
    assert dict(mapped.items()) == {"docs": 10, "faq": 20}
    assert mapped.default == "faq" and mapped.get("") == 20 and len(mapped) == 2
