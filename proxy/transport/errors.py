"""Maps core errors to gRPC status codes, so every failure reaches the caller as a status with a message."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from proxy.core.errors import (
    ConfigError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SwitchyardError,
    Unavailable,
)

log = logging.getLogger(__name__)

_CODES: dict[type[SwitchyardError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    # Met while serving (a rejected API key, a mismatched table): the operator must fix the config.
    ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
}

R = TypeVar("R")


def status_for(error: SwitchyardError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def grpc_errors(
    method: Callable[..., Awaitable[R]],
) -> Callable[..., Awaitable[R]]:
    """Turns SwitchyardError into the matching status; anything else becomes INTERNAL and is logged."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except SwitchyardError as exc:
            await context.abort(status_for(exc), str(exc))
        except Exception:
            log.exception("unexpected error in %s", method.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}; see server log"
            )
        raise AssertionError("unreachable: context.abort raises")

    return wrapper
