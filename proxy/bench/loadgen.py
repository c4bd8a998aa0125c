"""Load generator, run as its own process so its CPU time is not charged to the servers it measures.

`python -m proxy.bench.loadgen PLAN.json RESULT.json` runs the plan's phases one after another, each with its own
concurrency (grpc.aio tasks on one channel; direct SQL, `run_sql_phase`: asyncio tasks with a connection each), a
time bound and a request cap, and writes every phase's raw latencies and the CPU time of the processes involved.
Traffic goes only to 127.0.0.1 targets (loopback databases); anything else is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.conninfo import conninfo_to_dict

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.adapters.pgvector.queries import read_statements
from proxy.adapters.pgvector.schema import IndexTable
from proxy.bench.cpu import PhaseCpu

BASELINE_METHOD = "/switchyard.bench.Baseline/Search"
SIDECAR_METHOD = "/switchyard.v1.VectorService/Query"
SQL_METHOD = "sql"
"""Not gRPC: the pgvector adapter's k-NN statement sent straight to PostgreSQL (`run_sql_phase`)."""
_MODES = {
    "": pb.ROUTING_MODE_UNSPECIFIED,
    "old": pb.ROUTING_MODE_OLD,
    "new": pb.ROUTING_MODE_NEW,
    "dual": pb.ROUTING_MODE_DUAL,
}
_CALL_TIMEOUT_S = 30.0


class Call(Protocol):
    """A unary-unary multicallable for QueryRequest -> QueryResponse, as grpc.aio builds one."""

    def __call__(self, request: pb.QueryRequest, *, timeout: float) -> Awaitable[pb.QueryResponse]: ...


@dataclass(frozen=True)
class Phase:
    label: str
    target: str
    method: str
    """BASELINE_METHOD or SIDECAR_METHOD: both take a QueryRequest, so serialization costs the same; or
    SQL_METHOD."""
    payload: str
    """"vector" (caller-supplied embedding) or "text" (the server embeds)."""
    concurrency: int
    duration_s: float
    max_requests: int
    model: str = ""
    mode: str = ""
    warmup: int = 20
    k: int = 10
    server_pid: int = 0
    """When set, the server process's CPU time over the timed part is recorded (same machine, /proc)."""
    collection: str = ""
    """The request's `collection` (empty: the sidecar's default collection)."""
    dsn: str = ""
    """The PostgreSQL database behind the measured path: the CPU time of its client backends over the timed
    part is recorded; SQL_METHOD phases connect to it."""
    table: str = ""
    """SQL_METHOD: the pgvector index's table."""
    ef_search: int = 0
    """SQL_METHOD: hnsw.ef_search, set once per connection as the adapter does."""


@dataclass
class PhaseResult:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    first_error: str = ""
    server_cpu_s: float = 0.0
    db_cpu_s: float = 0.0
    """CPU time of the database's client backends (Phase.dsn) over the timed part."""
    client_cpu_s: float = 0.0
    """CPU time of this load generator over the timed part."""
    db_backends: int = 0
    """The database's backends that did any work over the timed part."""


Send = Callable[[int, int], Awaitable[object]]
"""Sends one request: (client number, position in the phase's request list); raises on failure."""


def build_requests(phase: Phase, vectors: np.ndarray | None, texts: list[str]) -> list[pb.QueryRequest]:
    mode, collection = _MODES[phase.mode], phase.collection
    if phase.payload == "text":
        return [pb.QueryRequest(text=t, k=phase.k, mode=mode, collection=collection) for t in texts]
    assert vectors is not None, "a vector phase needs the plan's vectors_file"
    return [
        pb.QueryRequest(
            k=phase.k,
            mode=mode,
            collection=collection,
            embedding=pb.Embedding(model=phase.model, values=v.tolist()),
        )
        for v in vectors
    ]


async def run_phase(phase: Phase, requests: list[pb.QueryRequest]) -> PhaseResult:
    if not phase.target.startswith("127.0.0.1:"):
        raise ValueError(f"load goes to 127.0.0.1 only, not {phase.target}")
    async with grpc.aio.insecure_channel(phase.target) as channel:
        call: Call = channel.unary_unary(
            phase.method,
            request_serializer=pb.QueryRequest.SerializeToString,
            response_deserializer=pb.QueryResponse.FromString,
        )
        for request in requests[: phase.warmup]:
            await call(request, timeout=_CALL_TIMEOUT_S)
        return await _timed(phase, requests, call)


async def _timed(phase: Phase, requests: list[pb.QueryRequest], call: Call) -> PhaseResult:
    return await drive(phase, lambda _, n: call(requests[n], timeout=_CALL_TIMEOUT_S), len(requests))


async def drive(phase: Phase, send: Send, pool: int) -> PhaseResult:
    """`phase.concurrency` clients, each sending one request at a time, cycling through `pool` requests, until
    the time bound or the request cap; latencies, failures and CPU times over that part."""
    result = PhaseResult(phase.label)
    budget = [phase.max_requests]
    cpu = PhaseCpu(phase.server_pid, phase.dsn)
    cpu.start()
    started = time.perf_counter()
    deadline = started + phase.duration_s

    async def client(number: int) -> None:
        position = number
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            sent = time.perf_counter()
            try:
                await send(number, position % pool)
            except (grpc.aio.AioRpcError, psycopg.Error) as exc:
                result.errors += 1
                result.first_error = result.first_error or _describe(exc)
                continue
            finally:
                position += phase.concurrency
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(client(n) for n in range(phase.concurrency)))
    result.seconds = time.perf_counter() - started
    spent = cpu.stop()
    result.server_cpu_s, result.db_cpu_s, result.client_cpu_s = spent.server_s, spent.db_s, spent.client_s
    result.db_backends = spent.db_backends
    return result


async def run_sql_phase(phase: Phase, vectors: np.ndarray) -> PhaseResult:
    """The adapter's own k-NN statement (same bytes, the vector as one binary parameter), sent by
    `phase.concurrency` asyncio tasks with a connection each: the gRPC phases' concurrency model, with the
    connections the sidecar's pool would hold."""
    if not loopback_dsn(phase.dsn):
        raise ValueError("direct SQL load goes to a database on 127.0.0.1 (or a local socket) only")
    table = IndexTable(index=phase.table, name=phase.table, dim=int(vectors.shape[1]), space="cosine")
    statement = read_statements(table).nearest.approximate[False, False]
    params = [{"query": v, "k": phase.k} for v in vectors]
    connections = [await _sql_connection(phase) for _ in range(phase.concurrency)]
    try:

        async def send(client: int, position: int) -> None:
            cursor = await connections[client].execute(statement, params[position])
            await cursor.fetchall()

        # Every connection runs the statement past psycopg's prepare threshold before timing starts, as the
        # sidecar's long-lived pooled connections have: the server then parses it no more.
        per_connection = max(
            -(-phase.warmup // phase.concurrency), (connections[0].prepare_threshold or 0) + 1
        )
        for number in range(per_connection * phase.concurrency):
            await send(number % phase.concurrency, number % len(params))
        return await drive(phase, send, len(params))
    finally:
        for connection in connections:
            await connection.close()


async def _sql_connection(phase: Phase) -> psycopg.AsyncConnection[Any]:
    """Set up as the adapter's pool sets up its connections: autocommit, binary vectors, ef_search once."""
    connection = await psycopg.AsyncConnection.connect(phase.dsn, autocommit=True)
    await register_vector_async(connection)
    await connection.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(phase.ef_search),))
    return connection


def loopback_dsn(dsn: str) -> bool:
    """Whether a DSN names a server on this machine: 127.0.0.1, localhost, ::1 or a unix socket folder."""
    # No host: libpq's default, the local socket (unless PGHOST names another).
    host = str(conninfo_to_dict(dsn).get("host") or os.environ.get("PGHOST", ""))
    return all(h in ("", "127.0.0.1", "localhost", "::1") or h.startswith("/") for h in host.split(","))


def _describe(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


async def run_plan(plan: dict[str, Any]) -> list[PhaseResult]:
    vectors = np.load(plan["vectors_file"]) if plan.get("vectors_file") else None
    texts: list[str] = plan.get("texts", [])
    results = []
    for raw in plan["phases"]:
        phase = Phase(**raw)
        if phase.method == SQL_METHOD:
            assert vectors is not None, "a direct SQL phase needs the plan's vectors_file"
            results.append(await run_sql_phase(phase, vectors))
        else:
            results.append(await run_phase(phase, build_requests(phase, vectors, texts)))
    return results


def main(argv: list[str]) -> int:
    plan_path, result_path = Path(argv[0]), Path(argv[1])
    results = asyncio.run(run_plan(json.loads(plan_path.read_text())))
    result_path.write_text(json.dumps([r.__dict__ for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
