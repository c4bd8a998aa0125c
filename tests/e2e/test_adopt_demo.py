"""`switchyard demo --adopt-pgvector` end to end: an application's own table, real models, direct writes
throughout, adopted, backfilled, validated, cut over and retired in place.

Needs PostgreSQL with pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh) and the models extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.contract.conftest import PGVECTOR_DSN


def test_the_adoption_demo_migrates_an_application_table_in_place(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "demo",
            "--adopt-pgvector",
            "--docs",
            "200",
            "--data-dir",
            "demo",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PGVECTOR_DSN": PGVECTOR_DSN},
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "sample check    32 rows re-embedded with minilm" in out and ": ok" in out
    assert "Dry run: nothing was changed" in out
    writes = re.search(r"wrote directly meanwhile: (\d+) inserts, (\d+) edits, (\d+) deletes", out)
    assert writes is not None and sum(int(n) for n in writes.groups()) > 0
    assert "direct writes waiting for their new vector: 0" in out
    assert "result: PASS" in out and "phase -> cut_over" in out and "phase -> old_retired" in out
    # Served by the new model's side table after cut-over; the old vector column is gone from the table.
    assert re.search(r"\[e5-small\]", out.split("phase -> cut_over", 1)[1])
    assert "demo_articles columns now: id, title, body, topic, updated_at\n" in out
    assert "demo finished" in out
    assert (tmp_path / "demo" / "adopted.yaml").is_file()
