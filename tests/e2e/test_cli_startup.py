"""`switchyard serve` when a dependency is down at start-up: one line that says what to check, no traceback."""

from __future__ import annotations

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
