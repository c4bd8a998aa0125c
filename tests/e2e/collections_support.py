"""Shared by the multi-collection end-to-end tests: a config with several collections on Redis state, each
collection's own corpus (the same ids, its own texts), and polling the sidecar's progress."""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import CorpusDoc, synthetic_corpus
from proxy.demo.sidecar_process import free_port
from tests.conftest import REDIS_URL

T = TypeVar("T")
SIZE = 300


def collections_config(
    data_dir: Path,
    names: Sequence[str],
    *,
    namespace: str | None = None,
    without_migration: Sequence[str] = (),
    rate_limit: float = 0.0,
    **top_level: Any,
) -> dict[str, Any]:
    """Collection `n` serves `n-old` (model hash-a) and migrates to `n-new` (hash-b), on Redis state."""
    backfill = {"batch_size": 10, "slice_size": 100, "lease_ttl_s": 5.0, "rate_limit": rate_limit}
    collections: dict[str, Any] = {}
    for name in names:
        collections[name] = {"serving_index": f"{name}-old"}
        if name not in without_migration:
            migration = {"old_index": f"{name}-old", "new_index": f"{name}-new", "backfill": backfill}
            collections[name]["migration"] = migration
    indexes: dict[str, Any] = {}
    for name in names:
        indexes |= {f"{name}-old": {"model": "hash-a"}, f"{name}-new": {"model": "hash-b"}}
    return {
        "data_dir": str(data_dir),
        "server": {"listen": f"127.0.0.1:{free_port()}", "max_batch_size": 500},
        "models": {
            "hash-a": {"kind": "hashing", "dim": 16, "seed": 1},
            "hash-b": {"kind": "hashing", "dim": 24, "seed": 2},
        },
        "indexes": indexes,
        "collections": collections,
        "state": {"backend": "redis", "redis_url": REDIS_URL, "namespace": namespace or unique_namespace()},
        "telemetry": {"metrics_listen": None},
        **top_level,
    }


def unique_namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


def corpus(collection: str, size: int = SIZE) -> list[CorpusDoc]:
    """The same ids in every collection, with texts of the collection's own."""
    return synthetic_corpus(size, seed=zlib.crc32(collection.encode()))


def load(client: SwitchyardClient, collection: str, size: int = SIZE) -> list[CorpusDoc]:
    docs = corpus(collection, size)
    for start in range(0, len(docs), 100):
        batch = [
            Doc(d.id, d.text, {"topic": d.topic, "collection": collection}) for d in docs[start : start + 100]
        ]
        client.upsert(batch, collection=collection)
    return docs


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = 60.0) -> T:
    """Reads until `done` holds; fails with the last value read after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout_s}s; last: {value}")
        time.sleep(0.05)
        value = read()
    return value


def wait_complete(
    client: SwitchyardClient, collection: str, timeout_s: float = 60.0
) -> admin_pb.GetMigrationStatusResponse:
    return poll(
        lambda: client.status(collection=collection),
        lambda s: s.backfill.complete,
        f"{collection}'s backfill complete",
        timeout_s,
    )


def summaries(client: SwitchyardClient) -> dict[str, admin_pb.CollectionSummary]:
    return {c.name: c for c in client.collections()}


def start(client: SwitchyardClient, collection: str) -> str:
    response = client.admin.StartMigration(admin_pb.StartMigrationRequest(collection=collection))
    return str(response.phase)


def transition(client: SwitchyardClient, collection: str, phase: str) -> str:
    request = admin_pb.TransitionMigrationRequest(collection=collection, to_phase=phase, reason="e2e test")
    return str(client.admin.TransitionMigration(request).phase)


def rpc_error(call: Callable[[], object], code: grpc.StatusCode, *fragments: str) -> str:
    """Runs a call that must fail with `code`; returns its details after checking they name each fragment."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    error: Any = info.value
    assert error.code() == code, error.details()
    for fragment in fragments:
        assert fragment in error.details()
    return str(error.details())
