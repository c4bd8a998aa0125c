"""The `switchyard` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from proxy.app.config import load_config
from proxy.cli.adopt import add_adopt_parser
from proxy.core.errors import ConfigError, Unavailable
from proxy.migration.retirement import StoragePolicy

DEFAULT_DEMO_DOCS = 2000


def _serve(args: argparse.Namespace) -> int:
    from proxy.app.server import serve

    path = Path(args.config)
    asyncio.run(serve(load_config(path), config_path=path))
    return 0


def _adopt_demo(args: argparse.Namespace) -> int:
    from proxy.demo.adopt import run_adopt_demo

    dsn = args.dsn or os.environ.get("PGVECTOR_DSN")
    if not dsn:
        print(
            "switchyard demo --adopt-pgvector needs PostgreSQL with pgvector: pass --dsn or set PGVECTOR_DSN"
            " (scripts/demo.sh --adopt-pgvector starts a local one)",
            file=sys.stderr,
        )
        return 2
    docs = 400 if args.docs == DEFAULT_DEMO_DOCS else args.docs
    return run_adopt_demo(Path(args.data_dir), dsn, docs=docs)


def _demo(args: argparse.Namespace) -> int:
    if args.adopt_pgvector:
        return _adopt_demo(args)
    from proxy.demo.run import run_demo

    return run_demo(Path(args.data_dir), docs=args.docs, port=args.port, real_models=args.real_models)


def _admin(args: argparse.Namespace) -> int:
    from proxy.cli.admin import run_admin

    return run_admin(args)


def _add_migrate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = commands.add_parser("migrate", help="drive the migration of a running sidecar")
    migrate.add_argument(
        "--target", default="127.0.0.1:50051", help="sidecar (or its admin_listen) host:port"
    )
    migrate.add_argument(
        "--token-env",
        default="SWITCHYARD_ADMIN_TOKEN",
        help="environment variable holding the admin bearer token (used when set)",
    )
    migrate.add_argument(
        "--tls-ca", help="PEM file of the CA that signed the sidecar's certificate (enables TLS)"
    )
    migrate.add_argument(
        "--collection",
        default="",
        help="the collection to act on (default: the sidecar's default collection)",
    )
    actions = migrate.add_subparsers(dest="action", required=True)
    actions.add_parser("collections", help="the sidecar's collections: indexes, phase, coverage, backfill")
    status = actions.add_parser("status", help="phase, backfill progress, coverage, split")
    status.add_argument(
        "--watch",
        action="store_true",
        help="live progress bar until the backfill completes (without --collection on a sidecar with "
        "several collections: one line per collection until every backfill completes)",
    )
    status.add_argument("--interval", type=float, default=0.5, help="seconds between refreshes with --watch")
    actions.add_parser("start", help="start the backfill (dual writes begin)")
    actions.add_parser("pause", help="pause the backfill")
    actions.add_parser("resume", help="resume after a pause")
    rate = actions.add_parser("set-rate", help="backfill rate limit in docs/s (0: unlimited)")
    rate.add_argument("docs_per_second", type=float)
    split = actions.add_parser("split", help="percent of routing keys on the new path")
    split.add_argument("percent", type=float)
    validate = actions.add_parser("validate", help="compare the new index with the old one and exact search")
    validate.add_argument("--golden", help='JSON Lines golden set: {"query": ..., "relevant": [ids]}')
    validate.add_argument("--json", dest="json_out", help="also write the report as JSON to this file")
    promote = actions.add_parser("promote", help="move traffic to the next promotion step")
    promote.add_argument("--reason", default="", help="recorded in the promotion events")
    rollback = actions.add_parser("rollback", help="send all traffic back to the old index")
    rollback.add_argument("--reason", default="", help="recorded in the migration history")
    rollback.add_argument("--force", action="store_true", help="even after documents were retired")
    cutover = actions.add_parser("cutover", help="make the new index the source of truth")
    cutover.add_argument("--force", action="store_true", help="without full coverage or a passing report")
    actions.add_parser("retire", help="after cut-over: drop the old index and reclaim its space")
    move = actions.add_parser("transition", help="move to a phase: validated, shifting, cut_over, ...")
    move.add_argument("phase")
    move.add_argument(
        "--force", action="store_true", help="skip the checks (e.g. cut over without full coverage)"
    )
    move.add_argument("--reason", default="", help="recorded in the migration history")
    migrate.set_defaults(func=_admin)


def _add_plan(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def run(args: argparse.Namespace) -> int:
        from proxy.planning.cli import run_plan_command

        return run_plan_command(args)

    plan = commands.add_parser(
        "plan", help="estimate time, storage, cost and quality of a migration; recommend a strategy"
    )
    plan.add_argument("--docs", type=int, required=True, help="corpus size (documents)")
    plan.add_argument("--dim", type=int, required=True, help="the new model's vector dimension")
    plan.add_argument("--old-dim", type=int, help="the old model's dimension (default: --dim)")
    plan.add_argument("--write-rate", type=float, default=0.0, help="documents written per second")
    plan.add_argument("--qps", type=float, default=0.0, help="queries per second")
    plan.add_argument("--latency-budget-ms", type=float, default=50.0, help="query p99 to protect")
    measured = plan.add_mutually_exclusive_group()
    measured.add_argument("--embed-rate", type=float, help="new-model embedding throughput, docs/s (batched)")
    measured.add_argument("--from-bench", help="benchmark results JSON (schema: proxy/planning/inputs.py)")
    plan.add_argument("--insert-rate", type=float, help="index insert throughput, docs/s")
    remote = plan.add_argument_group("a remote embedding API (its limits set the embedding rate)")
    remote.add_argument("--embed-concurrency", type=int, help="requests in flight (models.*.max_concurrency)")
    remote.add_argument("--rtt-ms", type=float, help="one batch's round trip, ms (required with these flags)")
    remote.add_argument(
        "--embed-batch", type=int, default=64, help="inputs per request (models.*.batch_size)"
    )
    remote.add_argument("--rpm", type=float, help="the account's requests per minute for the model")
    remote.add_argument("--tpm", type=float, help="the account's tokens per minute for the model")
    plan.add_argument("--price-per-1m-tokens", type=float, default=0.02, help="embedding price, $")
    plan.add_argument("--tokens-per-doc", type=float, default=200.0)
    plan.add_argument("--tokens-per-query", type=float, default=16.0)
    plan.add_argument("--zipf", type=float, default=1.1, help="access skew: Zipf exponent of query hits")
    plan.add_argument("--hits-per-query", type=int, default=10, help="documents a query touches (k)")
    plan.add_argument(
        "--storage-policy", choices=[p.value for p in StoragePolicy], default=StoragePolicy.KEEP_OLD.value
    )
    plan.add_argument("--backfill-rate-limit", type=float, default=0.0, help="docs/s (0: unlimited)")
    plan.add_argument("--recall-curve", help="coverage:recall pairs, e.g. 0:0.66,0.5:0.78,1:1")
    plan.add_argument(
        "--recall-strategy",
        default="calibrated",
        help="which measured recall curve --from-bench takes: a merge (calibrated, minmax, rrf, zscore) or "
        "candidate re-ranking (\"re-rank k'=50\", also k'=10 and k'=200)",
    )
    plan.add_argument("--traffic-target", type=float, default=90.0, help="percent of query traffic")
    plan.add_argument("--deadline-days", type=float, help="full coverage needed within this many days")
    plan.add_argument("--max-cost", type=float, help="embedding budget, $")
    plan.add_argument(
        "--allow-downtime", action="store_true", help="accept the offline re-index's stale window"
    )
    plan.add_argument("--horizon-days", type=float, default=365.0, help="how far to simulate")
    plan.add_argument("--plot", help="write a PNG of the simulated migrations (needs switchyard[plot])")
    plan.add_argument("--json", help="write the full plan, timelines included, as JSON")
    plan.set_defaults(func=run)


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def run(args: argparse.Namespace) -> int:
        from proxy.bench.cli import run_bench_command

        return run_bench_command(args)

    bench = commands.add_parser(
        "bench",
        help="measure overhead, fan-out, backfill, recall, storage, scale, collections and pgvector;"
        " write BENCHMARKS.md/json",
    )
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a measurement")
    bench.add_argument(
        "--scales", help="corpus sizes of the scale section (default 10000,100000,1000000; --quick: 1000)"
    )
    bench.add_argument(
        "--sections",
        help="comma-separated subset of: overhead,fanout,backfill,recall,storage,scale,collections,pgvector,"
        "embed_concurrency,adopt,milvus (pgvector and adopt need PostgreSQL with pgvector on this machine:"
        " PGVECTOR_DSN, else scripts/ensure-pgvector.sh of a source checkout; milvus starts a milvus-lite"
        " server)",
    )
    bench.add_argument(
        "--real-model",
        choices=["e5-small", "minilm", "none"],
        default="e5-small",
        help="real model for the backfill section, if the models extra is installed",
    )
    bench.add_argument("--out-dir", default=".", help="where BENCHMARKS.md and BENCHMARKS.json are written")
    bench.add_argument("--workdir", help="scratch dir for the indexes (default: a temp dir, removed after)")
    bench.set_defaults(func=run)


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
    demo.add_argument(
        "--docs", type=int, default=DEFAULT_DEMO_DOCS, help="corpus size (--adopt-pgvector: 400 by default)"
    )
    demo.add_argument("--port", type=int, default=0, help="port for the demo server (0: pick a free one)")
    demo.add_argument(
        "--real-models",
        action="store_true",
        help="migrate all-MiniLM-L6-v2 -> multilingual-e5-small on real sentences (needs switchyard[models])",
    )
    demo.add_argument(
        "--adopt-pgvector",
        action="store_true",
        help="adopt an application's own pgvector table in place instead (real models; needs PostgreSQL with"
        " pgvector at --dsn: scripts/demo.sh --adopt-pgvector starts one)",
    )
    demo.add_argument("--dsn", default=None, help="PostgreSQL for --adopt-pgvector (default: $PGVECTOR_DSN)")
    demo.set_defaults(func=_demo)
    _add_migrate(commands)
    _add_plan(commands)
    _add_bench(commands)
    add_adopt_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: a line per embedding batch would bury what the sidecar says.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"switchyard: config error: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        # A dependency that is down when the command starts (Redis, PostgreSQL, a model server): its message
        # says what to check; a traceback would only bury it.
        print(f"switchyard: unavailable: {exc}", file=sys.stderr)
        return 3
