"""A local embedding server for the bench and the tests: speaks the four APIs the remote embedders call, answers
after a fixed delay, serves at most C requests at once (the rest queue, as on a GPU server), and can enforce a
requests-per-window limit with 429s and OpenAI's rate-limit headers, an API key and a batch-size cap.

It records every request (path, headers, body) and how many times each text was embedded, so a test can check
URL, auth and body, and a bench can prove no document was embedded twice. Loopback only. Vectors are derived
from each text's hash, unnormalized (the client normalizes).

`python -m proxy.bench.embed_server --port N [--delay-ms ...]` runs it in a process of its own (the bench: the
server's work must not share the backfill's GIL); `GET /stats` reads what it recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np


@dataclass(frozen=True)
class ServerRules:
    dim: int = 16
    delay_s: float = 0.0
    max_concurrency: int | None = None
    """Requests served at once; the others wait their turn (None: all at once)."""
    requests_per_window: int | None = None
    window_s: float = 60.0
    """A fixed-window request limit: over it, 429 with Retry-After until the window ends."""
    max_batch: int | None = None
    """More inputs in one request: 413 (OpenAI-style paths) or 422 with TEI's message (`/embed`)."""
    api_key: str | None = None
    """Required when set: `Authorization: Bearer` or, on Azure paths, an `api-key` header."""
    limit_headers: bool = True
    """Send OpenAI's `x-ratelimit-*` headers; without them a client learns the limit from 429s alone."""


@dataclass
class Recorded:
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class EmbedServerState:
    rules: ServerRules
    requests: list[Recorded] = field(default_factory=list)
    embedded: Counter[str] = field(default_factory=Counter)
    """Texts answered with a vector (200s only), with how many times."""
    accepted_at: list[float] = field(default_factory=list)
    """Monotonic time of each answered (200) request."""
    throttled: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    window_start: float = field(default_factory=time.monotonic)
    window_count: int = 0
    window_starts: list[float] = field(default_factory=list)
    """When each rate-limit window began (at the first request after the one before ended)."""
    window_counts: list[int] = field(default_factory=list)
    """Requests admitted in each window."""

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.rules.max_concurrency or 1_000_000)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": len(self.requests),
                "throttled": self.throttled,
                "peak_in_flight": self.peak_in_flight,
                "embedded": dict(self.embedded),
                "accepted_at": list(self.accepted_at),
                "window_starts": list(self.window_starts),
                "window_counts": list(self.window_counts),
            }


def vector(text: str, dim: int) -> list[float]:
    """Derived from the text's hash, unnormalized. Cheap on purpose (a fifth of a seeded RNG's cost): this
    server's CPU is taken from the cores the measured client runs on."""
    raw = np.frombuffer(hashlib.shake_128(text.encode()).digest(2 * dim), dtype=np.int16)
    values: list[float] = (raw / 4096.0).tolist()
    return values


def _texts(path: str, body: Any) -> list[str] | None:
    if not isinstance(body, dict):
        return None
    texts = (
        body.get("inputs")
        if path.endswith("/embed") and not path.endswith("/api/embed")
        else body.get("input")
    )
    if isinstance(texts, str):
        texts = [texts]
    return texts if isinstance(texts, list) and all(isinstance(t, str) for t in texts) else None


def _answer(path: str, texts: list[str], dim: int, model: str) -> Any:
    rows = [vector(t, dim) for t in texts]
    if path.endswith("/api/embed"):
        return {"model": model, "embeddings": rows}
    if path.endswith("/embed"):
        return rows
    data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
    return {"object": "list", "data": data[::-1], "model": model}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle the body waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True
    state: EmbedServerState

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/stats":
            self._send(200, self.state.stats())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        status, payload, headers = self._serve(url.path, body)
        with self.state.lock:
            recorded = Recorded(
                url.path, url.query, {k.lower(): v for k, v in self.headers.items()}, body, status
            )
            self.state.requests.append(recorded)
        self._send(status, payload, headers)

    def _serve(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        rules, state = self.state.rules, self.state
        if not path.endswith(("/embeddings", "/embed")):
            return 404, {"error": f"no route {path}"}, {}
        if rules.api_key is not None and not self._authorized(path, rules.api_key):
            return 401, {"error": {"message": "Incorrect API key provided"}}, {}
        texts = _texts(path, body)
        if texts is None:
            return 422, {"error": "expected a list of strings"}, {}
        if rules.max_batch is not None and len(texts) > rules.max_batch:
            if path.endswith("/embed") and not path.endswith("/api/embed"):
                message = f"batch size {len(texts)} > maximum allowed batch size {rules.max_batch}"
                return 422, {"error": message, "error_type": "Validation"}, {}
            return 413, {"error": {"message": "Request Entity Too Large"}}, {}
        limited = self._admit()
        if limited is not None:
            return 429, {"error": {"message": "Rate limit reached for requests"}}, limited
        with state.slots:
            self._enter()
            try:
                time.sleep(rules.delay_s)
                payload = _answer(path, texts, rules.dim, str(body.get("model", "")))
            finally:
                self._leave(texts)
        return 200, payload, self._limit_headers()

    def _authorized(self, path: str, key: str) -> bool:
        if path.startswith("/openai/") and self.headers.get("api-key") == key:
            return True
        return self.headers.get("Authorization") == f"Bearer {key}"

    def _admit(self) -> dict[str, str] | None:
        """None: within the window's budget (counted); else the 429's headers."""
        rules, state = self.state.rules, self.state
        if rules.requests_per_window is None:
            return None
        with state.lock:
            now = time.monotonic()
            if not state.window_starts or now - state.window_start >= rules.window_s:
                state.window_start, state.window_count = now, 0
                state.window_starts.append(now)
                state.window_counts.append(0)
            if state.window_count < rules.requests_per_window:
                state.window_count += 1
                state.window_counts[-1] += 1
                return None
            state.throttled += 1
            reset = rules.window_s - (now - state.window_start)
        return {
            "Retry-After": str(math.ceil(reset)),
            "retry-after-ms": str(int(reset * 1000)),
            **self._limit_headers(),
        }

    def _limit_headers(self) -> dict[str, str]:
        rules, state = self.state.rules, self.state
        if rules.requests_per_window is None or not rules.limit_headers:
            return {}
        with state.lock:
            left = max(0, rules.requests_per_window - state.window_count)
            reset = max(0.0, rules.window_s - (time.monotonic() - state.window_start))
        return {
            "x-ratelimit-limit-requests": str(rules.requests_per_window),
            "x-ratelimit-remaining-requests": str(left),
            "x-ratelimit-reset-requests": f"{reset:.3f}s",
        }

    def _enter(self) -> None:
        with self.state.lock:
            self.state.in_flight += 1
            self.state.peak_in_flight = max(self.state.peak_in_flight, self.state.in_flight)

    def _leave(self, texts: list[str]) -> None:
        with self.state.lock:
            self.state.in_flight -= 1
            self.state.embedded.update(texts)
            self.state.accepted_at.append(time.monotonic())

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the bench's clients connect many at once
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone before its answer (a killed sidecar, a timeout) is part of the tests; the rest is not."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class EmbedServer:
    """The server on a thread of this process, on 127.0.0.1 and a free port."""

    def __init__(self, rules: ServerRules, port: int = 0) -> None:
        self.state = EmbedServerState(rules)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = _Server(("127.0.0.1", port), handler)
        self.root = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> EmbedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--max-concurrency", type=int)
    parser.add_argument("--requests-per-window", type=int)
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--no-limit-headers", action="store_true", help="429 and Retry-After only")
    args = parser.parse_args()
    rules = ServerRules(
        dim=args.dim,
        delay_s=args.delay_ms / 1000,
        max_concurrency=args.max_concurrency,
        requests_per_window=args.requests_per_window,
        window_s=args.window_s,
        limit_headers=not args.no_limit_headers,
    )
    with EmbedServer(rules, args.port) as server:
        print(f"listening on {server.root}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
