"""An embedder that calls a remote embeddings API over HTTP, several batches at once within the provider's limits.

The API itself (URL, auth header, body, answer) is a `Dialect` (http_dialects.py): OpenAI-compatible, Azure
OpenAI, text-embeddings-inference or Ollama. Texts are cut into batches of at most `batch_size`; the batches
of one call go out concurrently, each admitted by the `RequestLimiter` (adaptive concurrency, per-minute
budgets, the server's rate-limit headers), and come back in input order. One batch alone runs on the
caller's thread (a query pays no hop to a pool).

Rate limits (429), server errors (5xx, 408), timeouts and connection failures are retried with exponential
backoff and jitter, honouring Retry-After; once the retries are spent the call raises Unavailable, which the
core treats as "this leg is down, retry later". A batch the server refuses as too large (413, or a 400/422
that names the batch size, as TEI's `--max-client-batch-size` does) is split in halves and sent again, and
the accepted size is kept for later calls. Other 4xx answers are not retried: 401/403/404 mean the config is
wrong (key, URL or model name) and raise ConfigError; 400/413/422 on one input mean the server rejected the
input and raise InvalidArgument. Every message names the URL and carries the server's own message; the API
key never appears in a message or a log line.

The server's vectors are checked against the configured `dim` and L2-normalized here, because not every
server normalizes, and the index compares vectors by cosine or inner product.

Sync on purpose: the core calls embedders from worker threads; httpx.Client is thread-safe and keeps
connections alive across calls.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import re
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from proxy.adapters.embedders.http_dialects import Dialect, MalformedResponse
from proxy.adapters.embedders.rate_limits import ProviderLimits, RequestLimiter, estimate_tokens
from proxy.core.errors import ConfigError, InvalidArgument, Unavailable
from proxy.core.model import EmbedderLoad, Vector

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONFIG_STATUS = frozenset({401, 403, 404})
_MAX_SERVER_MESSAGE = 300
_NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
# How servers say "fewer inputs per request": TEI ("batch size 64 > maximum allowed batch size 32"), OpenAI
# ("max 300000 tokens per request", an input array over 2,048 items), proxies ("Request Entity Too Large").
# A text too long for the model ("maximum context length is 8192 tokens") is not among them: splitting would
# not help it, and would leave the remembered batch size needlessly small.
_TOO_LARGE = re.compile(
    r"batch.?size|too many (inputs|items|texts)|tokens per request|entity too large|payload too large"
    r"|(array|list) too long|maximum \d+ (inputs|items|elements)|at most \d+ (inputs|items|elements)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    """Retries after the first attempt; 0 tries once."""
    backoff_s: float = 0.5
    """Delay before the first retry; it doubles on each further retry."""
    max_backoff_s: float = 20.0
    """Cap on one delay, Retry-After included: a server asking for longer is treated as down for now."""
    max_throttled_retries: int = 30
    """Retries of 429 answers: a rate limit is the server pacing us, not failing, so it gets more patience."""

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        ceiling = min(self.backoff_s * 2.0**retry, self.max_backoff_s)
        # "Equal jitter": at least half the backoff, so retries stay spaced out, and a random rest, so
        # replicas that failed together do not all come back in the same instant.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class RemoteOptions:
    """What every endpoint kind shares."""

    timeout_s: float = 30.0
    batch_size: int = 64
    """Inputs per request at most (the server's own cap is learnt from its refusals)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: ProviderLimits = field(default_factory=ProviderLimits)
    document_input_type: str | None = None
    query_input_type: str | None = None
    """Sent as `input_type` by dialects whose servers embed documents and queries apart."""


class _TooLarge(Exception):
    """The server refused a batch for its number of inputs."""


class RemoteEmbedder:
    """Embeds through a remote HTTP API; vectors are validated against `dim` and L2-normalized."""

    def __init__(
        self,
        name: str,
        dialect: Dialect,
        *,
        dim: int,
        api_key: str | None = None,
        options: RemoteOptions | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`api_key` is only used to blank the key out of server messages that echo it; `transport` replaces
        the network (tests)."""
        options = options or RemoteOptions()
        if dim <= 0 or options.batch_size <= 0:
            raise ValueError(f"dim and batch_size must be positive, got {dim} and {options.batch_size}")
        self._name = name
        self._dialect = dialect
        self._dim = dim
        self._batch_size = options.batch_size
        self._retry = options.retry
        self._limiter = RequestLimiter(options.limits)
        self._document_input_type = options.document_input_type
        self._query_input_type = options.query_input_type
        self._url = dialect.url
        self._api_key = api_key
        # TCP_NODELAY: a request's headers and body leave in two writes; with Nagle the body waits for the ACK of
        # the headers, which a server's delayed ACK holds for up to 40 ms: a fifth of a 200 ms round trip.
        self._client = httpx.Client(
            headers=dialect.headers,
            timeout=options.timeout_s,
            transport=transport or httpx.HTTPTransport(socket_options=[_NO_DELAY]),
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=options.limits.max_concurrency * 2
            ),
        )
        self._pool: ThreadPoolExecutor | None = None

    @property
    def model(self) -> str:
        return self._name

    @property
    def model_id(self) -> str:
        """The model (or deployment) name the server serves."""
        return self._dialect.model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return False

    @property
    def url(self) -> str:
        return self._url

    def load(self) -> EmbedderLoad:
        """`ReportsLoad`: requests against the limits, for status and metrics."""
        return self._limiter.stats()

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds documents, in order; sends `document_input_type` as `input_type` when configured."""
        return self._embed(texts, self._document_input_type, urgent=False)

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds search queries, ahead of waiting document batches; sends `query_input_type` as `input_type`
        when configured."""
        return self._embed(texts, self._query_input_type, urgent=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()

    def _embed(self, texts: Sequence[str], input_type: str | None, urgent: bool) -> list[Vector]:
        size = self._limiter.batch_size(self._batch_size)
        batches = [list(texts[start : start + size]) for start in range(0, len(texts), size)]
        if len(batches) <= 1:
            return self._embed_batch(batches[0], input_type, urgent) if batches else []
        if self._pool is None:
            # As many threads as slots at most; the limiter decides how many of them send at once.
            self._pool = ThreadPoolExecutor(
                self._limiter.limits.max_concurrency, thread_name_prefix=f"switchyard-embed-{self._name}"
            )
        futures = [self._pool.submit(self._embed_batch, batch, input_type, urgent) for batch in batches]
        vectors: list[Vector] = []
        try:
            for future in futures:
                vectors.extend(future.result())
        finally:
            for future in futures:
                future.cancel()  # after a failure: batches not yet started are not sent
        return vectors

    def _embed_batch(self, texts: list[str], input_type: str | None, urgent: bool) -> list[Vector]:
        try:
            body = self._dialect.body(texts, input_type)
            payload = self._post(body, len(texts), sum(map(estimate_tokens, texts)), urgent)
        except _TooLarge:
            cap = self._limiter.refused_as_too_large(len(texts))
            log.warning(
                "embedding server %s refused %d inputs in one request; sending %d", self._url, len(texts), cap
            )
            vectors: list[Vector] = []
            while len(vectors) < len(texts):
                # The cap as known now: a piece refused in turn lowers it for the pieces after it.
                piece = texts[len(vectors) : len(vectors) + self._limiter.batch_size(len(texts))]
                self._limiter.retrying()
                vectors.extend(self._embed_batch(piece, input_type, urgent))
            return vectors
        try:
            rows = self._dialect.rows(payload, len(texts))
            matrix = np.asarray(rows, dtype=np.float32)
        except MalformedResponse as exc:
            raise self._malformed(str(exc)) from None
        except (TypeError, ValueError):
            raise self._malformed("embeddings must be lists of numbers of one length") from None
        return self._normalized(matrix)

    def _post(self, body: dict[str, Any], inputs: int, tokens: int, urgent: bool) -> Any:
        """The decoded JSON of a 2xx answer, after retrying what is worth retrying."""
        problem = ""
        retry_after: float | None = None
        failures = throttles = 0
        while True:
            self._limiter.acquire(tokens, urgent)
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TransportError as exc:
                self._limiter.failed()
                problem, retry_after, failures = f"{type(exc).__name__}: {exc}", None, failures + 1
            else:
                if response.is_success:
                    self._limiter.succeeded(response.headers)
                    return self._json(response)
                retry_after = _retry_after(response)
                if response.status_code == 429:
                    self._limiter.throttled(retry_after, response.headers)
                    throttles += 1
                else:
                    self._limiter.failed()
                    failures += 1
                    if response.status_code not in _RETRYABLE_STATUS:
                        raise self._rejection(response, inputs)
                problem = f"HTTP {response.status_code}: {self._server_message(response)}"
            if failures > self._retry.max_retries or throttles > self._retry.max_throttled_retries:
                raise Unavailable(
                    f"embedding server {self._url} unavailable after {failures + throttles} attempts; "
                    f"last error: {problem}"
                )
            self._wait_before_retry(failures + throttles - 1, retry_after, problem)

    def _wait_before_retry(self, retry: int, retry_after: float | None, problem: str) -> None:
        delay = self._retry.delay(retry, retry_after)
        log.warning(
            "embedding request to %s failed (%s); retry %d in %.2fs", self._url, problem, retry + 1, delay
        )
        self._limiter.retrying()
        time.sleep(delay)

    def _rejection(self, response: httpx.Response, inputs: int) -> Exception:
        server_message = self._server_message(response)
        status = response.status_code
        if inputs > 1 and (status == 413 or (status in (400, 422) and _TOO_LARGE.search(server_message))):
            return _TooLarge()
        message = f"embedding server {self._url} answered HTTP {status}: {server_message}"
        # A redirect is a config problem too: the URL should name the API itself.
        if status in _CONFIG_STATUS or status < 400:
            return ConfigError(f"{message} (check models.{self._name}: URL, model or deployment, API key)")
        if 400 <= status < 500:
            return InvalidArgument(message)
        return Unavailable(message)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ConfigError(
                f"embedding server {self._url} answered {response.status_code} with a body that is not JSON; "
                "is the URL the embeddings API (for OpenAI-compatible servers usually ending in /v1)?"
            ) from None

    def _normalized(self, matrix: np.ndarray) -> list[Vector]:
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            got = matrix.shape[1] if matrix.ndim == 2 else "ragged"
            raise ConfigError(
                f"embedding server {self._url} returned vectors of dimension {got} for model "
                f"{self.model_id!r}, but models.{self._name}.dim is {self._dim}"
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise self._malformed("an embedding is all zeros or not finite")
        return list(matrix / norms)

    def _malformed(self, problem: str) -> ConfigError:
        return ConfigError(f"embedding server {self._url} sent a malformed response: {problem}")

    def _server_message(self, response: httpx.Response) -> str:
        """The server's own error text, short and with the API key blanked (some servers echo it)."""
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        message = _extract_message(payload)[:_MAX_SERVER_MESSAGE] or response.reason_phrase
        return message.replace(self._api_key, "***") if self._api_key else message


def read_api_key(name: str, env: str | None) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env, "").strip()
    if not key:
        raise ConfigError(f"models.{name}.api_key_env: environment variable {env} is not set or empty")
    return key


def _extract_message(payload: Any) -> str:
    # OpenAI: {"error": {"message": ...}}; others use {"error": "..."}, {"detail": ...} or {"message": ...}.
    if isinstance(payload, dict):
        for key in ("error", "detail", "message"):
            if key in payload:
                return _extract_message(payload[key])
        return str(payload)
    if isinstance(payload, list):
        return "; ".join(_extract_message(item) for item in payload)
    return str(payload).strip()


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date (RFC 9110); OpenAI's finer
    `retry-after-ms` first, as its SDK reads it (Retry-After is rounded up to whole seconds)."""
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
