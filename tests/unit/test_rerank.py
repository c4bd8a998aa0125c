"""Candidate re-ranking and the coverage guard: pure logic, and the re-ranker over real hnswlib files."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.hnsw import HnswIndex
from proxy.core.binding import IndexBinding
from proxy.core.coverage_guard import admitted_new_hits, guard_new_hits
from proxy.core.model import Hit, IndexRecord, Vector
from proxy.core.rerank import EmbeddingCache, RerankBusy, Reranker, RerankRequest, RerankSettings

OLD, NEW = "idx-a", "idx-b"
DIM = 32
TEXTS = [f"document {n} about {topic}" for n, topic in enumerate(["rivers", "mountains", "trains"] * 8)]


def _at_least(k: int, c: float, r: int) -> float:
    return sum(math.comb(k, i) * c**i * (1 - c) ** (k - i) for i in range(r, k + 1))


@given(st.integers(1, 60), st.floats(0.0, 1.0))
def test_admitted_new_hits_is_the_largest_rank_nearly_sure_to_be_in_the_finished_top_k(
    k: int, c: float
) -> None:
    m = admitted_new_hits(k, c)
    assert 0 <= m <= k
    if 0 < m < k and 0.0 < c < 1.0:
        assert _at_least(k, c, m) >= 0.9 - 1e-9
        assert _at_least(k, c, m + 1) < 0.9 + 1e-9


def test_admitted_new_hits_grows_with_coverage() -> None:
    counts = [admitted_new_hits(10, c) for c in (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)]
    assert counts == sorted(counts)
    assert counts[0] == 0 and counts[1] == 0 and counts[-1] == 10
    assert admitted_new_hits(10, 0.1) == 0  # P(X >= 1) = 0.65 at 10% coverage
    assert admitted_new_hits(10, 0.25) == 1  # P(X >= 1) = 0.94, P(X >= 2) = 0.76


def _hit(id: str, score: float, index: str) -> Hit:
    return Hit(id, score, 1, {}, "", index)


def test_guard_moves_new_only_hits_behind_the_old_leg_at_low_coverage() -> None:
    merged = [_hit("n1", 1.0, NEW), _hit("o1", 0.9, OLD), _hit("n2", 0.8, NEW), _hit("o2", 0.7, OLD)]
    everything = set  # the old index holds every id it is asked about
    assert [h.id for h in guard_new_hits(merged, NEW, set(), 3, 0.02, everything)] == ["o1", "o2", "n1"]
    assert [h.id for h in guard_new_hits(merged, NEW, set(), 4, 1.0, everything)] == ["n1", "o1", "n2", "o2"]


def test_guard_never_moves_a_document_the_old_index_no_longer_holds() -> None:
    merged = [_hit("retired", 1.0, NEW), _hit("o1", 0.9, OLD), _hit("n2", 0.8, NEW)]
    assert [h.id for h in guard_new_hits(merged, NEW, set(), 3, 0.0, lambda ids: {"n2"})] == [
        "retired",
        "o1",
        "n2",
    ]


def test_guard_never_moves_a_new_hit_the_old_leg_also_returned() -> None:
    merged = [_hit("both", 1.0, NEW), _hit("o1", 0.9, OLD), _hit("n2", 0.8, NEW)]
    assert [h.id for h in guard_new_hits(merged, NEW, {"both"}, 3, 0.0, set)] == ["both", "o1", "n2"]


def test_cache_is_single_flight_bounded_and_forgets_failures() -> None:
    cache = EmbeddingCache(capacity=3)
    first, owned = cache.claim([("a", 1), ("b", 1)], limit=10)
    again, owned_again = cache.claim([("a", 1), ("b", 2)], limit=10)
    assert owned == [("a", 1), ("b", 1)] and owned_again == [("b", 2)]
    assert again[("a", 1)] is first[("a", 1)]
    _, limited = cache.claim([("c", 1), ("d", 1)], limit=1)
    assert limited == [("c", 1)] and len(cache) == 3
    cache.forget([("c", 1)])
    assert cache.claim([("c", 1)], limit=1)[1] == [("c", 1)]


class CountingEmbedder(HashingEmbedder):
    """The hashing model, counting the texts it embeds and able to hold every call until released."""

    def __init__(self, seed: int) -> None:
        super().__init__(f"hash-{seed}", DIM, seed)
        self.texts: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        self.release.wait(10)
        with self._lock:
            self.texts += texts
        return super().embed(texts)


def _binding(name: str, embedder: HashingEmbedder, root: Path, texts: Sequence[str]) -> IndexBinding:
    index = HnswIndex(name, DIM, root / name)
    vectors = embedder.embed(texts) if texts else []
    index.upsert(
        [IndexRecord(f"d{n}", 1, t, {}, v) for n, t, v in zip(range(len(texts)), texts, vectors, strict=True)]
    )
    return IndexBinding(index, embedder)


@pytest.fixture
def legs(tmp_path: Path) -> tuple[IndexBinding, IndexBinding, CountingEmbedder]:
    new_model = CountingEmbedder(2)
    old = _binding(OLD, HashingEmbedder("hash-1", DIM, 1), tmp_path, TEXTS)
    new = _binding(NEW, new_model, tmp_path, [])
    new_model.texts.clear()
    return old, new, new_model


def _candidates(old: IndexBinding, text: str, k: int) -> list[Hit]:
    return old.index.search(old.embedder.embed_query([text])[0], k)


def test_reranking_scores_every_candidate_in_the_new_space_and_writes_it_at_its_version(
    legs: tuple[IndexBinding, IndexBinding, CountingEmbedder],
) -> None:
    old, new, model = legs
    written: list[IndexRecord] = []
    reranker = Reranker(RerankSettings(candidates=12, budget_s=10.0), on_embedded=written.extend)
    same_model = HashingEmbedder(NEW, DIM, 2)
    query = same_model.embed_query([TEXTS[4]])[0]
    candidates = _candidates(old, TEXTS[4], 12)
    answer = reranker.rerank(query, candidates, [], old, new, RerankRequest(5, 12, None, False))
    exact = {f"d{n}": float(np.dot(query, v)) for n, v in enumerate(same_model.embed(TEXTS))}
    by_new_model = sorted((h.id for h in candidates), key=lambda i: (-exact[i], i))[:5]
    assert [h.id for h in answer.hits] == by_new_model
    assert all(h.score == pytest.approx(exact[h.id], abs=1e-5) and h.model == new.model for h in answer.hits)
    assert (answer.report.embedded_now, answer.report.from_cache) == (12, 0)
    assert sorted(r.id for r in written) == sorted(h.id for h in candidates)
    assert all(r.version == 1 for r in written)
    again = reranker.rerank(query, candidates, [], old, new, RerankRequest(5, 12, None, False))
    assert (again.report.embedded_now, again.report.from_cache) == (0, 12)
    assert len(model.texts) == 12


def test_a_newer_write_or_a_delete_during_the_query_wins_over_the_candidate(
    legs: tuple[IndexBinding, IndexBinding, CountingEmbedder],
) -> None:
    old, new, model = legs
    done = threading.Event()
    reranker = Reranker(
        RerankSettings(candidates=6, budget_s=10.0),
        on_embedded=lambda records: (new.index.upsert(records), done.set()),
    )
    candidates = _candidates(old, TEXTS[0], 6)
    updated, deleted = candidates[0].id, candidates[1].id
    model.release.clear()
    query = HashingEmbedder(NEW, DIM, 2).embed_query([TEXTS[0]])[0]
    thread = threading.Thread(
        target=reranker.rerank, args=(query, candidates, [], old, new, RerankRequest(6, 6, None, False))
    )
    thread.start()
    # The candidates were read at version 1; the client writes and deletes while they are being embedded.
    vector = HashingEmbedder(NEW, DIM, 2).embed(["rewritten by the client"])[0]
    new.index.upsert([IndexRecord(updated, 7, "rewritten by the client", {}, vector)])
    new.index.delete([deleted], 8)
    model.release.set()
    thread.join(10)
    assert not thread.is_alive() and done.wait(10)
    assert new.index.get([updated])[0].text == "rewritten by the client"
    assert new.index.get([deleted]) == []
    assert new.index.versions([updated, deleted]) == {updated: 7, deleted: 8}
    others = [h.id for h in candidates[2:]]
    assert new.index.versions(others) == dict.fromkeys(others, 1)


def test_over_budget_the_query_gives_up_and_the_embedding_fills_the_cache_behind_it(
    legs: tuple[IndexBinding, IndexBinding, CountingEmbedder],
) -> None:
    old, new, model = legs
    reranker = Reranker(RerankSettings(candidates=8, budget_s=0.05))
    candidates = _candidates(old, TEXTS[2], 8)
    query = HashingEmbedder(NEW, DIM, 2).embed_query([TEXTS[2]])[0]
    model.release.clear()
    with pytest.raises(TimeoutError, match="50 ms budget"):
        reranker.rerank(query, candidates, [], old, new, RerankRequest(5, 8, None, False))
    model.release.set()
    answer = None
    for _ in range(200):  # the background embedding finishes soon after the release
        try:
            answer = reranker.rerank(query, candidates, [], old, new, RerankRequest(5, 8, None, False))
            break
        except TimeoutError:
            time.sleep(0.05)
    assert answer is not None and answer.report.from_cache == 8 and answer.report.embedded_now == 0
    assert len(model.texts) == 8


def test_concurrent_queries_embed_each_candidate_once(
    legs: tuple[IndexBinding, IndexBinding, CountingEmbedder],
) -> None:
    old, new, model = legs
    reranker = Reranker(RerankSettings(candidates=10, budget_s=10.0))
    candidates = _candidates(old, TEXTS[1], 10)
    query = HashingEmbedder(NEW, DIM, 2).embed_query([TEXTS[1]])[0]
    model.release.clear()
    answers: list[list[str]] = []
    request = RerankRequest(5, 10, None, False)

    def ask() -> None:
        answers.append([h.id for h in reranker.rerank(query, candidates, [], old, new, request).hits])

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    model.release.set()
    for thread in threads:
        thread.join(10)
    assert len(answers) == 6 and all(a == answers[0] for a in answers)
    assert sorted(model.texts) == sorted(d.text for d in old.index.get([h.id for h in candidates]))


def test_max_embed_leaves_the_rest_out_and_a_filter_is_checked_on_the_current_metadata(
    legs: tuple[IndexBinding, IndexBinding, CountingEmbedder],
) -> None:
    old, new, model = legs
    reranker = Reranker(RerankSettings(candidates=10, budget_s=10.0, max_embed=4))
    candidates = _candidates(old, TEXTS[3], 10)
    query = HashingEmbedder(NEW, DIM, 2).embed_query([TEXTS[3]])[0]
    answer = reranker.rerank(query, candidates, [], old, new, RerankRequest(10, 10, None, False))
    assert (answer.report.embedded_now, answer.report.skipped) == (4, 6)
    assert {h.id for h in answer.hits} == {h.id for h in candidates[:4]}
    filtered = reranker.rerank(query, candidates, [], old, new, RerankRequest(10, 10, {"topic": "x"}, False))
    assert filtered.hits == [] and len(model.texts) == 4


def test_with_the_embedder_too_far_behind_a_query_does_not_queue_more(
    legs: tuple[IndexBinding, IndexBinding, CountingEmbedder],
) -> None:
    old, new, model = legs
    reranker = Reranker(RerankSettings(candidates=4, budget_s=0.05, max_queued_batches=1))
    query = HashingEmbedder(NEW, DIM, 2).embed_query([TEXTS[0]])[0]
    first, second = _candidates(old, TEXTS[0], 4), _candidates(old, TEXTS[1], 12)[-4:]
    assert not {h.id for h in first} & {h.id for h in second}
    model.release.clear()
    with pytest.raises(TimeoutError):
        reranker.rerank(query, first, [], old, new, RerankRequest(4, 4, None, False))
    with pytest.raises(RerankBusy):
        reranker.rerank(query, second, [], old, new, RerankRequest(4, 4, None, False))
    model.release.set()
    for _ in range(200):  # the queued batch finishes; then the cache answers and new batches are taken
        try:
            reranker.rerank(query, second, [], old, new, RerankRequest(4, 4, None, False))
            break
        except (TimeoutError, RerankBusy):
            time.sleep(0.05)
    assert sorted(model.texts) == sorted(d.text for d in old.index.get([h.id for h in first + second]))
