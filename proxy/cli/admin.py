"""`switchyard migrate ...`: operator commands against a running sidecar's Admin service."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

import grpc

from proxy._gen.switchyard.v1 import admin_service_pb2 as pb
from proxy.cli.client import SwitchyardClient
from proxy.cli.progress import (
    backfill_finished,
    collection_lines,
    collections_table,
    progress_line,
    progress_tenths,
    redraw,
    status_report,
)
from proxy.migration.validation import load_golden_set


def watch(
    client: SwitchyardClient, interval_s: float, out: TextIO = sys.stdout
) -> pb.GetMigrationStatusResponse:
    """Redraws the progress line of the client's collection until its backfill completes (or leaves the
    backfilling phases).

    On a terminal the line is redrawn in place; in a log (not a TTY) a line is written per 10% of progress.
    """
    in_place = out.isatty()
    printed_tenths = -1
    while True:
        status = client.status()
        finished = backfill_finished(status)
        tenths = progress_tenths(status)
        if in_place:
            out.write("\r" + progress_line(status) + "\x1b[K" + ("\n" if finished else ""))
        elif tenths > printed_tenths or finished:
            out.write(progress_line(status) + "\n")
            printed_tenths = tenths
        out.flush()
        if finished:
            return status
        time.sleep(interval_s)


def watch_all(
    client: SwitchyardClient, interval_s: float, out: TextIO = sys.stdout
) -> list[pb.CollectionSummary]:
    """`watch` for every collection of the sidecar, one line each, until every backfill is complete.

    On a terminal the block of lines is redrawn in place; in a log a collection's line is written per 10% of
    its progress (and once when it finishes). Returns the collections as they stand at the end.
    """
    migrating = {c.name: bool(c.old_index) for c in client.collections()}
    in_place = out.isatty()
    printed: dict[str, tuple[int, bool]] = {}
    drawn = 0
    while True:
        statuses = {
            name: client.status(collection=name) if has_migration else None
            for name, has_migration in migrating.items()
        }
        lines = collection_lines(statuses)
        if in_place:
            out.write(redraw(lines, drawn, shutil.get_terminal_size().columns))
            drawn = len(lines)
        for (name, status), line in zip(statuses.items(), lines, strict=True):
            mark = (10, True) if status is None else (progress_tenths(status), backfill_finished(status))
            if not in_place and printed.get(name) != mark:
                out.write(line + "\n")
            printed[name] = mark
        out.flush()
        if all(finished for _, finished in printed.values()):
            return client.collections()
        time.sleep(interval_s)


def _validate(client: SwitchyardClient, golden_path: str | None, json_out: str | None) -> str:
    golden = []
    if golden_path:
        for query in load_golden_set(Path(golden_path)):
            golden.append(pb.GoldenQuery(query=query.text, relevant=query.gains))
    request = pb.ValidateMigrationRequest(golden=golden, collection=client.collection)
    # The generated stub is untyped; ValidateMigration answers with a ValidateMigrationResponse.
    response: pb.ValidateMigrationResponse = client.admin.ValidateMigration(request, timeout=300)
    if json_out:
        Path(json_out).write_text(response.report_json)
    return response.report_text + (f"\nreport written to {json_out}" if json_out else "")


def run_admin(args: argparse.Namespace) -> int:
    token = os.environ.get(args.token_env) or None
    tls_ca = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    client = SwitchyardClient(
        args.target, timeout_s=10.0, token=token, tls_ca=tls_ca, collection=args.collection
    )
    with client:
        try:
            print(_run(client, args))
        except grpc.RpcError as exc:
            print(f"switchyard: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def _watch(client: SwitchyardClient, interval_s: float) -> str:
    """Without `--collection`, a sidecar with several collections is watched whole: the operator asked about
    the sidecar, not about whichever collection happens to be its default."""
    if not client.collection and len(client.collections()) > 1:
        return collections_table(watch_all(client, interval_s))
    return status_report(watch(client, interval_s))


def _run(client: SwitchyardClient, args: argparse.Namespace) -> str:
    admin = client.admin
    name = client.collection
    match args.action:
        case "collections":
            return collections_table(client.collections())
        case "status" if args.watch:
            return _watch(client, args.interval)
        case "status":
            return status_report(client.status())
        case "start":
            return f"phase: {admin.StartMigration(pb.StartMigrationRequest(collection=name)).phase}"
        case "pause":
            return f"phase: {admin.PauseMigration(pb.PauseMigrationRequest(collection=name)).phase}"
        case "resume":
            return f"phase: {admin.ResumeMigration(pb.ResumeMigrationRequest(collection=name)).phase}"
        case "set-rate":
            request = pb.SetBackfillRateRequest(docs_per_second=args.docs_per_second, collection=name)
            return f"backfill rate limit: {admin.SetBackfillRate(request).docs_per_second:g} docs/s"
        case "split":
            split = admin.SetTrafficSplit(pb.SetTrafficSplitRequest(percent=args.percent, collection=name))
            return f"traffic split: {split.percent:g}% on the new path"
        case "validate":
            return _validate(client, args.golden, args.json_out)
        case "promote":
            promoted = admin.PromoteMigration(pb.PromoteMigrationRequest(reason=args.reason, collection=name))
            return f"phase: {promoted.phase}, traffic split: {promoted.percent:g}% on the new path"
        case "rollback":
            rolled = admin.RollbackMigration(
                pb.RollbackMigrationRequest(reason=args.reason, force=args.force, collection=name)
            )
            return f"phase: {rolled.phase}; all traffic on the old index"
        case "cutover":
            return f"phase: {_transition(client, 'cut_over', args.force, 'cutover')}"
        case "retire":
            phase = _transition(client, "old_retired", False, "retired by operator")
            return f"phase: {phase}; the old index is being dropped"
        case "transition":
            return f"phase: {_transition(client, args.phase, args.force, args.reason)}"
    raise AssertionError(f"unhandled action {args.action}")


def _transition(client: SwitchyardClient, phase: str, force: bool, reason: str) -> str:
    request = pb.TransitionMigrationRequest(
        to_phase=phase, force=force, reason=reason, collection=client.collection
    )
    response: pb.TransitionMigrationResponse = client.admin.TransitionMigration(request)
    return response.phase
