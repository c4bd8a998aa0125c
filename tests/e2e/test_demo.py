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
    assert "phase after restart: old_retired (docs), backfilling (tickets)" in result.stdout
    assert "demo finished" in result.stdout
    assert (tmp_path / "demo-data" / "data" / "indexes" / "docs-new").is_dir()
    _assert_collections_move_independently(result.stdout)


def _assert_collections_move_independently(stdout: str) -> None:
    """When docs cuts over, tickets (same sidecar, slower backfill) is still backfilling on its old index;
    after the restart its backfill resumes and completes, while it keeps serving from that old index."""
    at_cut_over = _table_after(stdout, "== docs is cut over while tickets")
    assert at_cut_over["docs"][:3] == ["*", "docs-new", "docs-old"] and "cut_over" in at_cut_over["docs"]
    assert at_cut_over["tickets"][0] == "tickets-old" and "backfilling" in at_cut_over["tickets"]
    at_the_end = _table_after(stdout, "tickets: backfill rate limit lifted")
    assert at_the_end["docs"][-3:] == ["old_retired", "100.0%", "301/301"]
    assert at_the_end["tickets"][0] == "tickets-old" and at_the_end["tickets"][-3:] == [
        "backfilling",
        "100.0%",
        "150/150",
    ]


def _table_after(stdout: str, marker: str) -> dict[str, list[str]]:
    """The first `migrate collections` table after `marker`: collection name -> the row's other cells."""
    lines = stdout[stdout.index(marker) :].splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("collection  default"))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.startswith(("docs ", "tickets ")):
            break
        name, *cells = line.split()
        rows[name] = cells
    return rows
