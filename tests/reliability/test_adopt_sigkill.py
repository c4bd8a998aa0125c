"""SIGKILL of the sidecar during an adopted table's backfill: it resumes from its checkpoints, and no row's
new vector is written twice (a test trigger on the side table counts every row write)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.pgvector.adopted_ddl import describe, side_table_statements
from proxy.adapters.pgvector.side_index import default_side_table
from proxy.demo.sidecar_process import SidecarProcess, free_port
from tests.adopt_support import App as Application
from tests.contract.conftest import PGVECTOR_DSN
from tests.migration_support import migration_config
from tests.reliability.support import wait_backfill_complete

ROWS = 1500
BATCH = 25


@pytest.fixture
def application() -> Iterator[Application]:
    app = Application(HashingEmbedder("hash-a", 32, 1))
    app.insert(range(1, ROWS + 1))
    app.adopt()
    yield app
    app.conn.execute(f"DROP TABLE IF EXISTS {_writes_table(app)}")
    app.drop()


def _writes_table(app: Application) -> str:
    return f"writes_{app.table}"


def _count_side_writes(app: Application) -> None:
    """The side table, made ahead of the sidecar (it finds it there), with a trigger logging each row write."""
    side = default_side_table(app.table, "idx-b")
    with app.conn.transaction():
        spec, _ = describe(app.conn, "idx-b", app.config(), "test")
        ident = sql.Identifier("public", side)
        for statement in side_table_statements(
            spec, ident, sql.Identifier(f"{side}_hnsw"), 32, "cosine", 16, 64
        ):
            app.conn.execute(statement)
        log = sql.Identifier(_writes_table(app))
        app.conn.execute(sql.SQL("CREATE TABLE {} (id bigint)").format(log))
        app.conn.execute(
            sql.SQL(
                "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN INSERT INTO {log} VALUES (NEW.id); RETURN NULL; END $$"
            ).format(fn=sql.Identifier(f"log_{app.table}"), log=log)
        )
        app.conn.execute(
            sql.SQL(
                "CREATE TRIGGER log_writes AFTER INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(ident, sql.Identifier(f"log_{app.table}"))
        )


def _config(data_dir: Path, redis_url: str, app: Application) -> dict[str, Any]:
    config = migration_config(data_dir, f"test-{uuid.uuid4().hex}", rate_limit=400, lease_ttl_s=1.0)
    config["migration"]["backfill"]["batch_size"] = BATCH
    config["state"]["redis_url"] = redis_url
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    config["indexes"] = {
        name: {
            "model": model,
            "backend": "pgvector",
            "pgvector": {"dsn": PGVECTOR_DSN, "adopt": app.adopt_section(column)},
        }
        for name, model, column in (("idx-a", "hash-a", "embedding"), ("idx-b", "hash-b", None))
    }
    return config


def test_sigkill_during_an_adopted_backfill_resumes_without_rewriting_finished_rows(
    shared_redis: str, tmp_path: Path, application: Application
) -> None:
    _count_side_writes(application)
    sidecar = SidecarProcess(
        _config(tmp_path / "data", shared_redis, application), tmp_path / "sidecar"
    ).start()
    try:
        with sidecar.client() as client:
            client.admin.StartMigration(admin_pb.StartMigrationRequest())
            done_at_kill = _wait_done(client, ROWS // 3)
        sidecar.kill()
        sidecar.start()
        with sidecar.client() as client:
            resumed_at = client.status().backfill.done
            status = wait_backfill_complete(client)
    finally:
        sidecar.kill()
    assert done_at_kill < ROWS and resumed_at >= done_at_kill - 2 * BATCH
    assert status.backfill.done == ROWS
    per_id = dict(
        application.conn.execute(
            sql.SQL("SELECT id, count(*) FROM {} GROUP BY id").format(
                sql.Identifier(_writes_table(application))
            )
        ).fetchall()
    )
    assert set(per_id) == set(range(1, ROWS + 1))
    rewritten = {i: n for i, n in per_id.items() if n > 1}
    assert not rewritten, f"rows written more than once: {sorted(rewritten)[:10]}"


def _wait_done(client: Any, at_least: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = client.status().backfill.done
        if done >= at_least:
            return int(done)
        time.sleep(0.05)
    raise AssertionError(f"the backfill did not reach {at_least} rows in {timeout_s}s")
