"""Shared pieces of the reliability suite: a ledger of what clients were told, checks against it, a private
Redis server, and the results file the suite's figures go to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest
import redis
from hypothesis import HealthCheck, settings

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.adapters.hnsw import HnswIndex
from proxy.cli.client import SwitchyardClient
from proxy.core.model import StoredDocument
from proxy.core.ports import iter_all
from proxy.demo.sidecar_process import free_port

RESULTS_ENV = "SWITCHYARD_RELIABILITY_RESULTS"
FUZZ_RANDOM_ENV = "SWITCHYARD_FUZZ_RANDOM"
BOTH = ("idx-a", "idx-b")


def results_path() -> Path:
    """Where the suite writes its figures (never inside the repository)."""
    default = Path(tempfile.gettempdir()) / "switchyard-reliability" / "results.json"
    return Path(os.environ.get(RESULTS_ENV, default))


_results_lock = threading.Lock()


def record_result(section: str, name: str, figures: dict[str, Any]) -> None:
    """Adds one test's figures under results[section][name]; the report script formats the file."""
    path = results_path()
    with _results_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        results = json.loads(path.read_text()) if path.exists() else {}
        results.setdefault(section, {})[name] = figures
        results["updated_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        path.write_text(json.dumps(results, indent=2, sort_keys=True))


def fuzz_settings(max_examples: int = 150) -> settings:
    """The same examples on every run (CI stays deterministic); SWITCHYARD_FUZZ_RANDOM=1 explores new ones."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=os.environ.get(FUZZ_RANDOM_ENV) != "1",
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


def require_redis(url: str) -> None:
    """Fails (never skips) the calling test when the Redis at `url` does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis at {url} is unreachable ({exc}); start it with scripts/ensure-redis.sh")
    finally:
        client.close()


# -- a private redis-server ------------------------------------------------------------------------------


class RedisServer:
    """A redis-server child process without persistence on its own port: stopping it loses every key."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; scripts/ensure-redis.sh installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        command += ["--daemonize", "no", "--dir", str(self.workdir)]
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        pytest.fail(f"private redis-server on port {self.port} did not start; see {self.workdir}/redis.log")

    def stop(self) -> None:
        """SIGTERM; with --save '' nothing is written, so the next start is empty."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


# -- what clients were told ------------------------------------------------------------------------------

OpKind = Literal["upsert", "delete"]


@dataclass(frozen=True)
class Op:
    kind: OpKind
    text: str | None
    acked: bool
    version: int | None
    """The version the server returned; None when unacknowledged (or a delete of a missing id)."""


@dataclass
class Ledger:
    """Every write sent per id, in the order one writer sent them (each id has a single writer)."""

    ops: dict[str, list[Op]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, doc_id: str, op: Op) -> None:
        with self._lock:
            self.ops.setdefault(doc_id, []).append(op)

    def writes(self) -> int:
        with self._lock:
            return sum(len(ops) for ops in self.ops.values())

    def acked_writes(self) -> int:
        return sum(op.acked for ops in self.ops.values() for op in ops)

    def unacked_writes(self) -> int:
        return sum(not op.acked for ops in self.ops.values() for op in ops)


def expectation_problems(doc_id: str, ops: Sequence[Op], doc: pb.StoredDocument | None) -> list[str]:
    """What is wrong with `doc` (None: absent) given the writes sent for its id.

    The last acknowledged write must hold (or be superseded only by a later unacknowledged write); a present
    document must carry text some client sent for this id and be held by both indexes at its version.
    """
    last = max((n for n, op in enumerate(ops) if op.acked), default=-1)
    tail = ops[last + 1 :]
    acked = ops[last] if last >= 0 else None
    if doc is None:
        if acked is None or acked.kind == "delete" or any(op.kind == "delete" for op in tail):
            return []
        return [f"{doc_id}: acknowledged upsert v{acked.version} is lost"]
    return _present_problems(doc_id, acked, tail, doc)


def _present_problems(doc_id: str, acked: Op | None, tail: Sequence[Op], doc: pb.StoredDocument) -> list[str]:
    problems = []
    later_texts = {op.text for op in tail if op.kind == "upsert"}
    acked_text = acked.text if acked is not None and acked.kind == "upsert" else None
    if doc.text != acked_text and doc.text not in later_texts:
        problems.append(
            f"{doc_id}: text {doc.text[:40]!r} is neither the last acknowledged nor a later write"
        )
    if acked is not None and acked.version is not None:
        if doc.version < acked.version:
            problems.append(f"{doc_id}: v{doc.version} is older than acknowledged v{acked.version}")
        elif doc.text == acked_text and doc.version != acked.version:
            problems.append(
                f"{doc_id}: acknowledged text at v{doc.version}, acknowledged as v{acked.version}"
            )
    if tuple(doc.indexes) != BOTH:
        problems.append(f"{doc_id}: v{doc.version} held by {list(doc.indexes)}, expected both indexes")
    return problems


def check_through_get(client: SwitchyardClient, ledger: Ledger, batch: int = 200) -> list[str]:
    """Reads every id of the ledger through the API and checks it against what clients were told."""
    ids = sorted(ledger.ops)
    problems: list[str] = []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        found = {d.id: d for d in client.get(chunk).documents}
        for doc_id in chunk:
            problems += expectation_problems(doc_id, ledger.ops[doc_id], found.get(doc_id))
    return problems


def check_index_files(data_dir: Path, dims: dict[str, int]) -> tuple[list[str], int]:
    """Opens both index directories of a stopped sidecar: same live ids, versions, texts; no duplicates.

    Returns (problems, live documents).
    """
    docs: dict[str, dict[str, StoredDocument]] = {}
    for name, dim in dims.items():
        with _opened(HnswIndex(name, dim, data_dir / "indexes" / name)) as index:
            scanned = list(iter_all(index))
            docs[name] = {d.id: d for d in scanned}
            if len(scanned) != len(docs[name]) or index.count() != len(scanned):
                return [f"{name}: {len(scanned)} rows scanned, {index.count()} counted: duplicates"], 0
    (old_name, old), (new_name, new) = docs.items()
    problems = [f"{i}: only in {old_name}" for i in sorted(old.keys() - new.keys())]
    problems += [f"{i}: only in {new_name}" for i in sorted(new.keys() - old.keys())]
    for doc_id in sorted(old.keys() & new.keys()):
        a, b = old[doc_id], new[doc_id]
        if (a.version, a.text, a.metadata) != (b.version, b.text, b.metadata):
            problems.append(f"{doc_id}: {old_name} v{a.version} differs from {new_name} v{b.version}")
    return problems, len(old)


@contextmanager
def _opened(index: HnswIndex) -> Iterator[HnswIndex]:
    try:
        yield index
    finally:
        index.close()


def wait_backfill_complete(client: SwitchyardClient, timeout_s: float = 90.0) -> Any:
    """Waits until every slice is finished and the new index covers the corpus; returns that status."""
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        try:
            status = client.status()
        except grpc.RpcError:
            time.sleep(0.2)
            continue
        if status.backfill.complete and status.coverage == 1.0:
            return status
        time.sleep(0.1)
    raise AssertionError(f"backfill not complete after {timeout_s}s: {status}")


def converged(check: Callable[[], list[str]], timeout_s: float = 20.0) -> tuple[list[str], float]:
    """Repeats `check` until it finds no problem (repairs run in the background); returns the last problems
    and the seconds it took."""
    started = time.monotonic()
    while True:
        problems = check()
        waited = time.monotonic() - started
        if not problems or waited > timeout_s:
            return problems, waited
        time.sleep(0.2)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]
