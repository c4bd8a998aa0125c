"""One Milvus client per index, with the library's failures raised as the core's errors.

The URI picks the engine: a local path ending in `.db` runs milvus-lite (a real Milvus engine that pymilvus
starts inside this process, on a folder of that name), and an `http://`, `https://` or `tcp://` URI reaches a
Milvus server or cluster with the same calls. Nothing else changes between the two.

Unavailable when the engine cannot be reached (the message names the URI, credentials masked), IndexClosed
after `close`, ConfigError for a URI neither form accepts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from proxy.core.errors import ConfigError, IndexClosed, Unavailable

T = TypeVar("T")

_SCHEMES = ("http://", "https://", "tcp://", "unix:")

# pymilvus logs every failed RPC at ERROR with its traceback before raising it, and milvus-lite logs its own
# start-up failures (a `.db` folder another process holds) the same way; the adapter raises each one as a
# one-line error of the core's hierarchy, which the caller logs or shows once. faiss (milvus-lite's HNSW)
# reports at INFO which CPU build it loaded.
for _logger in ("pymilvus", "milvus_lite"):
    logging.getLogger(_logger).setLevel(logging.CRITICAL)
logging.getLogger("faiss").setLevel(logging.WARNING)


def redact_uri(uri: str) -> str:
    """The URI with any user:password@ part masked, for error messages and logs."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


def is_local(uri: str) -> bool:
    """True for an embedded milvus-lite engine (a `.db` path), False for a server URI."""
    return not uri.startswith(_SCHEMES)


def check_uri(index: str, uri: str) -> None:
    if not uri.startswith(_SCHEMES) and not uri.endswith(".db"):
        raise ConfigError(
            f"milvus index {index!r}: uri {uri!r} is neither a milvus-lite path ending in .db nor an"
            " http(s):// or tcp:// URI of a Milvus server"
        )


def reason(exc: MilvusException) -> str:
    """The library's message on one line, without its class name and code wrapper."""
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())


def unavailable(index: str, uri: str, exc: BaseException) -> Unavailable:
    text = reason(exc) if isinstance(exc, MilvusException) else " ".join(str(exc).split())
    return Unavailable(f"milvus index {index!r}: Milvus at {redact_uri(uri)} failed: {text}")


def connect(index: str, uri: str, token: str | None, timeout_s: float) -> MilvusClient:
    """A client that has answered one call: a server that cannot be reached fails here, not on first use."""
    check_uri(index, uri)
    try:
        if is_local(uri):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        client = MilvusClient(uri=uri, token=token or "", timeout=timeout_s)
        client.list_collections(timeout=timeout_s)
    except OSError as exc:
        raise ConfigError(
            f"milvus index {index!r}: cannot create the milvus-lite folder {uri!r}: {exc}"
        ) from None
    except MilvusException as exc:
        raise Unavailable(
            f"milvus index {index!r}: cannot reach Milvus at {redact_uri(uri)} ({reason(exc)}); check that"
            " the server is running at that address and that the token is right"
        ) from None
    return client


class Client:
    """The index's MilvusClient: every call's MilvusException becomes Unavailable naming the URI."""

    def __init__(self, index: str, uri: str, token: str | None, timeout_s: float) -> None:
        self._index = index
        self._uri = uri
        self.timeout_s = timeout_s
        self._client: MilvusClient | None = connect(index, uri, token, timeout_s)

    @property
    def uri(self) -> str:
        return redact_uri(self._uri)

    def call(self, operation: Callable[[MilvusClient], T]) -> T:
        client = self._client
        if client is None:
            raise IndexClosed(f"milvus index {self._index!r} is closed")
        try:
            return operation(client)
        except MilvusException as exc:
            raise unavailable(self._index, self._uri, exc) from None

    def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`MilvusClient.<method>(*args, **kwargs)`, its failures raised as `call` raises them."""
        return self.call(lambda client: getattr(client, method)(*args, **kwargs))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
