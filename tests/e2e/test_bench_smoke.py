"""`switchyard bench --quick` end to end: every section runs and reports sane, non-zero figures.

No timing thresholds: this proves the benchmark works, not how fast anything is. The pgvector section needs
PostgreSQL with pgvector, found as the bench finds it (PGVECTOR_DSN, else scripts/ensure-pgvector.sh).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.bench.pg_server import find_server
from proxy.cli.main import main

HEADINGS = (
    "## 1. Proxy overhead",
    "## 2. Fan-out",
    "## 3. Backfill",
    "## 4. Recall@10",
    "## 5. Storage",
    "## 6. Scale",
    "## 7. Collections",
    "## 8. pgvector",
    "## 9. Remote embedding",
    "## 10. Adopted pgvector table",
    "## 11. Milvus",
)
AGREED_KEYS = (
    "embed_docs_per_s",
    "index_insert_docs_per_s",
    "query_p50_ms",
    "query_p99_ms",
    "dual_p50_ms",
    "backfill_docs_per_s",
)


@pytest.fixture(scope="module")
def bench_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    argv = ["--log-level", "WARNING", "bench", "--quick", "--real-model", "none"]
    assert main([*argv, "--out-dir", str(out), "--workdir", str(out / "work")]) == 0
    return (out / "BENCHMARKS.md").read_text(), json.loads((out / "BENCHMARKS.json").read_text())


def test_report_has_every_section_and_the_command(bench_output: tuple[str, dict[str, Any]]) -> None:
    report, _ = bench_output
    for heading in HEADINGS:
        assert heading in report
    assert "Failed in this run" not in report
    assert "`switchyard bench --quick --real-model none`" in report
    assert "Python 3." in report and "cores" in report


def test_json_has_the_agreed_figures_all_positive(bench_output: tuple[str, dict[str, Any]]) -> None:
    _, data = bench_output
    for key in AGREED_KEYS:
        assert data[key] is not None and data[key] > 0, key
    assert data["run"]["errors"] == {}


def test_every_section_measured_something(bench_output: tuple[str, dict[str, Any]]) -> None:
    run = bench_output[1]["run"]
    for row in run["overhead"]["rows"]:
        assert row["baseline"]["count"] > 0 and row["sidecar"]["count"] > 0
        assert row["baseline"]["errors"] == row["sidecar"]["errors"] == 0
    for row in run["fanout"]["rows"]:
        assert min(row[leg]["count"] for leg in ("old", "new", "dual")) > 0
    hashing = run["backfill"]["variants"][0]
    assert hashing["throughput"]["backfill_docs_per_s"] > 0 and hashing["throttled"]["busy"]["count"] > 0
    assert all(0.0 <= r <= 1.0 for row in run["recall"]["rows"] for r in row["recall"].values())
    keep_old = run["storage"]["rows"][0]
    assert keep_old["policy"] == "keep_old" and keep_old["peak_bytes"] > keep_old["one_copy_bytes"] > 0
    for row in run["scale"]["rows"]:
        assert row["single"]["count"] > 0 and row["dual"]["count"] > 0
        assert row["insert_docs_per_s"] > 0 and row["backfill_docs_per_s"] > 0
    collections = run["collections"]
    assert collections["idle_docs"] > 0 and collections["idle_phase"] == "planned"
    assert [row["concurrency"] for row in collections["rows"]] == [1, 8]
    for row in collections["rows"]:
        assert row["one"]["count"] > 0 and row["two"]["count"] > 0
        assert row["one"]["errors"] == row["two"]["errors"] == 0
        assert row["p50_ratio"] > 0 and row["passed"] in (True, False)
    assert all(mib > 0 for mib in collections["rss_mib"])


def test_collections_section_reports_the_ratio_against_its_target(
    bench_output: tuple[str, dict[str, Any]],
) -> None:
    report, data = bench_output
    for c in (1, 8):
        assert data[f"collections_p50_ratio_c{c}"] > 0
        assert data[f"collections_one_p50_ms_c{c}"] > 0 and data[f"collections_two_p50_ms_c{c}"] > 0
    section = report.split("## 7. Collections", 1)[1].split("\n## ", 1)[0]
    for c in (1, 8):
        assert re.search(
            rf"- target: p50 ratio <= 1\.05 at {c} client\(s\): [0-9.]+, (pass|\*\*miss\*\*)", section
        )
    assert "`switchyard bench --sections collections`" in section
    assert "Collections: two (one idle) / one, p50, 8 client(s)" in report


def test_pgvector_section_measured_both_paths_and_every_write_method(
    bench_output: tuple[str, dict[str, Any]],
) -> None:
    pg = bench_output[1]["run"]["pgvector"]
    query = pg["query"]
    # Both paths ran the same search: otherwise their latencies compare nothing.
    assert query["identical_hits"] == query["checked_queries"] > 0
    assert [row["concurrency"] for row in query["rows"]] == [1, 8]
    for row in query["rows"]:
        for side in ("direct", "sidecar"):
            assert row[side]["count"] > 0 and row[side]["errors"] == 0, side
        assert row["sidecar_cpu"]["sidecar_ms"] > 0 and row["direct_cpu"]["sidecar_ms"] == 0
        assert row["direct_cpu"]["total_ms"] > 0 and row["ceiling_ratio"] > 0
    # The backends' CPU is read from /proc, so it is measured exactly when they are processes visible here (a
    # server in another PID namespace, as a CI container may see one, answers on loopback all the same).
    visible = _backend_visible_here(find_server().dsn)
    assert "dsn" not in pg["server"]  # it may hold a password; `where` is masked
    assert pg["server"]["cpu_measured"] is visible
    for row in query["rows"]:
        assert (row["sidecar_cpu"]["db_ms"] > 0) is visible and (row["direct_cpu"]["db_ms"] > 0) is visible
    methods = {m["name"]: m for m in pg["writes"]["methods"]}
    assert set(methods) == {"sidecar", "executemany", "copy"}
    assert all(m["rows"] > 0 and m["rows_per_s"] > 0 for m in methods.values())
    backfill = pg["backfill"]
    assert backfill["backfill_docs_per_s"] > 0 and backfill["embed_docs_per_s"] > 0
    assert backfill["write_method"] in ("executemany", "copy")


def test_embed_concurrency_section_moved_every_document_once_at_each_concurrency(
    bench_output: tuple[str, dict[str, Any]],
) -> None:
    report, data = bench_output
    section = data["run"]["embed_concurrency"]
    assert [row["concurrency"] for row in section["rows"]] == [1, 4, 16]
    for row in section["rows"]:
        assert row["embedded_once"] and row["peak_in_flight"] == row["concurrency"]
        assert row["docs_per_s"] > 0 and row["passed"] in (True, False)
        assert data[f"remote_backfill_ratio_c{row['concurrency']}"] > 0
    assert [limit["headers"] for limit in section["rate_limits"]] == [True, False]
    for limit in section["rate_limits"]:
        assert limit["embedded_once"] and limit["complete_windows"] >= 1 and limit["steady_rpm"] > 0
    assert section["rate_limits"][1]["throttled"] > 0  # without the headers only 429s tell the client
    assert "Rate-limited backfill: steady requests/min / limit (429 + Retry-After only)" in report


def _backend_visible_here(dsn: str) -> bool:
    # Read while the connection is open: its backend process ends with it.
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        comm = Path(f"/proc/{row[0]}/comm")
        return comm.exists() and comm.read_text().startswith("postgres")


def test_pgvector_section_reports_each_target_with_its_arithmetic(
    bench_output: tuple[str, dict[str, Any]],
) -> None:
    report, data = bench_output
    ratios = ("p50_ratio_c1", "qps_ratio_c8", "write_ratio", "backfill_ratio")
    for key in (f"pgvector_{name}" for name in ratios):
        assert data[key] is not None and data[key] > 0, key
    section = report.split("## 8. pgvector", 1)[1].split("\n## ", 1)[0]
    verdicts = re.findall(r"^- target: .* ([<>]= [0-9.]+): [0-9.]+, (pass|\*\*miss\*\*)\.", section, re.M)
    assert [goal for goal, _ in verdicts] == ["<= 1.3", ">= 0.6", ">= 0.9", ">= 0.9"]
    assert "a ceiling of" in section and "ms/row" in section and "ms/doc" in section
    assert "pgvector QPS, sidecar / direct SQL, 8 clients" in report.split("## 1.", 1)[0]


def test_adopt_section_measured_every_figure_and_converged(bench_output: tuple[str, dict[str, Any]]) -> None:
    report, data = bench_output
    adopt = data["run"]["adopt"]
    assert "dsn" not in adopt["server"]
    [run] = adopt["runs"]  # --real-model none: the hashing run alone
    assert run["name"] == "hashing" and run["rows"] > 0
    for key in (
        "backfill_docs_per_s",
        "embed_docs_per_s",
        "progress_docs_per_s",
        "ratio",
        "full_insert_ratio",
    ):
        assert run[key] > 0, key
    for key in ("bulk_rows_per_s", "insert_rows_per_s", "full_insert_rows_per_s"):
        assert run["bulk"][key] > 0, key
    # Converged: every row of the application's table has its new vector, nothing left behind or pending.
    assert run["app_rows"] == run["side_rows"] > 0
    assert run["rows_behind"] == 0 and run["direct_writes_pending"] == 0
    storage = run["storage"]
    assert storage["peak_bytes"] > storage["baseline_bytes"] > 0 and storage["peak_ratio"] > 1
    assert min(storage["side_bytes"], storage["changes_bytes"], storage["retired_bytes"]) > 0
    alternative = run["alternative"]
    assert alternative["rows"] == run["rows"] and alternative["peak_ratio"] > 1
    assert alternative["update_s"] > 0 and alternative["index_s"] > 0
    writer = run["writer"]
    for window in ("before", "adopted_idle", "during"):
        assert writer[window]["count"] > 0 and writer[window]["errors"] == 0, window
        assert writer[window]["p50_ms"] > 0, window
    counts = writer["counts"]
    assert counts["failed"] == 0 and min(counts["inserted"], counts["updated"], counts["deleted"]) > 0
    assert {step["phase"] for step in run["ddl"]} == {"adopt", "side table", "retire"}
    assert all(step["ms"] > 0 for step in run["ddl"])
    for key in ("backfill_docs_per_s", "embed_docs_per_s", "db_bulk_rows_per_s", "peak_storage_ratio"):
        assert data[f"adopt_{key}_hashing"] > 0, key
    assert data["adopt_new_column_peak_storage_ratio_hashing"] > 0
    section = report.split("## 10. Adopted pgvector table", 1)[1].split("\n## ", 1)[0]
    assert "`switchyard bench --sections adopt`" in section and "The figures support **" in section


def test_milvus_section_measured_both_paths_writes_and_backfill(
    bench_output: tuple[str, dict[str, Any]],
) -> None:
    _, data = bench_output
    figures = data
    for c in (1, 4):
        for side in ("direct", "sidecar"):
            assert figures[f"milvus_{side}_p50_ms_c{c}"] > 0
            assert figures[f"milvus_{side}_qps_c{c}"] > 0
    assert figures["milvus_write_rows_per_s_direct"] > 0
    assert figures["milvus_write_rows_per_s_sidecar"] > 0
    assert figures["milvus_backfill_docs_per_s"] > 0
