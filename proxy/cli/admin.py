"""`switchyard migrate ...`: operator commands against a running sidecar's Admin service."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import grpc

from proxy._gen.switchyard.v1 import admin_service_pb2 as pb
from proxy.cli.client import SwitchyardClient
from proxy.cli.progress import progress_line, status_report
from proxy.migration.validation import load_golden_set


def watch(
    client: SwitchyardClient, interval_s: float, out: TextIO = sys.stdout
) -> pb.GetMigrationStatusResponse:
    """Redraws the progress line until the backfill completes (or leaves the backfilling phases).

    On a terminal the line is redrawn in place; in a log (not a TTY) a line is written per 10% of progress.
    """
    in_place = out.isatty()
    printed_tenths = -1
    while True:
        status = client.status()
        finished = status.backfill.complete or status.phase in ("planned", "old_retired", "rolled_back")
        tenths = int(10 * status.backfill.done / status.backfill.total) if status.backfill.total else 10
        if in_place:
            out.write("\r" + progress_line(status) + "\x1b[K" + ("\n" if finished else ""))
        elif tenths > printed_tenths or finished:
            out.write(progress_line(status) + "\n")
            printed_tenths = tenths
        out.flush()
        if finished:
            return status
        time.sleep(interval_s)


def _validate(client: SwitchyardClient, golden_path: str | None, json_out: str | None) -> str:
    golden = []
    if golden_path:
        for query in load_golden_set(Path(golden_path)):
            golden.append(pb.GoldenQuery(query=query.text, relevant=query.gains))
    request = pb.ValidateMigrationRequest(golden=golden)
    # The generated stub is untyped; ValidateMigration answers with a ValidateMigrationResponse.
    response: pb.ValidateMigrationResponse = client.admin.ValidateMigration(request, timeout=300)
    if json_out:
        Path(json_out).write_text(response.report_json)
    return response.report_text + (f"\nreport written to {json_out}" if json_out else "")


def run_admin(args: argparse.Namespace) -> int:
    token = os.environ.get(args.token_env) or None
    tls_ca = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    with SwitchyardClient(args.target, timeout_s=10.0, token=token, tls_ca=tls_ca) as client:
        try:
            print(_run(client, args))
        except grpc.RpcError as exc:
            print(f"switchyard: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def _run(client: SwitchyardClient, args: argparse.Namespace) -> str:
    admin = client.admin
    match args.action:
        case "status" if args.watch:
            return status_report(watch(client, args.interval))
        case "status":
            return status_report(client.status())
        case "start":
            return f"phase: {admin.StartMigration(pb.StartMigrationRequest()).phase}"
        case "pause":
            return f"phase: {admin.PauseMigration(pb.PauseMigrationRequest()).phase}"
        case "resume":
            return f"phase: {admin.ResumeMigration(pb.ResumeMigrationRequest()).phase}"
        case "set-rate":
            rate = admin.SetBackfillRate(pb.SetBackfillRateRequest(docs_per_second=args.docs_per_second))
            return f"backfill rate limit: {rate.docs_per_second:g} docs/s"
        case "split":
            split = admin.SetTrafficSplit(pb.SetTrafficSplitRequest(percent=args.percent))
            return f"traffic split: {split.percent:g}% on the new path"
        case "validate":
            return _validate(client, args.golden, args.json_out)
        case "promote":
            promoted = admin.PromoteMigration(pb.PromoteMigrationRequest(reason=args.reason))
            return f"phase: {promoted.phase}, traffic split: {promoted.percent:g}% on the new path"
        case "rollback":
            rolled = admin.RollbackMigration(
                pb.RollbackMigrationRequest(reason=args.reason, force=args.force)
            )
            return f"phase: {rolled.phase}; all traffic on the old index"
        case "cutover":
            request = pb.TransitionMigrationRequest(to_phase="cut_over", force=args.force, reason="cutover")
            return f"phase: {admin.TransitionMigration(request).phase}"
        case "retire":
            request = pb.TransitionMigrationRequest(to_phase="old_retired", reason="retired by operator")
            return f"phase: {admin.TransitionMigration(request).phase}; the old index is being dropped"
        case "transition":
            request = pb.TransitionMigrationRequest(to_phase=args.phase, force=args.force, reason=args.reason)
            return f"phase: {admin.TransitionMigration(request).phase}"
    raise AssertionError(f"unhandled action {args.action}")
