"""`switchyard adopt`: the arguments and what is printed; the work is proxy/app/adoption.py."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from proxy.app.adoption import AdoptionPlan, AdoptRequest

MODELS_HELP = (
    "with --config: a name from its `models:` section; without: minilm, e5-small or hashing:DIM[:SEED]"
    " (the deterministic test embedder)"
)


def add_adopt_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    adopt = commands.add_parser(
        "adopt",
        help="serve an application's own pgvector table (or Milvus collection) in place and migrate it to a new"
        " model",
        description="Inspects the table, checks that the old model produced its stored vectors (re-embedding a"
        " sample), prints the statements that adopt it and writes the config. Changes nothing without"
        " --apply; with it, runs the statements in one transaction (all or nothing).",
    )
    dsn = adopt.add_mutually_exclusive_group(required=True)
    dsn.add_argument("--dsn", help="PostgreSQL DSN or URI (written to the config as is)")
    dsn.add_argument("--dsn-env", help="environment variable holding the DSN (the config names the variable)")
    dsn.add_argument(
        "--milvus-uri",
        help="adopt a Milvus collection instead: a milvus-lite .db path or http(s)://host:19530 (then --table"
        " is the collection and the --*-column options name its fields)",
    )
    adopt.add_argument("--milvus-token-env", help="with --milvus-uri: environment variable holding the token")
    adopt.add_argument("--table", required=True, help="the application's table: table or schema.table")
    adopt.add_argument("--id-column", required=True, help="its one-column primary key")
    adopt.add_argument("--vector-column", required=True, help="its vector(N) column, the old model's vectors")
    adopt.add_argument(
        "--text-columns",
        required=True,
        help="comma-separated columns the model embeds, in order, joined by a newline, NULLs left out",
    )
    adopt.add_argument("--metadata-columns", default="", help="comma-separated columns returned with hits")
    adopt.add_argument("--old-model", required=True, help=f"the model of the stored vectors; {MODELS_HELP}")
    adopt.add_argument("--new-model", required=True, help=f"the model to migrate to; {MODELS_HELP}")
    adopt.add_argument("--config", help="a Switchyard config whose `models:` section defines the models")
    adopt.add_argument("--sample", type=int, default=32, help="rows re-embedded by the sample check")
    adopt.add_argument("--redis-url", help="keep the migration's state in Redis (default: local state)")
    adopt.add_argument("--data-dir", default="switchyard-data", help="data_dir of the written config")
    adopt.add_argument("--out", default="switchyard-adopted.yaml", help="where the config is written")
    adopt.add_argument("--apply", action="store_true", help="run the statements (default: only print them)")
    adopt.set_defaults(func=run_adopt)


def run_adopt(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from proxy.app.adoption import AdoptionRefused

    out = out or sys.stdout
    try:
        return _adopt(args, out)
    except AdoptionRefused as exc:
        print(f"switchyard adopt: {exc}", file=sys.stderr)
        print("Nothing was changed.", file=sys.stderr)
        return 1


def _adopt(args: argparse.Namespace, out: TextIO) -> int:
    from proxy.app import adoption

    config_path = Path(args.config) if args.config else None
    out_path = Path(args.out)
    if config_path is not None and out_path.resolve() == config_path.resolve():
        raise adoption.AdoptionRefused("--out is the --config file: write the adopted config elsewhere")
    if args.milvus_uri:
        from proxy.cli.adopt_milvus import adopt_milvus

        return adopt_milvus(args, out)
    dsn = args.dsn
    if args.dsn_env:
        dsn = os.environ.get(args.dsn_env)
        if not dsn:
            raise adoption.AdoptionRefused(f"--dsn-env: environment variable {args.dsn_env} is not set")
    old, new = adoption.resolve_models(config_path, args.old_model, args.new_model)
    request = adoption.AdoptRequest(
        dsn=dsn,
        dsn_env=args.dsn_env,
        table=args.table,
        id_column=args.id_column,
        vector_column=args.vector_column,
        text_columns=_names(args.text_columns),
        metadata_columns=_names(args.metadata_columns),
        old=old,
        new=new,
        sample=args.sample,
        redis_url=args.redis_url,
        data_dir=args.data_dir,
    )
    with adoption.connect(dsn) as conn:
        plan = adoption.plan_adoption(conn, request)
        config = adoption.config_dict(request, plan)
        _print_inspection(request, plan, out)
        _print_statements(plan, out)
        if args.apply:
            print("\nApplying (one transaction; lock waits give up after lock_timeout):", file=out)
            try:
                adoption.apply_plan(
                    conn,
                    plan,
                    before=lambda number, text: print(
                        f"  {number:>2}. {_first_line(text)} ...", end="", file=out, flush=True
                    ),
                    after=lambda seconds: print(f" {seconds * 1000:.1f} ms", file=out),
                )
            except adoption.AdoptionRefused:
                print(" failed", file=out, flush=True)
                raise
            print("Committed: the table is adopted.", file=out)
    adoption.write_config(out_path, config)
    print(f"\nWrote {out_path}.", file=out)
    if not args.dsn_env and adoption.dsn_has_password(dsn):
        print(
            "  It holds the DSN's password: prefer --dsn-env (the config then names the variable).", file=out
        )
    _print_next(args, out_path, out)
    return 0


def _names(value: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _print_inspection(request: AdoptRequest, plan: AdoptionPlan, out: TextIO) -> None:
    facts, counts = plan.facts, plan.counts
    rows = (
        f"{counts.rows:,} (exact count)"
        if counts.exact
        else f"~{counts.rows:,} (estimate, pg_class.reltuples)"
    )
    checked = "" if counts.exact else f" (in a sample of {counts.scanned:,} rows)"
    empty = ", ".join(f"{c} {n:,}" for c, n in counts.empty_text.items())
    lines = [
        f"Table {facts.schema}.{facts.table}",
        f"  rows            {rows}",
        f"  total size      {_human(facts.total_bytes)} (table, indexes and TOAST)",
        f"  primary key     {request.id_column} ({facts.columns[request.id_column].type})",
        "  columns         " + ", ".join(f"{c.name} {c.type}" for c in facts.columns.values()),
        f"  vector column   {request.vector_column} vector({plan.vector_dim}), old model {request.old.name}"
        f" ({plan.vector_dim} dimensions): match",
        f"  NULL vectors    {counts.null_vectors:,}{checked}",
        "  text            "
        + " + ".join(request.text_columns)
        + f" (newline-joined); NULL or empty: {empty}{checked}",
    ]
    lines += [f"  vector index    {name}: {d}" for name, d in plan.vector_indexes.items()] or [
        "  vector index    none"
    ]
    sample = plan.sample
    if sample is not None:
        lines.append(
            f"  sample check    {sample.compared} rows re-embedded with {request.old.name}: cosine similarity"
            f" to the stored vectors median {sample.median:.4f}, min {sample.minimum:.4f}: ok"
        )
    lines.append(
        f"  new model       {request.new.name} ({plan.new_dim} dimensions): vectors in side table {plan.side_table}"
    )
    if plan.already_adopted:
        lines.append(
            "  already adopted Switchyard's triggers are present; the statements are idempotent, going on"
        )
    lines += [f"  note            {note}" for note in plan.notes]
    print("\n".join(lines), file=out)


def _print_statements(plan: AdoptionPlan, out: TextIO) -> None:
    print(f"\nStatements (one transaction, lock_timeout {_lock_timeout()}):", file=out)
    for number, text in enumerate(plan.rendered, 1):
        print(
            f"  {number:>2}. {text};\n      -- lock: {_lock(text, plan.spec.qualified, plan.already_adopted)}",
            file=out,
        )


def _lock_timeout() -> str:
    from proxy.app.adoption import LOCK_TIMEOUT

    return LOCK_TIMEOUT


def _lock(statement: str, table: str, adopted: bool) -> str:
    if statement.startswith("CREATE OR REPLACE TRIGGER"):
        again = " (replacing the trigger: the same lock)" if adopted else ""
        return (
            f"SHARE ROW EXCLUSIVE on {table} until commit (milliseconds): reads go on, the application's"
            f" writes wait{again}"
        )
    return f"none on {table} (a Switchyard object)"


def _print_next(args: argparse.Namespace, out_path: Path, out: TextIO) -> None:
    if not args.apply:
        print("Dry run: nothing was changed. Run again with --apply to run the statements above.", file=out)
        return
    print(
        "Next:\n"
        f"  switchyard serve --config {out_path}      (the sidecar serves the table from {args.vector_column})\n"
        "  point the application's searches at the sidecar, then:\n"
        "  switchyard migrate start                  (backfill the new model's vectors; direct writes are"
        " followed by the triggers)\n"
        "  switchyard migrate status --watch, validate, promote, cutover, retire",
        file=out,
    )


def _first_line(text: str) -> str:
    line = text.splitlines()[0]
    return line if len(line) <= 100 else line[:97] + "..."


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
