"""`switchyard demo --adopt-pgvector`: a migration of a table the application owns, in place.

An application creates and fills its own pgvector table (all-MiniLM-L6-v2 vectors, its own inserts). Then, as
an operator would: `switchyard adopt` inspects the table, checks on a sample that the stored vectors are
MiniLM's, writes the config and adds Switchyard's triggers and a side table for multilingual-e5-small; the
sidecar starts on that config, backfills the side table while the application keeps inserting, editing and
deleting rows directly, serves dual queries through the proxy, validates, cuts over and retires the old
vector column. Storage is read from PostgreSQL (pg_total_relation_size) at each step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.admin import watch
from proxy.cli.client import SwitchyardClient
from proxy.demo.application import TABLE, Application, DirectWrites
from proxy.demo.real_corpus import real_corpus, real_queries
from proxy.demo.sidecar_process import SidecarProcess, free_port

ADOPT_ARGS = [
    "--table",
    TABLE,
    "--id-column",
    "id",
    "--vector-column",
    "embedding",
    "--text-columns",
    "title,body",
    "--metadata-columns",
    "topic",
    "--old-model",
    "minilm",
    "--new-model",
    "e5-small",
]


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def _show_sizes(app: Application, label: str, before: int) -> int:
    sizes = app.sizes()
    total = sum(sizes.values())
    parts = ", ".join(f"{name} {_mib(size)}" for name, size in sorted(sizes.items()))
    print(f"storage {label}: {parts}; {total / before:.2f}x the table before adoption")
    return total


def _adopt(dsn: str, config_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "proxy.cli",
        "adopt",
        "--dsn",
        dsn,
        *ADOPT_ARGS,
        "--out",
        str(config_path),
    ]
    shown = " ".join(["switchyard", *command[3:]]).replace(dsn, "$PGVECTOR_DSN")
    for extra in ([], ["--apply"]):
        print(f"$ {shown}{' --apply' if extra else ''}", flush=True)
        result = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=600, check=False)
        print(result.stdout.rstrip())
        if result.returncode != 0:
            raise RuntimeError(f"switchyard adopt failed: {result.stderr.strip()[-2000:]}")


def _sidecar_config(config_path: Path, workdir: Path) -> dict[str, Any]:
    """The config `switchyard adopt` wrote, with the demo's own port, data dir, golden set and metrics."""
    config: dict[str, Any] = yaml.safe_load(config_path.read_text())
    config["data_dir"] = str(workdir / "data")
    config["server"] = {**config.get("server", {}), "listen": f"127.0.0.1:{free_port()}"}
    config["telemetry"] = {"metrics_listen": None}
    migration = config["migration"]
    migration.setdefault("validation", {})["golden_set"] = str(workdir / "golden.jsonl")
    migration.setdefault("backfill", {}).update({"batch_size": 32, "slice_size": 500})
    return config


def _show_query(
    client: SwitchyardClient, text: str, mode: pb.RoutingMode = pb.ROUTING_MODE_UNSPECIFIED
) -> None:
    response = client.query(text, k=3, include_text=True, mode=mode)
    print(f"query {text!r}: {response.routing_reason}; coverage {response.coverage:.0%}")
    for hit in response.hits:
        print(f"   {hit.score:6.3f}  {hit.id:>5}  [{hit.index}]  {hit.text.replace(chr(10), ' / ')[:70]}")


def _wait_caught_up(client: SwitchyardClient, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pending = client.status().backfill.direct_writes_pending
        if pending == 0 or time.monotonic() > deadline:
            print(f"direct writes waiting for their new vector: {pending}")
            return
        time.sleep(0.2)


def _wait_column_dropped(app: Application, timeout_s: float = 30.0) -> None:
    """The worker drops the old column on its next round."""
    deadline = time.monotonic() + timeout_s
    while "embedding" in app.columns() and time.monotonic() < deadline:
        time.sleep(0.2)


def _transition(client: SwitchyardClient, phase: str, reason: str) -> None:
    request = admin_pb.TransitionMigrationRequest(to_phase=phase, reason=reason)
    print(f"phase -> {client.admin.TransitionMigration(request).phase}")


def _migrate(
    client: SwitchyardClient, app: Application, corpus_size: int, queries: list[str]
) -> DirectWrites:
    _show_query(client, queries[0])
    _say("start the migration; the application keeps writing its table directly meanwhile")
    print(client.admin.StartMigration(admin_pb.StartMigrationRequest()).phase)
    stop = threading.Event()
    writes: list[DirectWrites] = []
    corpus = real_corpus(corpus_size)
    writer = threading.Thread(target=lambda: writes.append(app.keep_writing(stop, corpus, corpus_size + 1)))
    writer.start()
    try:
        _show_query(client, queries[0], pb.ROUTING_MODE_DUAL)
        status = watch(client, 0.5)
        print(f"backfill complete: {status.backfill.done} rows, coverage {status.coverage:.0%}")
    finally:
        stop.set()
        writer.join()
    done = writes[0]
    print(
        f"the application wrote directly meanwhile: {len(done.inserted)} inserts, {len(done.updated)} edits,"
        f" {len(done.deleted)} deletes"
    )
    _wait_caught_up(client)
    for n, text in enumerate(queries * 5):
        client.query(text, k=10, routing_key=f"shadow-{n}")
    return done


def run_adopt_demo(workdir: Path, dsn: str, docs: int = 400) -> int:
    workdir = workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    corpus, queries = real_corpus(docs), real_queries(3)
    _say(f"the application creates {TABLE} ({len(corpus)} rows) and embeds them with all-MiniLM-L6-v2 itself")
    app = Application(dsn)
    app.create(corpus)
    before = sum(app.sizes().values())
    golden = [json.dumps({"query": d.text, "relevant": [str(n + 1)]}) for n, d in enumerate(corpus)][::10]
    (workdir / "golden.jsonl").write_text("\n".join(golden) + "\n")
    _say("adopt the table: inspect, check the stored vectors on a sample, plan; then apply")
    config_path = workdir / "adopted.yaml"
    _adopt(dsn, config_path)
    _show_sizes(app, "after adoption", before)
    sidecar = SidecarProcess(_sidecar_config(config_path, workdir), workdir)
    _say(f"start the sidecar on the written config ({sidecar.target}, log {sidecar.log_path})")
    with sidecar, SwitchyardClient(sidecar.target) as client:
        writes = _migrate(client, app, len(corpus), queries)
        peak = _show_sizes(app, "after the backfill", before)
        _say("validate (switchyard migrate validate), cut over")
        report = client.admin.ValidateMigration(admin_pb.ValidateMigrationRequest())
        print(report.report_text)
        _transition(client, "validated", "validation passed")
        _transition(client, "cut_over", "all traffic on multilingual-e5-small")
        _show_query(client, queries[0])
        if writes.inserted:
            print(f"a row the application inserted directly during the backfill ({writes.inserted[0]}):")
            _show_query(client, "More on this")
        _say("retire: the old vector column and its index are dropped from the application's table")
        _transition(client, "old_retired", "rollback window closed")
        _wait_column_dropped(app)
        print(f"{TABLE} columns now: {', '.join(app.columns())}")
        _show_sizes(app, "after retirement", before)
        print(
            "(a dropped column's space comes back as rows are rewritten by later updates, or at once with"
            " VACUUM FULL or pg_repack)"
        )
    _say(
        f"demo finished: {TABLE} moved from all-MiniLM-L6-v2 to multilingual-e5-small in place, no row copied"
        f" (peak {peak / before:.2f}x the table's size), while the application kept writing it directly"
    )
    return 0
