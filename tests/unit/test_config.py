from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.app.config import load_config, parse_config
from proxy.cli.main import main
from proxy.core.errors import ConfigError


def _base() -> dict[str, Any]:
    return {
        "models": {
            "a": {"kind": "hashing", "dim": 8, "seed": 1},
            "b": {"kind": "hashing", "dim": 8, "seed": 2},
        },
        "indexes": {"ia": {"model": "a"}, "ib": {"model": "b"}},
        "serving_index": "ia",
    }


def test_defaults_fill_what_the_file_leaves_out() -> None:
    config = parse_config(_base())
    assert config.server.max_batch_size == 256
    assert config.indexes["ia"].hnsw.m == 16
    assert config.state.backend == "local"


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (
            lambda c: c["indexes"]["ia"].update(model="nope"),
            "indexes.ia.model: unknown name 'nope'; defined: a, b",
        ),
        (lambda c: c.update(serving_index="zz"), "serving_index: unknown name 'zz'"),
        (lambda c: c["models"]["a"].update(dim=0), "models.a.dim: Input should be greater than 0"),
        (lambda c: c["indexes"]["ia"].update(hnsw={"efsearch": 5}), "indexes.ia.hnsw.efsearch: Extra inputs"),
        (lambda c: c.update(server={"max_k": -1}), "server.max_k"),
        (lambda c: c.update(migration={"old_index": "ia", "new_index": "ia"}), "must differ"),
        (
            lambda c: c.update(migration={"old_index": "ia", "new_index": "x"}),
            "migration.new_index: unknown name",
        ),
        (lambda c: c.update(query={"traffic_percent": 120}), "query.traffic_percent"),
        (
            # Only a migration's worker builds a deferred HNSW index: a serving index would never get one.
            lambda c: c["indexes"].update(
                ia={"model": "a", "backend": "pgvector", "pgvector": {"dsn": "x", "build_index": "deferred"}}
            ),
            "indexes.ia.pgvector.build_index: deferred is for a migration's new_index",
        ),
        (
            lambda c: c["indexes"].update(
                ib={"model": "b", "backend": "pgvector", "pgvector": {"dsn": "x", "build_index_at": 0}}
            ),
            "indexes.ib.pgvector.build_index_at",
        ),
    ],
)
def test_invalid_config_names_the_bad_field(mutate: Any, fragment: str) -> None:
    raw = _base()
    mutate(raw)
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(raw, "switchyard.yaml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("switchyard.yaml: ")


def test_relative_data_dir_resolves_against_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "switchyard.yaml"
    path.parent.mkdir()
    path.write_text(
        "data_dir: store\nmodels: {a: {kind: hashing, dim: 4}}\nindexes: {i: {model: a}}\nserving_index: i\n"
    )
    assert load_config(path).data_dir == (tmp_path / "conf" / "store").resolve()


@pytest.mark.parametrize(
    ("text", "fragment"), [("models: [unclosed", "not valid YAML"), ("- a\n- b\n", "expected a mapping")]
)
def test_malformed_yaml_is_a_config_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_serve_with_a_bad_config_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text("models: {}\nindexes: {i: {model: a}}\nserving_index: i\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "indexes.i.model: unknown name 'a'" in capsys.readouterr().err
