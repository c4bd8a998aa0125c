"""A small typed client for the sidecar, used by the CLI, the demo and the tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import admin_service_pb2_grpc as admin_grpc
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy._gen.switchyard.v1 import vector_service_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    vector: Sequence[float] | None = None
    vector_model: str = ""

    def to_pb(self) -> pb.Document:
        doc = pb.Document(id=self.id, text=self.text, metadata=dict(self.metadata))
        if self.vector is not None:
            doc.embedding.CopyFrom(pb.Embedding(model=self.vector_model, values=list(self.vector)))
        return doc


class _BearerToken(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return continuation(details._replace(metadata=metadata), request)


class SwitchyardClient:
    def __init__(
        self,
        target: str,
        timeout_s: float = 30.0,
        *,
        token: str | None = None,
        tls_ca: bytes | None = None,
        collection: str = "",
    ) -> None:
        """`token`: bearer token for services that require one; `tls_ca`: PEM of the CA that signed the server;
        `collection`: the collection calls act on unless they name another (empty: the sidecar's default)."""
        self.collection = collection
        channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=tls_ca))
            if tls_ca is not None
            else grpc.insecure_channel(target)
        )
        self.channel = grpc.intercept_channel(channel, _BearerToken(token)) if token else channel
        self._raw_channel = channel
        # The generated stubs are untyped: each call is annotated below with the response its RPC declares.
        self.vectors = pb_grpc.VectorServiceStub(self.channel)
        self.admin = admin_grpc.AdminServiceStub(self.channel)
        self.timeout_s = timeout_s

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        ready = grpc.channel_ready_future(self._raw_channel)
        try:
            ready.result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            # Its polling thread would otherwise outlive a close() and die on the closed channel.
            ready.cancel()
            raise

    def _collection(self, collection: str | None) -> str:
        return self.collection if collection is None else collection

    def upsert(self, docs: Sequence[Doc], *, collection: str | None = None) -> dict[str, int]:
        request = pb.UpsertRequest(
            documents=[d.to_pb() for d in docs], collection=self._collection(collection)
        )
        response: pb.UpsertResponse = self.vectors.Upsert(request, timeout=self.timeout_s)
        return {v.id: v.version for v in response.versions}

    def delete(self, ids: Sequence[str], *, collection: str | None = None) -> pb.DeleteResponse:
        request = pb.DeleteRequest(ids=list(ids), collection=self._collection(collection))
        response: pb.DeleteResponse = self.vectors.Delete(request, timeout=self.timeout_s)
        return response

    def get(self, ids: Sequence[str], *, collection: str | None = None) -> pb.GetResponse:
        request = pb.GetRequest(ids=list(ids), collection=self._collection(collection))
        response: pb.GetResponse = self.vectors.Get(request, timeout=self.timeout_s)
        return response

    def query(
        self,
        text: str = "",
        k: int = 10,
        *,
        vector: Sequence[float] | None = None,
        vector_model: str = "",
        where: Mapping[str, str] | None = None,
        routing_key: str = "",
        mode: pb.RoutingMode = pb.ROUTING_MODE_UNSPECIFIED,
        include_text: bool = False,
        collection: str | None = None,
        rerank_candidates: int | None = None,
    ) -> pb.QueryResponse:
        """`rerank_candidates`: k' for candidate re-ranking on a dual query; None: the collection's setting."""
        request = pb.QueryRequest(
            collection=self._collection(collection),
            text=text,
            k=k,
            filter=dict(where or {}),
            routing_key=routing_key,
            mode=mode,
            include_text=include_text,
        )
        if vector is not None:
            request.embedding.CopyFrom(pb.Embedding(model=vector_model, values=list(vector)))
        if rerank_candidates is not None:
            request.rerank_candidates = rerank_candidates
        response: pb.QueryResponse = self.vectors.Query(request, timeout=self.timeout_s)
        return response

    def status(self, *, collection: str | None = None) -> admin_pb.GetMigrationStatusResponse:
        request = admin_pb.GetMigrationStatusRequest(collection=self._collection(collection))
        response: admin_pb.GetMigrationStatusResponse = self.admin.GetMigrationStatus(
            request, timeout=self.timeout_s
        )
        return response

    def collections(self) -> list[admin_pb.CollectionSummary]:
        """Every collection the sidecar serves, with its serving index, phase and coverage."""
        response: admin_pb.ListCollectionsResponse = self.admin.ListCollections(
            admin_pb.ListCollectionsRequest(), timeout=self.timeout_s
        )
        return list(response.collections)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SwitchyardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
