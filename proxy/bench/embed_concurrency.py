"""Section 9: a backfill paced by a remote embedding server, at 1, 4 and 16 requests in flight, and under a
requests-per-minute limit.

The server (`embed_server.py`, a process of its own) answers each batch after a fixed delay and serves at most
C requests at once, as a GPU server with C slots would. The backfill (in this process: Backfiller, hnswlib
indexes, a local state store) talks to it through the OpenAI-compatible embedder built from a config, with
the backfill page the wiring sizes from `batch_size x max_concurrency`. Its ceiling is C x batch / delay
documents per second; the target is 80% of it. The rate-limited run: the server admits R requests per
window and answers the rest 429 with Retry-After and `x-ratelimit-*` headers; the client is given no budget
and must find the limit from the answers. The steady rate (complete windows only) should settle within 10%
under the limit, every document embedded exactly once (the server counts texts) and present in the new index.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.embedders.remote_http import RemoteEmbedder
from proxy.adapters.hnsw import HnswIndex
from proxy.adapters.state.local_store import LocalStateStore
from proxy.app.config_models import OpenAIModelConfig
from proxy.app.wiring import backfill_batch_size, build_embedder
from proxy.bench.processes import PACKAGE_PARENT, child_env
from proxy.bench.settings import BenchSettings
from proxy.core.binding import IndexBinding
from proxy.core.model import IndexRecord
from proxy.demo.sidecar_process import free_port
from proxy.migration.backfill import Backfiller
from proxy.migration.throttle import AdaptiveThrottle, LatencyWindow

TARGET_THROUGHPUT_RATIO = 0.8
TARGET_RATE_LOW = 0.9
CONCURRENCIES = (1, 4, 16)
DIM = 16
RATE_LIMIT_CONCURRENCY = 4
_RATE_LIMIT_DELAY_S = 0.02


@dataclass(frozen=True)
class ConcurrencyRow:
    concurrency: int
    batch: int
    delay_ms: float
    docs: int
    seconds: float
    peak_in_flight: int
    """Requests the server saw at once, at most."""
    embedded_once: bool
    """Every document embedded exactly once and in the new index."""

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds > 0 else math.nan

    @property
    def ceiling_docs_per_s(self) -> float:
        return self.concurrency * self.batch / (self.delay_ms / 1000)

    @property
    def ratio(self) -> float:
        return self.docs_per_s / self.ceiling_docs_per_s

    @property
    def passed(self) -> bool:
        return self.ratio >= TARGET_THROUGHPUT_RATIO and self.embedded_once


@dataclass(frozen=True)
class RateLimitRow:
    headers: bool
    """Whether the server sent `x-ratelimit-*` headers (else only 429s with Retry-After told the client)."""
    limit_rpm: float
    window_s: float
    docs: int
    seconds: float
    requests: int
    """Requests the server answered, 429s included."""
    throttled: int
    """Of them, answered 429."""
    complete_windows: int
    steady_rpm: float
    """Requests admitted per minute over the complete windows."""
    embedded_once: bool

    @property
    def ratio(self) -> float:
        return self.steady_rpm / self.limit_rpm

    @property
    def passed(self) -> bool:
        return TARGET_RATE_LOW <= self.ratio <= 1.0 and self.embedded_once


@dataclass(frozen=True)
class EmbedConcurrencyResult:
    rows: list[ConcurrencyRow]
    rate_limits: list[RateLimitRow]


def run_embed_concurrency(settings: BenchSettings, root: Path) -> EmbedConcurrencyResult:
    rows = [_concurrency_row(settings, root / f"c{c}", c) for c in CONCURRENCIES]
    limits = [_rate_limit_row(settings, root / f"rpm-{h}", headers=h) for h in (True, False)]
    return EmbedConcurrencyResult(rows, limits)


def _concurrency_row(settings: BenchSettings, root: Path, concurrency: int) -> ConcurrencyRow:
    batch, delay_s = settings.embed_batch, settings.embed_delay_ms / 1000
    docs = concurrency * batch * settings.embed_rounds
    args = ["--delay-ms", str(settings.embed_delay_ms), "--max-concurrency", str(concurrency)]
    with ServerProcess(args, root / "server.log") as server:
        seconds, moved = backfill_through(server.base_url, root, docs, concurrency, batch)
        stats = server.stats()
    return ConcurrencyRow(
        concurrency, batch, delay_s * 1000, docs, seconds, stats["peak_in_flight"], _once(stats, docs, moved)
    )


def _rate_limit_row(settings: BenchSettings, root: Path, *, headers: bool) -> RateLimitRow:
    window_s, per_window = settings.embed_rpm_window_s, settings.embed_rpm_per_window
    batch = settings.embed_batch
    # Whole windows and half of one more, so the last (partial) window is never taken for a complete one.
    docs = int((settings.embed_rpm_windows + 0.5) * per_window) * batch
    args = ["--delay-ms", str(_RATE_LIMIT_DELAY_S * 1000), "--requests-per-window", str(per_window)]
    args += ["--window-s", str(window_s), *([] if headers else ["--no-limit-headers"])]
    with ServerProcess(args, root / "server.log") as server:
        seconds, moved = backfill_through(server.base_url, root, docs, RATE_LIMIT_CONCURRENCY, batch)
        stats = server.stats()
    return RateLimitRow(
        headers=headers,
        limit_rpm=per_window * 60 / window_s,
        window_s=window_s,
        docs=docs,
        seconds=seconds,
        requests=stats["requests"],
        throttled=stats["throttled"],
        complete_windows=max(0, len(stats["window_starts"]) - 1),
        steady_rpm=steady_rpm(stats["window_starts"], stats["window_counts"]),
        embedded_once=_once(stats, docs, moved),
    )


def steady_rpm(starts: list[float], counts: list[int]) -> float:
    """Requests admitted per minute over the complete windows: from the first window's start to the last one's
    (a client slow to come back after a reset stretches the span, so the rate shows it)."""
    if len(starts) < 2:
        return math.nan
    return sum(counts[:-1]) / (starts[-1] - starts[0]) * 60


def _once(stats: dict[str, Any], docs: int, moved: int) -> bool:
    counts = stats["embedded"]
    return moved == docs and len(counts) == docs and all(n == 1 for n in counts.values())


def doc_text(n: int) -> str:
    return f"document {n:07d} about topic {n % 13}"


def backfill_through(
    base_url: str, root: Path, docs: int, concurrency: int, batch: int, **model: Any
) -> tuple[float, int]:
    """Backfills `docs` documents from a fresh index into another through the server's OpenAI-compatible API,
    with the embedder and backfill page the wiring builds for this model; returns (seconds, documents in the
    new index)."""
    shutil.rmtree(root, ignore_errors=True)
    config = OpenAIModelConfig(
        kind="openai",
        base_url=f"{base_url}/v1",
        model="bench-model",
        dim=DIM,
        batch_size=batch,
        max_concurrency=concurrency,
        **model,
    )
    embedder = build_embedder("remote", config)
    assert isinstance(embedder, RemoteEmbedder)
    source = _source(root / "a", docs)
    # A cheap graph for the new index: the section measures the embedding stage, which must stay the slower one.
    target = HnswIndex("idx-b", DIM, root / "b", initial_capacity=docs + 8, ef_construction=32)
    store = LocalStateStore(root / "state.sqlite3", "bench")
    backfiller = Backfiller(
        IndexBinding(source, HashingEmbedder("hash-a", DIM, 1)),
        IndexBinding(target, embedder),
        store,
        "bench",
        AdaptiveThrottle(0, None, LatencyWindow()),
        batch_size=backfill_batch_size(batch, config),
        slice_size=max(docs, 1),
    )
    try:
        started = time.perf_counter()
        while not backfiller.complete():
            backfiller.step()
        seconds = time.perf_counter() - started
        return seconds, target.count()
    finally:
        backfiller.close()
        embedder.close()
        for closing in (store, target, source):
            closing.close()


def _source(directory: Path, docs: int) -> HnswIndex:
    model = HashingEmbedder("hash-a", DIM, 1)
    index = HnswIndex("idx-a", DIM, directory, initial_capacity=docs + 8, ef_construction=32)
    for start in range(0, docs, 2000):
        numbers = range(start, min(start + 2000, docs))
        texts = [doc_text(n) for n in numbers]
        vectors = model.embed(texts)
        index.upsert(
            [
                IndexRecord(f"doc-{n:07d}", 1, t, {}, v)
                for n, t, v in zip(numbers, texts, vectors, strict=True)
            ]
        )
    return index


class ServerProcess:
    """`python -m proxy.bench.embed_server` on a free 127.0.0.1 port, until the `with` block ends."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.base_url = f"http://127.0.0.1:{free_port()}"
        self._args = ["--port", self.base_url.rsplit(":", 1)[1], "--dim", str(DIM), *args]
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "proxy.bench.embed_server", *self._args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=PACKAGE_PARENT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"embedding server exited:\n{self._log_path.read_text()[-2000:]}")
            try:
                self.stats()
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("embedding server not ready after 30s")

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/stats", timeout=30)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)
