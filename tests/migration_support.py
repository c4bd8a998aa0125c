"""Builds in-process sidecars (real hnswlib files, real Redis) for the migration tests."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.app.assembly import App, build_app
from proxy.app.config import parse_config
from proxy.core.model import DocumentInput
from proxy.demo.corpus import synthetic_corpus
from tests.conftest import REDIS_URL

AppFactory = Callable[[dict[str, Any]], App]
"""Builds an in-process sidecar from a config dict (the `start_app` fixture)."""


def migration_config(data_dir: Path, namespace: str | None = None, **backfill: Any) -> dict[str, Any]:
    state = {"backend": "redis", "redis_url": REDIS_URL, "namespace": namespace or f"test-{uuid.uuid4().hex}"}
    return {
        "data_dir": str(data_dir),
        "server": {"max_batch_size": 500},
        "models": {
            "hash-a": {"kind": "hashing", "dim": 32, "seed": 1},
            "hash-b": {"kind": "hashing", "dim": 32, "seed": 2},
        },
        "indexes": {"idx-a": {"model": "hash-a"}, "idx-b": {"model": "hash-b"}},
        "serving_index": "idx-a",
        "migration": {
            "old_index": "idx-a",
            "new_index": "idx-b",
            "backfill": {"batch_size": 25, "slice_size": 100, "lease_ttl_s": 5.0, **backfill},
        },
        "state": state,
        "telemetry": {"metrics_listen": None},
    }


def in_process_app(config: dict[str, Any]) -> App:
    return build_app(parse_config(config))


def load_corpus(app: App, size: int) -> list[DocumentInput]:
    docs = [DocumentInput(d.id, d.text, {"topic": d.topic}) for d in synthetic_corpus(size)]
    for start in range(0, size, 200):
        app.service.upsert(docs[start : start + 200])
    return docs


def writes_applied(index_dir: Path) -> int:
    """How many row writes an hnsw index directory has taken (its SQLite write sequence)."""
    with sqlite3.connect(index_dir / "index.sqlite3") as db:
        return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM documents").fetchone()[0])


def drain(app: App, limit: int = 10_000) -> int:
    """Runs the backfill synchronously until it has nothing left; returns the steps taken."""
    assert app.controller is not None
    for step in range(limit):
        if app.controller.run_once() == 0 and app.controller.backfiller.complete():
            return step
    raise AssertionError("backfill did not finish")
