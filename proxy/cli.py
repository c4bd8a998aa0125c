"""The `switchyard` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from proxy.config import load_config
from proxy.errors import ConfigError


def _serve(args: argparse.Namespace) -> int:
    from proxy.server import serve

    path = Path(args.config)
    asyncio.run(serve(load_config(path), config_path=path))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(Path(args.data_dir), docs=args.docs, port=args.port)


def _admin(args: argparse.Namespace) -> int:
    from proxy.admin_cli import run_admin

    return run_admin(args)


def _add_migrate(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    migrate = commands.add_parser("migrate", help="drive the migration of a running sidecar")
    migrate.add_argument("--target", default="127.0.0.1:50051", help="sidecar address (host:port)")
    actions = migrate.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="phase, backfill progress, coverage, split")
    status.add_argument("--watch", action="store_true", help="live progress bar until the backfill completes")
    status.add_argument("--interval", type=float, default=0.5, help="seconds between refreshes with --watch")
    actions.add_parser("start", help="start the backfill (dual writes begin)")
    actions.add_parser("pause", help="pause the backfill")
    actions.add_parser("resume", help="resume after a pause")
    rate = actions.add_parser("set-rate", help="backfill rate limit in docs/s (0: unlimited)")
    rate.add_argument("docs_per_second", type=float)
    split = actions.add_parser("split", help="percent of routing keys on the new path")
    split.add_argument("percent", type=float)
    move = actions.add_parser("transition", help="move to a phase: validated, shifting, cut_over, ...")
    move.add_argument("phase")
    move.add_argument(
        "--force", action="store_true", help="skip the checks (e.g. cut over without full coverage)"
    )
    move.add_argument("--reason", default="", help="recorded in the migration history")
    migrate.set_defaults(func=_admin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the sidecar gRPC server")
    serve.add_argument("--config", required=True, help="path to switchyard.yaml")
    serve.set_defaults(func=_serve)

    demo = commands.add_parser("demo", help="run a complete demo on the embedded hnswlib backend")
    demo.add_argument(
        "--data-dir", default="demo-data", help="where the demo keeps its indexes (wiped first)"
    )
    demo.add_argument("--docs", type=int, default=2000, help="corpus size")
    demo.add_argument("--port", type=int, default=0, help="port for the demo server (0: pick a free one)")
    demo.set_defaults(func=_demo)
    _add_migrate(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"switchyard: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
