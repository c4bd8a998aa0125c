"""Each remote endpoint kind against a local server that speaks its API (proxy/bench/embed_server.py): URL, auth,
body, vectors; how errors, oversized batches and rate limits are answered; concurrency; the key kept secret.
The server runs on a thread here, on 127.0.0.1, and is shut down after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.embedders.http_dialects import OpenAIDialect
from proxy.adapters.embedders.remote_http import RemoteEmbedder, RemoteOptions, RetryPolicy
from proxy.app.config import parse_config
from proxy.app.telemetry_gauges import embedder_gauges
from proxy.app.wiring import build_embedder
from proxy.bench.embed_concurrency import backfill_through, doc_text
from proxy.bench.embed_server import EmbedServer, ServerRules, vector
from proxy.cli.progress import status_report
from proxy.core.errors import ConfigError, Unavailable
from proxy.transport.admin_service import status_to_pb
from tests.migration_support import drain, in_process_app, load_corpus, migration_config

DIM = 16
SECRET = "sk-test-very-secret-4242"


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[EmbedServer] = []

    def start(**rules: Any) -> EmbedServer:
        server = EmbedServer(ServerRules(**{"dim": DIM, **rules})).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


def model_config(kind: str, root: str, **extra: Any) -> dict[str, Any]:
    shapes: dict[str, dict[str, Any]] = {
        "openai": {"kind": "openai", "base_url": f"{root}/v1", "model": "text-embedding-3-small"},
        "azure-v1": {"kind": "azure-openai", "endpoint": root, "deployment": "emb-deploy"},
        "azure-deployments": {
            "kind": "azure-openai",
            "endpoint": root,
            "deployment": "emb-deploy",
            "api_version": "2024-10-21",
        },
        "tei": {"kind": "tei", "base_url": root},
        "ollama": {"kind": "ollama", "base_url": root, "model": "nomic-embed-text"},
    }
    return {**shapes[kind], "dim": DIM, "max_retries": 2, **extra}


def build(kind: str, root: str, **extra: Any) -> RemoteEmbedder:
    raw = {
        "models": {"remote": model_config(kind, root, **extra)},
        "indexes": {"i": {"model": "remote"}},
        "serving_index": "i",
    }
    embedder = build_embedder("remote", parse_config(raw).models["remote"])
    assert isinstance(embedder, RemoteEmbedder)
    return embedder


def expected(text: str) -> np.ndarray:
    v = np.asarray(vector(text, DIM), dtype=np.float32)
    return v / np.linalg.norm(v)


WIRE = [
    # kind, path, query, auth header (name, value), body keys, model in body
    (
        "openai",
        "/v1/embeddings",
        "",
        ("authorization", f"Bearer {SECRET}"),
        {"model", "input"},
        "text-embedding-3-small",
    ),
    ("azure-v1", "/openai/v1/embeddings", "", ("api-key", SECRET), {"model", "input"}, "emb-deploy"),
    (
        "azure-deployments",
        "/openai/deployments/emb-deploy/embeddings",
        "api-version=2024-10-21",
        ("api-key", SECRET),
        {"input"},
        None,
    ),
    ("tei", "/embed", "", ("authorization", f"Bearer {SECRET}"), {"inputs"}, None),
    (
        "ollama",
        "/api/embed",
        "",
        ("authorization", f"Bearer {SECRET}"),
        {"model", "input"},
        "nomic-embed-text",
    ),
]


@pytest.mark.parametrize(("kind", "path", "query", "auth", "keys", "model"), WIRE, ids=[w[0] for w in WIRE])
def test_each_kind_sends_its_url_auth_and_body_and_reads_its_answer(
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    path: str,
    query: str,
    auth: tuple[str, str],
    keys: set[str],
    model: str | None,
) -> None:
    monkeypatch.setenv("EMBED_KEY", SECRET)
    server = serve(api_key=SECRET)
    texts = [f"text {n}" for n in range(5)]
    vectors = build(kind, server.root, api_key_env="EMBED_KEY", batch_size=2).embed(texts)
    requests = server.state.requests
    assert [(r.path, r.query, r.status) for r in requests] == [(path, query, 200)] * 3
    assert all(r.headers.get(auth[0]) == auth[1] for r in requests)
    other = "authorization" if auth[0] == "api-key" else "api-key"
    assert all(other not in r.headers for r in requests)  # the key goes in one header only
    assert all(set(r.body) == keys for r in requests)
    assert all(r.body.get("model") == model for r in requests)
    sent = [t for r in requests for t in (r.body.get("input") or r.body.get("inputs"))]
    assert sorted(sent) == sorted(texts)
    for text, got in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(got, expected(text), atol=1e-5)


def test_azure_sends_an_entra_token_as_a_bearer_when_asked(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TOKEN", SECRET)
    server = serve(api_key=SECRET)
    build("azure-v1", server.root, api_key_env="AZURE_TOKEN", auth="bearer").embed(["hello"])
    (request,) = server.state.requests
    assert request.headers["authorization"] == f"Bearer {SECRET}" and "api-key" not in request.headers


@pytest.mark.parametrize("kind", ["openai", "azure-v1", "tei", "ollama"])
def test_a_wrong_key_is_a_config_error_and_the_key_is_in_no_message_log_or_status(
    serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    monkeypatch.setenv("EMBED_KEY", SECRET)
    server = serve(api_key="the-right-key")
    embedder = build(kind, server.root, api_key_env="EMBED_KEY")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as info:
        embedder.embed(["hello"])
    assert "HTTP 401" in str(info.value) and "models.remote" in str(info.value)
    assert len(server.state.requests) == 1  # not retried: a wrong key stays wrong
    shown = [str(info.value), caplog.text, repr(embedder.load()), repr(embedder), repr(embedder._dialect)]
    assert all(SECRET not in text for text in shown)


def test_a_server_that_echoes_the_key_in_retried_errors_never_gets_it_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": f"overloaded, key {SECRET} queued"}})

    embedder = RemoteEmbedder(
        "remote",
        OpenAIDialect("http://127.0.0.1:9/v1", "m", SECRET),
        dim=DIM,
        api_key=SECRET,
        options=RemoteOptions(retry=RetryPolicy(max_retries=2, backoff_s=0.001)),
        transport=httpx.MockTransport(echo),
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(Unavailable) as info:
        embedder.embed(["hello"])
    assert "overloaded, key *** queued" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in caplog.text
    assert "***" in caplog.text and embedder.load().retries == 2


@pytest.mark.parametrize(("kind", "status"), [("tei", 422), ("openai", 413), ("ollama", 413)])
def test_a_batch_too_large_for_the_server_is_split_and_the_accepted_size_kept(
    serve: Any, kind: str, status: int
) -> None:
    server = serve(max_batch=8)
    embedder = build(kind, server.root, batch_size=32, max_concurrency=1)
    texts = [f"text {n}" for n in range(40)]
    vectors = embedder.embed(texts)
    for text, got in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(got, expected(text), atol=1e-5)
    refused = [len(r.body.get("input") or r.body["inputs"]) for r in server.state.requests if r.status != 200]
    assert refused == [32, 16] and {r.status for r in server.state.requests if r.status != 200} == {status}
    assert server.state.embedded == dict.fromkeys(texts, 1)
    server.state.requests.clear()
    embedder.embed(texts)
    assert all(
        r.status == 200 and len(r.body.get("input") or r.body["inputs"]) <= 8 for r in server.state.requests
    )
    assert embedder.load().batch_cap == 8


def test_429s_are_waited_out_and_no_text_is_lost_or_embedded_twice(serve: Any) -> None:
    server = serve(requests_per_window=3, window_s=0.5)
    embedder = build("openai", server.root, batch_size=4, max_concurrency=4)
    texts = [f"text {n}" for n in range(48)]
    vectors = embedder.embed(texts)
    assert len(vectors) == 48
    assert server.state.embedded == dict.fromkeys(texts, 1)
    assert embedder.load().throttled == server.state.throttled
    assert max(server.state.window_counts) <= 3


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_the_configured_concurrency_is_what_the_server_sees_in_flight(serve: Any, concurrency: int) -> None:
    server = serve(delay_s=0.3)
    embedder = build("openai", server.root, batch_size=2, max_concurrency=concurrency)
    texts = [f"text {n}" for n in range(2 * 2 * concurrency)]
    embedder.embed(texts)
    assert server.state.peak_in_flight == concurrency
    assert server.state.embedded == dict.fromkeys(texts, 1)
    assert embedder.load().in_flight == 0


def test_a_backfill_through_a_concurrent_embedder_moves_every_document_once(
    serve: Any, tmp_path: Path
) -> None:
    server = serve(delay_s=0.05, max_concurrency=4)
    docs = 4 * 8 * 9 + 5  # pages of four rounds per slot, and a partial one
    _, moved = backfill_through(server.root, tmp_path, docs, concurrency=4, batch=8)
    assert moved == docs
    assert server.state.embedded == {doc_text(n): 1 for n in range(docs)}
    assert server.state.peak_in_flight == 4


def test_a_backfill_under_a_requests_per_minute_limit_loses_and_repeats_nothing(
    serve: Any, tmp_path: Path
) -> None:
    server = serve(requests_per_window=6, window_s=0.5)
    docs = 6 * 4 * 8 + 3
    _, moved = backfill_through(server.root, tmp_path, docs, concurrency=4, batch=8)
    assert moved == docs
    assert server.state.embedded == {doc_text(n): 1 for n in range(docs)}
    assert max(server.state.window_counts) <= 6
    assert len(server.state.window_counts) >= docs // (6 * 8)  # it really was held to the limit


def test_the_metrics_show_each_remote_model_s_load_against_its_budgets(serve: Any) -> None:
    server = serve(requests_per_window=2, window_s=0.3)
    remote = build("openai", server.root, batch_size=2, max_concurrency=4, requests_per_minute=6000)
    remote.embed([f"text {n}" for n in range(12)])
    values = embedder_gauges({"remote": remote, "local": HashingEmbedder("local", DIM, 1)})
    shown = dict(values)
    assert all(label == {"model": "remote"} for series in shown.values() for _, label in series)
    one = {name: series[0][0] for name, series in shown.items()}
    assert one["embed.requests_per_minute"] == len(server.state.requests)
    assert one["embed.throttled"] == server.state.throttled
    assert one["embed.requests_per_minute_budget"] == 6000 and one["embed.tokens_per_minute_budget"] == 0
    assert one["embed.in_flight"] == 0 and 1 <= one["embed.concurrency"] <= one["embed.max_concurrency"] == 4
    assert one["embed.tokens_per_minute"] > 0


def test_status_shows_the_new_model_s_load_against_its_budget_and_never_its_key(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBED_KEY", SECRET)
    server = serve(api_key=SECRET, dim=32)
    config = migration_config(tmp_path / "data")
    config["state"] = {"backend": "local", "namespace": "status"}
    config["models"]["remote-b"] = {
        **model_config(
            "openai", server.root, api_key_env="EMBED_KEY", batch_size=4, requests_per_minute=6000
        ),
        "dim": 32,
    }
    config["indexes"]["idx-b"] = {"model": "remote-b"}
    app = in_process_app(config)
    try:
        assert app.controller is not None and app.promoter is not None
        load_corpus(app, 30)
        app.controller.start()
        drain(app)
        status = status_to_pb(app.controller.status(), app.promoter, "default")
    finally:
        app.close()
    load = status.new_model_load
    assert (load.model, load.requests_last_minute, load.requests_per_minute_budget) == (
        "remote-b",
        len(server.state.requests),
        6000,
    )
    assert load.in_flight == 0 and load.max_concurrency == 4
    report = status_report(status)
    assert "embedding      remote-b: 0 in flight, concurrency 4/4" in report and "of 6,000" in report
    assert SECRET not in report and SECRET not in str(status)


def test_a_configured_requests_per_minute_budget_keeps_the_client_under_the_server_s_limit(
    serve: Any,
) -> None:
    # Server: 40 requests per 2-second window. Client: 720 a minute (12 a second) from a bucket of one second's
    # worth: over any 2 seconds it sends at most 12 + 2 x 12 = 36. Unpaced, its 72 requests would meet 429s.
    server = serve(requests_per_window=40, window_s=2.0, limit_headers=False)
    embedder = build("openai", server.root, batch_size=2, max_concurrency=8, requests_per_minute=720)
    texts = [f"text {n}" for n in range(2 * 72)]
    embedder.embed(texts)
    assert server.state.throttled == 0 and embedder.load().throttled == 0
    assert len(server.state.window_counts) >= 2  # the limit was in reach: more than one window's worth
    assert server.state.embedded == dict.fromkeys(texts, 1)
    assert embedder.load().requests_last_minute == 72
