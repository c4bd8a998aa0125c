"""Migrations with Milvus on either side, through a running sidecar and its gRPC API: hnswlib -> Milvus,
pgvector -> Milvus and Milvus -> Milvus, each with dual writes, a backfill, a lazy move, dual queries and the
cut-over. Milvus is a real milvus-lite engine in the sidecar's data_dir; Redis at REDIS_URL, PostgreSQL with
pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh) for the pgvector case."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import free_port
from tests.conftest import SidecarFactory
from tests.contract.conftest import PGVECTOR_DSN
from tests.migration_support import migration_config

CORPUS = synthetic_corpus(300)
IDS = [d.id for d in CORPUS]
SLOW = 3.0
"""Backfill docs/s while the lazy move is watched: the backfill cannot reach the last id before it."""


def _milvus(model: str, collection: str) -> dict[str, Any]:
    # A relative uri: milvus-lite in the sidecar's data_dir. Both indexes of a Milvus -> Milvus migration
    # share that one engine, a collection each.
    return {"model": model, "backend": "milvus", "milvus": {"uri": "milvus.db", "collection": collection}}


def _config(data_dir: Path, old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    config = migration_config(data_dir, rate_limit=SLOW)
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    # The new model has another dimension than the old one: each index is sized for its own model.
    config["models"]["hash-c"] = {"kind": "hashing", "dim": 48, "seed": 3}
    if old is not None:
        config["indexes"]["idx-a"] = old
    config["indexes"]["idx-b"] = new
    return config


@pytest.fixture
def pg_table() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def fresh() -> str:
        made.append(f"test_{uuid.uuid4().hex[:20]}")
        return made[-1]

    yield fresh
    with psycopg.connect(PGVECTOR_DSN, autocommit=True) as conn:
        for table in made:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout_s}s: {what}")


def _documents(client: SwitchyardClient, ids: list[str]) -> dict[str, pb.StoredDocument]:
    return {
        d.id: d for start in range(0, len(ids), 250) for d in client.get(ids[start : start + 250]).documents
    }


def _migrate_through_the_api(client: SwitchyardClient) -> None:
    for start in range(0, len(CORPUS), 150):
        client.upsert([Doc(d.id, d.text, {"topic": d.topic}) for d in CORPUS[start : start + 150]])
    client.admin.StartMigration(admin_pb.StartMigrationRequest())

    # Dual writes: an update, a new document and a delete reach both indexes at once.
    edited, deleted = CORPUS[10], CORPUS[20]
    versions = client.upsert(
        [Doc(edited.id, "an edited text about milvus", {"topic": "edited"}), Doc("new-1", "new")]
    )
    client.delete([deleted.id])
    both = _documents(client, [edited.id, "new-1", deleted.id])
    assert deleted.id not in both
    assert {i: (d.version, list(d.indexes)) for i, d in both.items()} == {
        edited.id: (versions[edited.id], ["idx-a", "idx-b"]),
        "new-1": (versions["new-1"], ["idx-a", "idx-b"]),
    }

    # A lazy move: a dual query that finds the last document, which the slow backfill is far from, queues it
    # for the new index, and the worker moves it ahead of the backfill.
    last = CORPUS[-1]
    answer = client.query(last.text, k=5, mode=pb.ROUTING_MODE_DUAL)
    assert last.id in {h.id for h in answer.hits}
    _wait(
        "the queried document in the new index",
        lambda: "idx-b" in _documents(client, [last.id])[last.id].indexes,
    )
    status = client.status()
    assert status.backfill.done < status.backfill.total / 2, "moved by the lazy queue, not the backfill"

    client.admin.SetBackfillRate(admin_pb.SetBackfillRateRequest(docs_per_second=0))
    _wait("the backfill to complete", lambda: client.status().backfill.complete)
    ids = [*IDS, "new-1"]
    documents = _documents(client, ids)
    assert set(documents) == set(ids) - {deleted.id}
    assert all(list(d.indexes) == ["idx-a", "idx-b"] for d in documents.values()), (
        "every doc in B at A's version"
    )
    assert client.status().coverage == 1.0

    # Dual queries merge both legs; a filter reaches both backends.
    target = CORPUS[123]
    dual = client.query(target.text, k=5, mode=pb.ROUTING_MODE_DUAL, where={"topic": target.topic})
    assert dual.hits[0].id == target.id
    assert {h.index for h in dual.hits} <= {"idx-a", "idx-b"} and all(
        h.metadata["topic"] == target.topic for h in dual.hits
    )
    assert (
        client.query(edited.text, k=3, where={"topic": "edited"}, mode=pb.ROUTING_MODE_NEW).hits[0].id
        == edited.id
    )

    for phase in ("validated", "shifting"):
        client.admin.TransitionMigration(admin_pb.TransitionMigrationRequest(to_phase=phase, reason="e2e"))
    # Forced: the validation gates are the promotion tests' subject, not this one's.
    cut = admin_pb.TransitionMigrationRequest(to_phase="cut_over", force=True, reason="milvus e2e")
    assert client.admin.TransitionMigration(cut).phase == "cut_over"
    served = client.query(CORPUS[42].text, k=3)
    assert served.hits[0].id == CORPUS[42].id and {h.index for h in served.hits} == {"idx-b"}
    written = client.upsert([Doc("after-cut", "written after the cut-over")])
    stored = _documents(client, ["after-cut"])["after-cut"]
    assert stored.version == written["after-cut"] and "idx-b" in stored.indexes


def test_hnsw_to_milvus_through_a_running_sidecar(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    sidecar = start_sidecar(_config(tmp_path / "data", None, _milvus("hash-c", "docs_new")))
    with sidecar.client() as client:
        _migrate_through_the_api(client)
    assert (tmp_path / "data" / "milvus.db").is_dir()


def test_pgvector_to_milvus_through_a_running_sidecar(
    start_sidecar: SidecarFactory, tmp_path: Path, pg_table: Callable[[], str]
) -> None:
    old = {"model": "hash-a", "backend": "pgvector", "pgvector": {"dsn": PGVECTOR_DSN, "table": pg_table()}}
    sidecar = start_sidecar(_config(tmp_path / "data", old, _milvus("hash-c", "docs_new")))
    with sidecar.client() as client:
        _migrate_through_the_api(client)


def test_milvus_to_milvus_through_a_running_sidecar(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    config = _config(tmp_path / "data", _milvus("hash-a", "docs_old"), _milvus("hash-c", "docs_new"))
    sidecar = start_sidecar(config)
    with sidecar.client() as client:
        _migrate_through_the_api(client)
