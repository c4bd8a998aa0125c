"""gRPC servicer for the data plane: validate the request shape, call the core off the event loop, map back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import TypeVar

import grpc

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy._gen.switchyard.v1 import vector_service_pb2_grpc as pb_grpc
from proxy.core.collections import Collections
from proxy.core.errors import InvalidArgument
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.rerank import MAX_RERANK_CANDIDATES
from proxy.core.service import QueryInput, QueryOutcome, VectorService
from proxy.core.validation import check_vector
from proxy.transport.errors import grpc_errors

T = TypeVar("T")

MODE_TO_PB = {
    RoutingMode.OLD: pb.ROUTING_MODE_OLD,
    RoutingMode.SHADOW: pb.ROUTING_MODE_SHADOW,
    RoutingMode.DUAL: pb.ROUTING_MODE_DUAL,
    RoutingMode.NEW: pb.ROUTING_MODE_NEW,
}
PB_TO_MODE = {v: k for k, v in MODE_TO_PB.items()}


class VectorServicer(pb_grpc.VectorServiceServicer):
    def __init__(
        self,
        services: Collections[VectorService],
        executor: Executor,
        model_dims: Mapping[str, int],
        latency_sink: Callable[[float], None] | None = None,
    ) -> None:
        self._services = services
        self._executor = executor
        self._dims = dict(model_dims)
        self._latency_sink = latency_sink
        """Gets each answered query's seconds from handler entry to response, waits for a thread included."""

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        # Embedding, hnswlib and SQLite block; the event loop must stay free for other calls.
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @grpc_errors
    async def Upsert(self, request: pb.UpsertRequest, context: grpc.aio.ServicerContext) -> pb.UpsertResponse:
        service = self._services.get(request.collection)
        documents = [self._document(d, i) for i, d in enumerate(request.documents)]
        versions = await self._off_loop(lambda: service.upsert(documents))
        return pb.UpsertResponse(versions=[pb.DocumentVersion(id=i, version=v) for i, v in versions.items()])

    @grpc_errors
    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext) -> pb.DeleteResponse:
        service = self._services.get(request.collection)
        ids = list(request.ids)
        deleted, missing = await self._off_loop(lambda: service.delete(ids))
        return pb.DeleteResponse(
            deleted=[pb.DocumentVersion(id=i, version=v) for i, v in deleted.items()], missing_ids=missing
        )

    @grpc_errors
    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext) -> pb.GetResponse:
        service = self._services.get(request.collection)
        ids = list(request.ids)
        reads, missing = await self._off_loop(lambda: service.get(ids))
        documents = [
            pb.StoredDocument(
                id=r.document.id,
                text=r.document.text,
                metadata=r.document.metadata,
                version=r.document.version,
                indexes=list(r.indexes),
            )
            for r in reads
        ]
        return pb.GetResponse(documents=documents, missing_ids=missing)

    @grpc_errors
    async def Query(self, request: pb.QueryRequest, context: grpc.aio.ServicerContext) -> pb.QueryResponse:
        started = time.perf_counter()
        service = self._services.get(request.collection)
        query = self._query(request)
        response = await self._off_loop(lambda: _query_response(service.query(query)))
        if self._latency_sink is not None:
            # Measured here rather than in the core: a backfill slows queries mostly by making them wait
            # for a thread and the GIL, which time inside the service would not show.
            self._latency_sink(time.perf_counter() - started)
        return response

    def _document(self, doc: pb.Document, position: int) -> DocumentInput:
        vector, model = None, ""
        if doc.HasField("embedding"):
            where = f"documents[{position}].embedding"
            vector = check_vector(doc.embedding.values, doc.embedding.model, self._dims, where)
            model = doc.embedding.model
        return DocumentInput(doc.id, doc.text, dict(doc.metadata), vector, model)

    def _query(self, request: pb.QueryRequest) -> QueryInput:
        vector, model = None, ""
        if request.HasField("embedding"):
            vector = check_vector(request.embedding.values, request.embedding.model, self._dims, "embedding")
            model = request.embedding.model
        return QueryInput(
            k=request.k,
            text=request.text,
            vector=vector,
            vector_model=model,
            where=dict(request.filter),
            routing_key=request.routing_key,
            override=PB_TO_MODE.get(request.mode),
            include_text=request.include_text,
            rerank_candidates=_rerank_candidates(request),
        )


def _query_response(outcome: QueryOutcome) -> pb.QueryResponse:
    response = pb.QueryResponse(
        served_by=MODE_TO_PB[outcome.served_by],
        coverage=outcome.coverage,
        merge_strategy=outcome.merge_strategy,
        degraded=outcome.degraded,
        failed_legs=outcome.failed_legs,
        routing_reason=outcome.reason,
    )
    rerank = outcome.rerank
    if rerank.candidates:
        response.rerank.candidates = rerank.candidates
        response.rerank.uncovered = rerank.uncovered
        response.rerank.embedded_now = rerank.embedded_now
        response.rerank.from_cache = rerank.from_cache
        response.rerank.skipped = rerank.skipped
        response.rerank.time_ms = rerank.seconds * 1000
        response.rerank.fallback = rerank.fallback
    # Built in place field by field: this runs for every hit of every query, and constructing a QueryHit with
    # keywords and then copying it into the list costs about twice as much.
    add = response.hits.add
    for hit in outcome.hits:
        message = add()
        message.id = hit.id
        message.score = hit.score
        message.version = hit.version
        message.index = hit.index
        message.model = hit.model
        message.raw_score = hit.raw_score
        if hit.text:
            message.text = hit.text
        if hit.metadata:
            metadata = message.metadata
            for key, value in hit.metadata.items():
                metadata[key] = value
    return response


def _rerank_candidates(request: pb.QueryRequest) -> int | None:
    if not request.HasField("rerank_candidates"):
        return None
    if request.rerank_candidates > MAX_RERANK_CANDIDATES:
        raise InvalidArgument(
            f"rerank_candidates is {request.rerank_candidates}; at most {MAX_RERANK_CANDIDATES} "
            "(0 turns re-ranking off for the request)"
        )
    return request.rerank_candidates
