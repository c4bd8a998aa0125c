"""`switchyard serve` when a dependency is down at start-up: one line that says what to check, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from proxy.demo.sidecar_process import free_port
from tests.conftest import run_serve


def test_serve_with_unreachable_redis_exits_with_one_clear_line(tmp_path: Path) -> None:
    dead_port = free_port()  # nothing listens there
    config = {
        "data_dir": str(tmp_path / "data"),
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "models": {"a": {"kind": "hashing", "dim": 16, "seed": 1}},
        "indexes": {"ia": {"model": "a"}},
        "serving_index": "ia",
        "state": {"backend": "redis", "redis_url": f"redis://127.0.0.1:{dead_port}/0"},
        "telemetry": {"metrics_listen": None},
    }
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_serve(path)
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode == 3, (run.returncode, run.stderr[-500:])
    [line] = [text for text in run.stderr.splitlines() if text.startswith("switchyard:")]
    assert f"127.0.0.1:{dead_port}" in line and "unreachable" in line and "state.redis_url" in line, line


def _milvus_serve(tmp_path: Path, milvus: dict[str, object]) -> tuple[int, list[str], str]:
    config = {
        "data_dir": str(tmp_path / "data"),
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "models": {"a": {"kind": "hashing", "dim": 16, "seed": 1}},
        "indexes": {"ia": {"model": "a", "backend": "milvus", "milvus": milvus}},
        "serving_index": "ia",
        "telemetry": {"metrics_listen": None},
    }
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_serve(path)
    lines = [text for text in run.stderr.splitlines() if text.startswith("switchyard:")]
    return run.returncode, lines, run.stderr


def test_serve_with_unreachable_milvus_exits_with_one_line_naming_the_uri(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, lines, stderr = _milvus_serve(tmp_path, {"uri": uri, "timeout_s": 2})
    assert "Traceback" not in stderr, stderr[-2000:]
    assert code != 0
    [line] = lines
    assert uri in line and "cannot reach Milvus" in line, line


def test_serve_on_a_milvus_collection_of_another_dim_names_the_field(tmp_path: Path) -> None:
    # Made by another process, as an application would: milvus-lite lets one process at a time open a `.db`.
    script = (
        "import sys; from pymilvus import DataType, MilvusClient\n"
        "client = MilvusClient(sys.argv[1])\n"
        "schema = client.create_schema(auto_id=False, enable_dynamic_field=False)\n"
        "schema.add_field('id', DataType.VARCHAR, is_primary=True, max_length=64)\n"
        "schema.add_field('vector', DataType.FLOAT_VECTOR, dim=16)\n"
        "client.create_collection('theirs', schema=schema)\n"
    )
    (tmp_path / "data").mkdir()
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data" / "milvus.db")], check=True, timeout=60
    )
    code, lines, stderr = _milvus_serve(tmp_path, {"collection": "theirs"})
    assert "Traceback" not in stderr, stderr[-2000:]
    assert code != 0
    [line] = lines
    assert "'theirs'" in line and "no field 'version'" in line, line
