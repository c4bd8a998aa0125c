#!/usr/bin/env python3
"""Formats the figures the reliability suite (tests/reliability) wrote during its last run.

    .venv/bin/pytest tests/reliability && scripts/reliability-report.py [results.json]

The file defaults to $SWITCHYARD_RELIABILITY_RESULTS, else <tmp>/switchyard-reliability/results.json.
Standalone on purpose: the suite's pytest hook loads `format_report` from this file too.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

Results = dict[str, Any]


def default_path() -> Path:
    fallback = Path(tempfile.gettempdir()) / "switchyard-reliability" / "results.json"
    return Path(os.environ.get("SWITCHYARD_RELIABILITY_RESULTS", fallback))


def format_report(results: Results) -> str:
    lines = [f"Switchyard reliability run ({results.get('updated_at', 'time unknown')})", ""]
    for section in (_sigkill, _sigkill_remote, _redis, _legs, _load, _fuzz, _totals):
        lines += section(results)
    return "\n".join(lines)


def _sigkill(results: Results) -> list[str]:
    runs = results.get("sigkill", {})
    if not runs:
        return []
    lines = ["SIGKILL during dual writes and backfill"]
    for name, r in sorted(runs.items()):
        lines.append(
            f"  {name}: {r['kills']} kills at backfill {_progress(r['backfill_done_at_kills'])}; "
            f"{r['acknowledged_writes']} acknowledged writes, {r['cut_off_writes']} cut off; "
            f"{r['ids_checked']} ids checked; lost or wrong {r['lost_or_wrong']}; "
            f"consistent {r['consistent_after_s']} s after the backfill completed"
        )
    return [*lines, ""]


def _sigkill_remote(results: Results) -> list[str]:
    runs = results.get("sigkill_remote", {})
    if not runs:
        return []
    lines = ["SIGKILL with remote embedding requests in flight"]
    for name, r in sorted(runs.items()):
        lines.append(
            f"  {name}: {r['kills']} kills at backfill {_progress(r['backfill_done_at_kills'])}; "
            f"{r['embedding_requests']} embedding requests; {r['live_documents']} documents checked; "
            f"lost or wrong {r['lost_or_wrong']}"
        )
    return [*lines, ""]


def _progress(points: list[list[int]]) -> str:
    return ", ".join(f"{done}/{total}" for done, total in points)


def _redis(results: Results) -> list[str]:
    runs = results.get("redis_outage", {})
    if not runs:
        return []
    lines = ["Redis outage (private redis-server, restarted empty)"]
    for name, r in sorted(runs.items()):
        lines.append(
            f"  {name}: down {r['outage_s']} s; {r['queries_during_outage']} queries answered meanwhile, "
            f"{r['query_errors_during_outage']} errors; {r['writes_refused_unavailable']} writes refused "
            f"UNAVAILABLE; state restored ({r['restored_phase']}) within {r['restored_within_s']} s; "
            f"{r['acknowledged_writes']} acknowledged writes, lost or wrong {r['lost_or_wrong']}"
        )
    return [*lines, ""]


def _legs(results: Results) -> list[str]:
    runs = results.get("leg_faults", {})
    if not runs:
        return []
    lines = ["Index leg faults (in process, 8 concurrent callers, 200 ms leg deadline)"]
    for name, r in sorted(runs.items()):
        if "queries" in r:
            lines.append(
                f"  {name}: {r['queries']} queries, {r['errors']} errors, {r['degraded']} flagged degraded, "
                f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms"
            )
        else:
            lines.append(
                f"  {name}: target down {r['fault_s']} s, {r['failed_target_writes']} failed writes, "
                f"{r['worker_retries_logged']} worker retries logged, {r['dual_writes_refused']} dual writes "
                f"refused; {r['documents_checked']} documents checked, lost {r['lost']}"
            )
    return [*lines, ""]


def _load(results: Results) -> list[str]:
    runs = results.get("load", {})
    if not runs:
        return []
    lines = ["Load during the backfill (real gRPC, one sidecar process)"]
    for name, r in sorted(runs.items()):
        lines.append(
            f"  {name}: {r['clients']} clients for {r['duration_s']} s; {r['queries']} queries "
            f"({r['queries_per_s']}/s), p50 {r['query_p50_ms']} ms, p99 {r['query_p99_ms']} ms, "
            f"max {r['query_max_ms']} ms; {r['acknowledged_writes']} acknowledged writes "
            f"(at most {r['pending_repairs_max']} awaiting their second index); "
            f"errors {r['errors']}; lost or wrong {r['lost_or_wrong']}"
        )
    return [*lines, ""]


def _fuzz(results: Results) -> list[str]:
    fuzz = results.get("fuzz", {})
    if not fuzz:
        return []
    lines = ["Fuzzing"]
    grpc_calls = fuzz.get("grpc")
    if grpc_calls:
        per_rpc = "; ".join(
            f"{rpc} " + ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
            for rpc, codes in sorted(grpc_calls.items())
            if isinstance(codes, dict)
        )
        lines.append(f"  gRPC: {grpc_calls['calls']} calls ({per_rpc})")
    config = fuzz.get("config")
    if config:
        lines.append(
            f"  config: {config['config_error']} rejected with a ConfigError, {config['valid']} valid"
        )
    return [*lines, ""]


def _totals(results: Results) -> list[str]:
    kills = sum(
        r["kills"] for section in ("sigkill", "sigkill_remote") for r in results.get(section, {}).values()
    )
    outages = sum(r["outages"] for r in results.get("redis_outage", {}).values())
    legs = len(results.get("leg_faults", {}))
    writes = sum(
        r.get("acknowledged_writes", 0)
        for section in ("sigkill", "redis_outage", "load")
        for r in results.get(section, {}).values()
    )
    lost = sum(
        r.get("lost_or_wrong", r.get("lost", 0))
        for section in ("sigkill", "sigkill_remote", "redis_outage", "leg_faults", "load")
        for r in results.get(section, {}).values()
    )
    return [
        f"Totals: {kills} SIGKILLs, {outages} Redis outages, {legs} index leg faults; "
        f"{writes} acknowledged writes checked; lost or wrong {lost}"
    ]


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else default_path()
    if not path.exists():
        print(f"no results at {path}: run .venv/bin/pytest tests/reliability first", file=sys.stderr)
        return 1
    print(format_report(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
