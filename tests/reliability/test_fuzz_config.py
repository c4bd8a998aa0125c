"""Malformed configuration: always a ConfigError (exit code 2) whose message names a field, never a traceback.

Hypothesis feeds `parse_config` arbitrary dicts and valid configs with one field replaced by junk, and
`load_config` arbitrary YAML-ish text; `switchyard serve --config` is run on a handful of broken files.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

import proxy.app.config
import proxy.app.config_server
from proxy.app.config import load_config, parse_config
from proxy.core.errors import ConfigError
from tests.conftest import run_serve
from tests.reliability.support import fuzz_settings, record_result

FUZZ = fuzz_settings()
VALID: dict[str, Any] = {
    "data_dir": "data",
    "server": {"listen": "127.0.0.1:50051", "max_batch_size": 64, "max_k": 50},
    "models": {"m-old": {"kind": "hashing", "dim": 16, "seed": 1}, "m-new": {"kind": "hashing", "dim": 16}},
    "indexes": {"old": {"model": "m-old"}, "new": {"model": "m-new", "hnsw": {"m": 8}}},
    "serving_index": "old",
    "migration": {
        "old_index": "old",
        "new_index": "new",
        "backfill": {"batch_size": 10, "rate_limit": 5, "lease_ttl_s": 2},
        "promotion": {"steps": [5, 50, 100]},
    },
    "query": {"merge": "rrf", "traffic_percent": 10},
    "state": {"backend": "local"},
    "telemetry": {"metrics_listen": None},
}
# Every field name of the schema: a message naming a field contains one of them (or a key the input used).
FIELDS = {
    name
    for module in (proxy.app.config, proxy.app.config_server)
    for _, model in inspect.getmembers(module, inspect.isclass)
    if issubclass(model, BaseModel) and model.__module__ == module.__name__
    for name in model.model_fields
}
# Paths hold no NUL byte here: a NUL in data_dir is a known gap (test_cli_names_the_field_of_a_broken_file).
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(exclude_characters="\x00"), max_size=20)
)
junk = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return [prefix]
    paths = [prefix] if prefix else []
    for key, inner in value.items():
        paths += _leaf_paths(inner, (*prefix, key))
    return paths


PATHS = _leaf_paths(VALID)
_outcomes: dict[str, int] = {"valid": 0, "config_error": 0}


@pytest.fixture(scope="module", autouse=True)
def _record_outcomes() -> Iterator[None]:
    yield
    record_result("fuzz", "config", dict(_outcomes))


def _names_a_field(message: str, raw: Any) -> bool:
    keys = set(raw) if isinstance(raw, dict) else set()
    return any(re.search(rf"\b{re.escape(str(name))}\b", message) for name in FIELDS | keys)


def _parse(raw: dict[str, Any]) -> str | None:
    """parse_config's ConfigError message, or None when the config is valid; any other exception fails."""
    try:
        parse_config(raw, "fuzz.yaml")
    except ConfigError as exc:
        _outcomes["config_error"] += 1
        return str(exc)
    _outcomes["valid"] += 1
    return None


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(sorted(FIELDS)) | st.text(max_size=10), junk, max_size=6))
def test_arbitrary_dicts_are_rejected_with_a_config_error_naming_a_field(raw: dict[str, Any]) -> None:
    message = _parse(raw)
    assert message is not None, "no valid config lacks models, indexes and serving_index"
    assert _names_a_field(message, raw), message


@FUZZ
@given(path=st.sampled_from(PATHS), value=junk)
def test_one_junk_field_in_a_valid_config_is_named(path: tuple[str, ...], value: Any) -> None:
    raw = copy.deepcopy(VALID)
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    message = _parse(raw)
    if message is not None:
        # Usually the field itself; an emptied section may surface where it is referenced instead (no model
        # left for `indexes.old.model`), which names a field too.
        assert _names_a_field(message, {key: None for key in path}), (path, message)


_yamlish_line = st.builds(
    lambda indent, key, sep, value: f"{' ' * indent}{key}{sep}{value}",
    st.integers(0, 6),
    st.sampled_from([*sorted(FIELDS), "- ", "? ", "&a ", "*a", "!!str ", "<<", "", "{", "["]),
    st.sampled_from([": ", ":", " ", ": |", ": >", ": {", ": ["]),
    st.text(max_size=15) | st.sampled_from(["null", "~", ".nan", "1e999", "-1", "[]", "{}", "'", '"']),
)
yamlish = st.lists(_yamlish_line, max_size=12).map("\n".join) | st.text(max_size=200)


@FUZZ
@given(text=yamlish)
def test_yamlish_files_load_or_fail_with_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        _outcomes["config_error"] += 1
        assert str(path) in str(exc), "the message says which file"
        return
    _outcomes["valid"] += 1


_BROKEN_FILES: dict[str, tuple[str | dict[str, Any], str]] = {
    "not YAML": ("models: [unclosed", "not valid YAML"),
    "a list at the top": ("- models\n- indexes\n", "expected a mapping"),
    "empty": ("", "expected a mapping"),
    "unknown field": ({"server": {"max_batchsize": 3}}, "server.max_batchsize"),
    "wrong type": ({"server": {"max_k": "lots"}}, "server.max_k"),
    "unknown model": ({"indexes": {"old": {"model": "nope"}}}, "indexes.old.model"),
    "bad merge": ({"query": {"merge": "average"}}, "query.merge"),
    "deep nesting": ("a: " + "[" * 600 + "]" * 600, "nested too deeply"),
    "NUL in data_dir": ({"data_dir": "data\x00dir"}, "data_dir"),
    "unusable listen address": ({"server": {"listen": "no such host:1"}}, "server.listen"),
}


def _file_text(case: str | dict[str, Any]) -> str:
    if isinstance(case, str):
        return case
    import yaml

    return yaml.safe_dump({**VALID, **case}, sort_keys=False)


@pytest.mark.parametrize(
    ("case", "field"),
    [pytest.param(*case, id=name) for name, case in _BROKEN_FILES.items()],
)
def test_cli_names_the_field_of_a_broken_file(tmp_path: Path, case: str | dict[str, Any], field: str) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text(_file_text(case))
    run = run_serve(path, timeout_s=60)
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode == 2, (run.returncode, run.stderr[-500:])
    assert "config error" in run.stderr and field in run.stderr, run.stderr
