"""Bearer-token checks for the gRPC services, per service prefix; health and reflection stay open."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

ADMIN_PREFIX = "/switchyard.v1.AdminService/"
DATA_PREFIX = "/switchyard.v1.VectorService/"


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: Mapping[str, bytes]) -> None:
        """`tokens` maps a method prefix (ADMIN_PREFIX, DATA_PREFIX) to the token its calls must carry."""
        self._tokens = dict(tokens)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        expected = next((t for prefix, t in self._tokens.items() if method.startswith(prefix)), None)
        if expected is None or _matches(handler_call_details, expected):
            return await continuation(handler_call_details)
        return grpc.unary_unary_rpc_method_handler(_deny)


def _matches(details: grpc.HandlerCallDetails, expected: bytes) -> bool:
    header = next((str(v) for k, v in details.invocation_metadata or () if k == "authorization"), "")
    # Constant-time comparison: the time taken must not reveal how much of a guessed token was right.
    return hmac.compare_digest(header.encode(), b"Bearer " + expected)


async def _deny(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or wrong bearer token: send `authorization: Bearer <token>` (switchyard migrate --token-env)",
    )
