"""The README's main job: `switchyard demo` with its default, relative data directory, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_end_to_end_from_a_relative_data_dir(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "demo", "--docs", "300"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "phase after restart: old_retired" in result.stdout
    assert "demo finished" in result.stdout
    assert (tmp_path / "demo-data" / "data" / "indexes" / "docs-new").is_dir()
