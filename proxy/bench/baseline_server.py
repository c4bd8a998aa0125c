"""The benchmark's baseline: the same hnswlib search as the sidecar, behind the thinnest grpc.aio server.

It loads the very graph file a sidecar index directory holds (same vectors, same M/ef_construction, and the
same ef_search), maps labels to ids once at start-up, and answers one RPC: take a vector and k, run
`knn_query` off the event loop, return ids and scores. Request and response reuse the sidecar's
QueryRequest/QueryResponse messages so both servers pay the same protobuf cost; everything else the sidecar
does (validation, routing, fan-out, SQLite row lookup, metadata) is what the overhead figure measures.

    python -m proxy.bench.baseline_server --index-dir DIR --listen 127.0.0.1:PORT [--ef 64] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import hnswlib
import numpy as np

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb

SERVICE = "switchyard.bench.Baseline"


class BaselineSearch:
    def __init__(self, index_dir: Path, ef_search: int, executor: ThreadPoolExecutor) -> None:
        meta = json.loads((index_dir / "graph.json").read_text())
        self._graph = hnswlib.Index(space=meta["space"], dim=meta["dim"])
        self._graph.load_index(str(index_dir / "graph.bin"))
        self._graph.set_ef(ef_search)
        self._ids = _label_ids(index_dir / "index.sqlite3")
        self._executor = executor

    async def search(self, request: pb.QueryRequest, context: grpc.aio.ServicerContext) -> pb.QueryResponse:
        query = np.asarray(request.embedding.values, dtype=np.float32)
        loop = asyncio.get_running_loop()
        # num_threads=1 as in the sidecar: concurrency comes from the pool, not from inside one search.
        labels, distances = await loop.run_in_executor(
            self._executor, lambda: self._graph.knn_query(query, k=request.k, num_threads=1)
        )
        hits = [
            pb.QueryHit(id=self._ids[int(label)], score=1.0 - float(distance))
            for label, distance in zip(labels[0], distances[0], strict=True)
        ]
        return pb.QueryResponse(hits=hits)


def _label_ids(db_path: Path) -> dict[int, str]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT label, id FROM documents WHERE deleted = 0"))


async def serve(index_dir: Path, listen: str, ef_search: int, workers: int) -> None:
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="baseline")
    search = BaselineSearch(index_dir, ef_search, executor)
    handler = grpc.unary_unary_rpc_method_handler(
        search.search,
        request_deserializer=pb.QueryRequest.FromString,
        response_serializer=pb.QueryResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Search": handler})])
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"baseline server cannot listen on {listen}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)
    executor.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.bench.baseline_server")
    parser.add_argument("--index-dir", required=True, type=Path)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.index_dir, args.listen, args.ef, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
