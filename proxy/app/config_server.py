"""The sidecar's own settings in the config: listening, TLS, auth, the state store, telemetry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from proxy.core.errors import ConfigError


class StrictModel(BaseModel):
    # A typo in a config key must fail loudly instead of silently falling back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(StrictModel):
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    """When set, clients must present a certificate signed by this CA (mutual TLS)."""


class AuthConfig(StrictModel):
    """Bearer tokens, read from environment variables so no secret sits in the config file."""

    admin_token_env: str | None = None
    """Variable holding the token the Admin service requires (`authorization: Bearer <token>`)."""
    data_token_env: str | None = None
    """Variable holding the token the data plane requires; unset: the data plane is open."""

    def token(self, which: Literal["admin", "data"]) -> bytes | None:
        name = self.admin_token_env if which == "admin" else self.data_token_env
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"server.auth.{which}_token_env names {name}, but that environment variable is empty"
            )
        return value.encode()


class ServerConfig(StrictModel):
    listen: str = "127.0.0.1:50051"
    admin_listen: str | None = None
    """A separate host:port for the Admin service (e.g. only on localhost); unset: same port as `listen`."""
    tls: TlsConfig | None = None
    auth: AuthConfig = AuthConfig()
    max_batch_size: Annotated[int, Field(gt=0, le=100_000)] = 256
    max_k: Annotated[int, Field(gt=0, le=10_000)] = 100
    max_text_chars: Annotated[int, Field(gt=0)] = 100_000
    workers: Annotated[int, Field(gt=0, le=256)] = 16
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 10.0


class StateConfig(StrictModel):
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "default"


class TelemetryConfig(StrictModel):
    metrics_listen: str | None = "127.0.0.1:9464"
    """host:port of the Prometheus /metrics endpoint; null turns it off (use 0.0.0.0 in a pod)."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector, e.g. http://otel-collector:4317: traces and metrics are pushed there."""
    tracing: bool = False
    """Record spans even without an OTLP endpoint (for a span processor added in code)."""
    service_name: str = "switchyard"
