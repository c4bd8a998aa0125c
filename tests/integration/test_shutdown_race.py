"""A call that races the sidecar's shutdown (its index already closed) reaches the client as UNAVAILABLE, a
status a client retries on another replica, never as INTERNAL. Real gRPC over a socket, on both backends."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy._gen.switchyard.v1 import vector_service_pb2_grpc as pb_grpc
from proxy.app.assembly import App, build_app
from proxy.app.config import parse_config
from proxy.transport.vector_service import VectorServicer
from tests.contract.conftest import PGVECTOR_DSN


def _config(data_dir: Path, backend: str) -> dict[str, Any]:
    index: dict[str, Any] = {"model": "hash-a"}
    if backend == "pgvector":
        index |= {
            "backend": "pgvector",
            "pgvector": {"dsn": PGVECTOR_DSN, "table": f"race_{uuid.uuid4().hex[:16]}"},
        }
    return {
        "data_dir": str(data_dir),
        "models": {"hash-a": {"kind": "hashing", "dim": 16, "seed": 1}},
        "indexes": {"idx-a": index},
        "serving_index": "idx-a",
        "state": {"backend": "local"},
        "telemetry": {"metrics_listen": None},
    }


async def _calls_after_close(app: App) -> dict[str, tuple[grpc.StatusCode, str]]:
    server = grpc.aio.server()
    dims = {b.model: b.embedder.dim for b in app.bindings.values()}
    pb_grpc.add_VectorServiceServicer_to_server(
        VectorServicer(app.collections.map(lambda c: c.service), app.executor, dims), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VectorServiceStub(channel)
            await stub.Upsert(pb.UpsertRequest(documents=[pb.Document(id="a", text="alpha beta")]))
            for binding in app.bindings.values():
                binding.index.close()  # what App.close does while a late call is still in flight
            calls = {
                "Get": stub.Get(pb.GetRequest(ids=["a"])),
                "Query": stub.Query(pb.QueryRequest(text="alpha", k=1)),
                "Upsert": stub.Upsert(pb.UpsertRequest(documents=[pb.Document(id="b", text="gamma")])),
            }
            outcomes = {}
            for name, call in calls.items():
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                outcomes[name] = (caught.value.code(), caught.value.details() or "")
            return outcomes
    finally:
        await server.stop(None)


@pytest.mark.parametrize("backend", ["hnsw", "pgvector"])
def test_calls_racing_shutdown_get_unavailable(tmp_path: Path, backend: str) -> None:
    app = build_app(parse_config(_config(tmp_path, backend)))
    try:
        outcomes = asyncio.run(_calls_after_close(app))
    finally:
        app.state.close()
        app.executor.shutdown(wait=True)
    for name, (code, details) in outcomes.items():
        assert code is grpc.StatusCode.UNAVAILABLE, f"{name}: {code} {details}"
        assert "idx-a" in details and "closed" in details, f"{name}: {details}"
