"""Load generator, run as its own process so its CPU time is not charged to the servers it measures.

`python -m proxy.bench.loadgen PLAN.json RESULT.json` runs the plan's phases one after another, each with its own
concurrency (grpc.aio tasks on one channel), a time bound and a request cap, and writes every phase's raw
latencies. Traffic goes only to 127.0.0.1 targets; anything else is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb

BASELINE_METHOD = "/switchyard.bench.Baseline/Search"
SIDECAR_METHOD = "/switchyard.v1.VectorService/Query"
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
    """BASELINE_METHOD or SIDECAR_METHOD: both take a QueryRequest, so serialization costs the same."""
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


@dataclass
class PhaseResult:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    first_error: str = ""
    server_cpu_s: float = 0.0


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
    result = PhaseResult(phase.label)
    budget = [phase.max_requests]
    cpu_before = process_cpu_s(phase.server_pid)
    started = time.perf_counter()
    deadline = started + phase.duration_s

    async def client(offset: int) -> None:
        position = offset
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            request = requests[position % len(requests)]
            position += phase.concurrency
            sent = time.perf_counter()
            try:
                await call(request, timeout=_CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{exc.code().name}: {exc.details()}"
                continue
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(client(n) for n in range(phase.concurrency)))
    result.seconds = time.perf_counter() - started
    result.server_cpu_s = process_cpu_s(phase.server_pid) - cpu_before
    return result


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (0 when no pid is given)."""
    if not pid:
        return 0.0
    # /proc/<pid>/stat: the command name may contain spaces, so fields are counted after its closing ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_plan(plan: dict[str, Any]) -> list[PhaseResult]:
    vectors = np.load(plan["vectors_file"]) if plan.get("vectors_file") else None
    texts: list[str] = plan.get("texts", [])
    results = []
    for raw in plan["phases"]:
        phase = Phase(**raw)
        results.append(await run_phase(phase, build_requests(phase, vectors, texts)))
    return results


def main(argv: list[str]) -> int:
    plan_path, result_path = Path(argv[0]), Path(argv[1])
    results = asyncio.run(run_plan(json.loads(plan_path.read_text())))
    result_path.write_text(json.dumps([r.__dict__ for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
