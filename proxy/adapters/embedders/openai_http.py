"""The remote embedders of each endpoint kind: OpenAI-compatible, Azure OpenAI, text-embeddings-inference
(native `/embed`) and Ollama (`/api/embed`). The HTTP work is `RemoteEmbedder`'s; each kind only chooses its
dialect and reads its API key from the environment (the key itself never sits in a config file)."""

from __future__ import annotations

from typing import Literal

from proxy.adapters.embedders.http_dialects import (
    AzureOpenAIDialect,
    OllamaDialect,
    OpenAIDialect,
    TEIDialect,
)
from proxy.adapters.embedders.rate_limits import ProviderLimits
from proxy.adapters.embedders.remote_http import RemoteEmbedder, RemoteOptions, RetryPolicy, read_api_key

__all__ = [
    "OpenAIEmbedder",
    "RemoteOptions",
    "RetryPolicy",
    "azure_openai_embedder",
    "ollama_embedder",
    "tei_embedder",
]


class OpenAIEmbedder(RemoteEmbedder):
    """`POST {base_url}/embeddings`, the API OpenAI and many servers (vLLM, TEI's /v1, LiteLLM) speak."""

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
        limits: ProviderLimits | None = None,
        document_input_type: str | None = None,
        query_input_type: str | None = None,
    ) -> None:
        key = read_api_key(name, api_key_env)
        options = RemoteOptions(
            timeout_s=timeout_s,
            batch_size=batch_size,
            retry=retry or RetryPolicy(),
            limits=limits or ProviderLimits(),
            document_input_type=document_input_type,
            query_input_type=query_input_type,
        )
        super().__init__(name, OpenAIDialect(base_url, model, key), dim=dim, api_key=key, options=options)


def azure_openai_embedder(
    name: str,
    *,
    endpoint: str,
    deployment: str,
    dim: int,
    api_key_env: str | None,
    api_version: str | None = None,
    auth: Literal["api-key", "bearer"] = "api-key",
    options: RemoteOptions | None = None,
) -> RemoteEmbedder:
    """Azure OpenAI; `auth="bearer"` sends the variable's value as an Entra access token."""
    key = read_api_key(name, api_key_env)
    dialect = AzureOpenAIDialect(endpoint, deployment, api_version, auth, key)
    return RemoteEmbedder(name, dialect, dim=dim, api_key=key, options=options)


def tei_embedder(
    name: str,
    *,
    base_url: str,
    dim: int,
    api_key_env: str | None = None,
    truncate: bool = False,
    options: RemoteOptions | None = None,
) -> RemoteEmbedder:
    key = read_api_key(name, api_key_env)
    return RemoteEmbedder(name, TEIDialect(base_url, truncate, key), dim=dim, api_key=key, options=options)


def ollama_embedder(
    name: str,
    *,
    base_url: str,
    model: str,
    dim: int,
    api_key_env: str | None = None,
    options: RemoteOptions | None = None,
) -> RemoteEmbedder:
    key = read_api_key(name, api_key_env)
    return RemoteEmbedder(name, OllamaDialect(base_url, model, key), dim=dim, api_key=key, options=options)
