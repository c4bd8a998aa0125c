"""Candidate re-ranking: the old leg's candidates the new index lacks, embedded with the new model at query time.

A merge can only reorder what each leg returned, and the old leg ranks by the old model. Re-ranking fetches k'
candidates from the old leg, embeds the ones the new index does not hold yet with the new model (one batch),
and ranks them with the new leg's hits by new-space score, so the answer is what the finished index would say
about the union of both legs. Each embedded candidate is also a lazy move: `on_embedded` writes it to the new
index at the version it was read at, under the index's version check (a newer write or a delete wins).

Two budgets bound the work: at most `max_embed` documents embedded per query, and `budget_s` of waiting. When
the embedder cannot answer in time the query answers with the merge (the caller's fallback), never later; the
embedding goes on in the background and fills the cache for the next query. The cache is keyed by (id,
version), so an update is never answered with the old text's vector, and it is single flight: concurrent
queries that need the same candidate wait for one embedding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import numpy as np

from proxy.core.binding import IndexBinding
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector

log = logging.getLogger(__name__)

MAX_RERANK_CANDIDATES = 1000
"""A k' past this would make one query's old leg a bulk export."""

CacheKey = tuple[str, int]
"""(document id, version): the text a vector was embedded from."""


@dataclass(frozen=True)
class RerankSettings:
    candidates: int = 0
    """k': old-leg candidates per query; 0 turns re-ranking off (the merge answers)."""
    budget_s: float = 0.05
    """Longest a query waits for its candidates' embeddings before the merge answers instead."""
    max_embed: int = 64
    """Most candidates one query sends to the embedder; cached ones are free and not counted."""
    cache_entries: int = 20_000
    """Vectors kept by (id, version); 20,000 x 384 floats is about 31 MB."""
    embed_workers: int = 4
    """Threads that run embedding batches (a query that gives up waiting leaves its batch running)."""
    max_queued_batches: int = 16
    """Batches submitted and not finished past which a query does not add one and the merge answers: under
    an embedder slower than the query rate, a queue without a bound would only grow."""


@dataclass(frozen=True)
class RerankReport:
    """What one query's re-ranking did; `fallback` names why the merge answered instead ("" when it did not)."""

    candidates: int = 0
    uncovered: int = 0
    embedded_now: int = 0
    from_cache: int = 0
    skipped: int = 0
    """Uncovered candidates past `max_embed`: neither embedded nor ranked."""
    seconds: float = 0.0
    fallback: str = ""


NO_RERANK = RerankReport()


class RerankBusy(Exception):
    """The embedder is behind by `max_queued_batches`: this query's candidates are not queued."""


class EmbeddingCache:
    """(id, version) -> the future of its vector in the new model; least recently used entries go first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._entries: OrderedDict[CacheKey, Future[Vector]] = OrderedDict()
        self._lock = threading.Lock()

    def claim(
        self, keys: Sequence[CacheKey], limit: int
    ) -> tuple[dict[CacheKey, Future[Vector]], list[CacheKey]]:
        """Futures for every key known or claimed now, and the keys this caller must embed (at most `limit`).

        A claimed key's future is in the cache at once, so a concurrent query waits on it rather than
        embedding the same document again (single flight).
        """
        found: dict[CacheKey, Future[Vector]] = {}
        owned: list[CacheKey] = []
        with self._lock:
            for key in keys:
                future = self._entries.get(key)
                if future is not None:
                    self._entries.move_to_end(key)
                elif len(owned) < limit:
                    future = Future()
                    self._entries[key] = future
                    owned.append(key)
                else:
                    continue
                found[key] = future
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return found, owned

    def forget(self, keys: Sequence[CacheKey]) -> None:
        """Drops failed embeddings, so a later query tries again."""
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Reranked:
    hits: list[Hit]
    report: RerankReport


class Reranker:
    def __init__(
        self,
        settings: RerankSettings,
        on_embedded: Callable[[Sequence[IndexRecord]], object] = lambda records: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self._cache = EmbeddingCache(settings.cache_entries)
        self._on_embedded = on_embedded
        self._clock = clock
        self._pool = ThreadPoolExecutor(settings.embed_workers, thread_name_prefix="switchyard-rerank")
        self._queued = 0
        self._queued_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reconfigure(self, settings: RerankSettings) -> None:
        """New k', budget and per-query limit from now on; the cache and the threads keep their size."""
        self.settings = replace(
            settings,
            cache_entries=self.settings.cache_entries,
            embed_workers=self.settings.embed_workers,
            max_queued_batches=self.settings.max_queued_batches,
        )

    def rerank(
        self,
        query: Vector,
        uncovered: Sequence[Hit],
        new_hits: Sequence[Hit],
        old: IndexBinding,
        new: IndexBinding,
        request: RerankRequest,
    ) -> Reranked:
        """The union of `new_hits` and the `uncovered` old candidates, ranked by new-space score.

        Raises TimeoutError when the budget runs out first, RerankBusy when the embedder is too far behind to
        take more; the embedder's own errors propagate as they are.
        """
        started = self._clock()
        deadline = started + self.settings.budget_s
        docs = _current(old.index.get([h.id for h in uncovered]), request.where)
        keys = [(d.id, d.version) for d in docs]
        busy = not self._reserve_batch()
        futures, owned = self._cache.claim(keys, 0 if busy else self.settings.max_embed)
        if busy and len(futures) < min(len(keys), self.settings.max_embed):
            raise RerankBusy(f"{self.settings.max_queued_batches} embedding batches already queued")
        if owned:
            by_key = {(d.id, d.version): d for d in docs}
            self._pool.submit(self._embed, [by_key[key] for key in owned], futures, new)
        elif not busy:
            self._release_batch()
        pending = wait(list(futures.values()), timeout=max(0.0, deadline - self._clock())).not_done
        if pending:
            raise TimeoutError(
                f"candidate embeddings took over the {self.settings.budget_s * 1000:.0f} ms budget"
            )
        vectors = {key: future.result() for key, future in futures.items()}
        hits = _ranked(
            query, [d for d in docs if (d.id, d.version) in vectors], vectors, new_hits, old, new, request
        )
        report = RerankReport(
            candidates=request.candidates,
            uncovered=len(uncovered),
            embedded_now=len(owned),
            from_cache=len(futures) - len(owned),
            skipped=len(docs) - len(futures),
            seconds=self._clock() - started,
        )
        return Reranked(hits[: request.k], report)

    def _reserve_batch(self) -> bool:
        with self._queued_lock:
            if self._queued >= self.settings.max_queued_batches:
                return False
            self._queued += 1
            return True

    def _release_batch(self) -> None:
        with self._queued_lock:
            self._queued -= 1

    def _embed(
        self, docs: Sequence[StoredDocument], futures: dict[CacheKey, Future[Vector]], new: IndexBinding
    ) -> None:
        try:
            self._embed_and_write(docs, futures, new)
        finally:
            self._release_batch()

    def _embed_and_write(
        self, docs: Sequence[StoredDocument], futures: dict[CacheKey, Future[Vector]], new: IndexBinding
    ) -> None:
        keys = [(d.id, d.version) for d in docs]
        try:
            vectors = new.embedder.embed([d.text for d in docs])
        except Exception as exc:
            self._cache.forget(keys)
            for key in keys:
                futures[key].set_exception(exc)
            return
        for key, vector in zip(keys, vectors, strict=True):
            futures[key].set_result(vector)
        records = [
            IndexRecord(d.id, d.version, d.text, d.metadata, v) for d, v in zip(docs, vectors, strict=True)
        ]
        try:
            self._on_embedded(records)
        except Exception as exc:
            # The query has its answer; an unwritten move is only a lazy move that did not happen.
            log.warning("writing %d re-ranked candidates to %s failed: %s", len(records), new.name, exc)


@dataclass(frozen=True)
class RerankRequest:
    k: int
    candidates: int
    where: Metadata | None
    include_text: bool


def _current(docs: Sequence[StoredDocument], where: Metadata | None) -> list[StoredDocument]:
    """Candidates as the old index holds them now, still matching the filter (metadata may have changed)."""
    if not where:
        return list(docs)
    return [d for d in docs if all(d.metadata.get(key) == value for key, value in where.items())]


def _ranked(
    query: Vector,
    docs: Sequence[StoredDocument],
    vectors: dict[CacheKey, Vector],
    new_hits: Sequence[Hit],
    old: IndexBinding,
    new: IndexBinding,
    request: RerankRequest,
) -> list[Hit]:
    scores = _cosine(query, [vectors[(d.id, d.version)] for d in docs])
    found = [
        Hit(d.id, s, d.version, d.metadata, d.text if request.include_text else "", old.name, new.model, s)
        for d, s in zip(docs, scores, strict=True)
    ]
    # The newer version wins where both name an id: the new leg may hold an outdated copy of a candidate.
    best: dict[str, Hit] = {}
    for hit in (*new_hits, *found):
        held = best.get(hit.id)
        if held is None or hit.version > held.version:
            best[hit.id] = hit
    return sorted(best.values(), key=lambda h: (-h.score, h.id))


def _cosine(query: Vector, vectors: Sequence[Vector]) -> list[float]:
    """Cosine similarity, the score both index kinds give for normalized vectors (every embedder normalizes)."""
    if not vectors:
        return []
    matrix = np.asarray(vectors, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(q)), 1e-12)
    return [float(s) for s in matrix @ q / np.maximum(norms, 1e-12)]
