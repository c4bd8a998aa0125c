"""The VectorIndex contract: every adapter must pass these (parametrized by the `index_factory` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core.model import IndexRecord, Metadata, Vector
from proxy.core.ports import VectorIndex, iter_all

IndexFactory = Callable[..., VectorIndex]
DIM = 8


def unit_vectors(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def record(doc_id: str, version: int, vector: Vector, metadata: Metadata | None = None) -> IndexRecord:
    return IndexRecord(
        id=doc_id,
        version=version,
        text=f"text of {doc_id} v{version}",
        metadata=metadata or {},
        vector=vector,
    )


def fill(index: VectorIndex, vectors: np.ndarray, version: int = 1) -> list[str]:
    ids = [f"doc-{i:04d}" for i in range(len(vectors))]
    index.upsert([record(doc_id, version, vector) for doc_id, vector in zip(ids, vectors, strict=True)])
    return ids


def test_adapter_satisfies_the_protocol(index_factory: IndexFactory) -> None:
    index = index_factory()
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM


def test_upsert_then_get_returns_stored_fields(index_factory: IndexFactory) -> None:
    index = index_factory()
    vector = unit_vectors(1, seed=1)[0]
    result = index.upsert([record("a", 3, vector, {"lang": "en", "tenant": "t1"})])
    assert result.written == ("a",)
    assert result.stale == ()
    [doc] = index.get(["a"])
    assert (doc.id, doc.version, doc.text) == ("a", 3, "text of a v3")
    assert doc.metadata == {"lang": "en", "tenant": "t1"}


def test_get_keeps_request_order_and_skips_missing_and_deleted(index_factory: IndexFactory) -> None:
    index = index_factory()
    fill(index, unit_vectors(3, seed=2))
    index.delete(["doc-0001"], version=2)
    docs = index.get(["doc-0002", "missing", "doc-0001", "doc-0000"])
    assert [doc.id for doc in docs] == ["doc-0002", "doc-0000"]


def test_late_older_write_does_not_overwrite_newer(index_factory: IndexFactory) -> None:
    index = index_factory()
    new, old = unit_vectors(2, seed=3)
    index.upsert([record("a", 5, new)])
    result = index.upsert([record("a", 4, old)])
    assert result.stale == ("a",)
    assert result.written == ()
    assert index.get(["a"])[0].version == 5
    assert index.search(new, k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_write_with_equal_version_is_stale(index_factory: IndexFactory) -> None:
    index = index_factory()
    first, second = unit_vectors(2, seed=4)
    index.upsert([record("a", 5, first, {"v": "first"})])
    assert index.upsert([record("a", 5, second, {"v": "second"})]).stale == ("a",)
    assert index.get(["a"])[0].metadata == {"v": "first"}


def test_newer_write_replaces_text_metadata_and_vector(index_factory: IndexFactory) -> None:
    index = index_factory()
    old, new, *others = unit_vectors(12, seed=5)
    fill(index, np.stack(others))
    index.upsert([record("a", 1, old, {"v": "old"})])
    assert index.upsert([record("a", 2, new, {"v": "new"})]).written == ("a",)
    [doc] = index.get(["a"])
    assert (doc.version, doc.metadata) == (2, {"v": "new"})
    top = index.search(new, k=1)[0]
    assert (top.id, top.version) == ("a", 2)
    assert all(hit.id != "a" or hit.score < 0.999 for hit in index.search(old, k=3))
    assert index.count() == 11


def test_deleted_document_is_not_resurrected_by_older_write(index_factory: IndexFactory) -> None:
    index = index_factory()
    vector = unit_vectors(1, seed=6)[0]
    index.upsert([record("a", 1, vector)])
    assert index.delete(["a"], version=3).written == ("a",)
    assert index.upsert([record("a", 2, vector)]).stale == ("a",)
    assert index.get(["a"]) == []
    assert index.search(vector, k=5) == []
    assert index.count() == 0


def test_delete_of_unseen_id_blocks_older_write(index_factory: IndexFactory) -> None:
    index = index_factory()
    assert index.delete(["ghost"], version=10).written == ("ghost",)
    assert index.versions(["ghost"]) == {"ghost": 10}
    assert index.upsert([record("ghost", 9, unit_vectors(1, seed=7)[0])]).stale == ("ghost",)
    assert index.count() == 0


def test_delete_older_than_stored_version_is_stale(index_factory: IndexFactory) -> None:
    index = index_factory()
    index.upsert([record("a", 5, unit_vectors(1, seed=8)[0])])
    result = index.delete(["a", "b"], version=4)
    assert result.stale == ("a",)
    assert result.written == ("b",)
    assert [doc.id for doc in index.get(["a"])] == ["a"]


def test_reupsert_after_delete_with_newer_version_is_searchable(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(6, seed=9)
    fill(index, vectors[1:])
    index.upsert([record("a", 1, vectors[0])])
    index.delete(["a"], version=2)
    assert index.upsert([record("a", 3, vectors[0], {"back": "yes"})]).written == ("a",)
    top = index.search(vectors[0], k=1)[0]
    assert (top.id, top.version, top.metadata) == ("a", 3, {"back": "yes"})
    assert index.count() == 6


def test_versions_report_live_and_tombstoned_ids_only(index_factory: IndexFactory) -> None:
    index = index_factory()
    fill(index, unit_vectors(2, seed=10), version=7)
    index.delete(["doc-0001"], version=8)
    assert index.versions(["doc-0000", "doc-0001", "never"]) == {"doc-0000": 7, "doc-0001": 8}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operations=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 6), st.booleans()), min_size=1, max_size=12
    )
)
def test_final_state_is_the_highest_version_regardless_of_arrival_order(
    index_factory: IndexFactory, operations: list[tuple[str, int, bool]]
) -> None:
    index = index_factory()
    vectors = unit_vectors(len(operations), seed=11)
    winner: dict[str, tuple[int, bool, int]] = {}
    for position, (doc_id, version, is_delete) in enumerate(operations):
        if is_delete:
            index.delete([doc_id], version)
        else:
            index.upsert([record(doc_id, version, vectors[position])])
        # The first write at a version wins: later writes at the same version are stale.
        if doc_id not in winner or version > winner[doc_id][0]:
            winner[doc_id] = (version, is_delete, position)
    assert index.versions(["a", "b", "c"]) == {doc_id: state[0] for doc_id, state in winner.items()}
    live = {doc_id: state for doc_id, state in winner.items() if not state[1]}
    assert {doc.id: doc.version for doc in index.get(["a", "b", "c"])} == {i: s[0] for i, s in live.items()}
    assert index.count() == len(live)
    for doc_id, (version, _, position) in live.items():
        hits = index.search(vectors[position], k=3)
        assert any(hit.id == doc_id and hit.version == version for hit in hits)


def test_search_returns_nearest_first_with_cosine_similarity(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(50, seed=12)
    ids = fill(index, vectors)
    query = unit_vectors(1, seed=13)[0]
    hits = index.search(query, k=5)
    expected = np.argsort(-(vectors @ query))[:5]
    assert [hit.id for hit in hits] == [ids[i] for i in expected]
    assert [hit.score for hit in hits] == pytest.approx(
        [float(vectors[i] @ query) for i in expected], abs=1e-4
    )
    assert all(hit.index == index.name and hit.version == 1 for hit in hits)
    assert all(hit.text == "" for hit in hits)


def test_search_returns_text_only_when_asked(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(30, seed=14)
    fill(index, vectors)
    for search in (index.search, index.exact_search):
        plain = search(vectors[3], 4)
        with_text = search(vectors[3], 4, include_text=True)
        assert [h.id for h in with_text] == [h.id for h in plain]
        assert [h.text for h in with_text] == [f"text of {h.id} v1" for h in plain]
        assert {h.text for h in plain} == {""}


def test_search_after_a_rewrite_shows_the_new_version_and_metadata(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(20, seed=15)
    ids = fill(index, vectors)
    # The first search may keep the rows it returned in memory; later writes must replace what it kept.
    assert index.search(vectors[0], k=1)[0].metadata == {}
    index.upsert([record(ids[0], 2, vectors[0], {"v": "two"})])
    top = index.search(vectors[0], k=1)[0]
    assert (top.id, top.version, top.metadata) == (ids[0], 2, {"v": "two"})
    index.delete([ids[0]], 3)
    assert ids[0] not in {h.id for h in index.search(vectors[0], k=5)}
    index.upsert([record(ids[0], 4, vectors[0], {"v": "four"})])
    top = index.search(vectors[0], k=1, include_text=True)[0]
    assert (top.id, top.version, top.metadata, top.text) == (ids[0], 4, {"v": "four"}, f"text of {ids[0]} v4")


def test_cosine_scores_ignore_vector_length(index_factory: IndexFactory) -> None:
    index = index_factory()
    vector = unit_vectors(1, seed=14)[0]
    index.upsert([record("long", 1, vector * 7.0)])
    assert index.search(vector * 0.5, k=1)[0].score == pytest.approx(1.0, abs=1e-5)
    assert index.exact_search(vector * 0.5, k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_inner_product_space_scores_are_dot_products(index_factory: IndexFactory) -> None:
    index = index_factory(space="ip")
    vectors = unit_vectors(20, seed=15) * np.linspace(0.5, 2.0, 20, dtype=np.float32)[:, None]
    ids = fill(index, vectors)
    query = unit_vectors(1, seed=16)[0]
    best = int(np.argmax(vectors @ query))
    for hits in (index.search(query, k=1), index.exact_search(query, k=1)):
        assert hits[0].id == ids[best]
        assert hits[0].score == pytest.approx(float(vectors[best] @ query), abs=1e-4)


def test_search_with_k_larger_than_live_count_returns_every_live_document(
    index_factory: IndexFactory,
) -> None:
    index = index_factory()
    ids = fill(index, unit_vectors(5, seed=17))
    index.delete(ids[:2], version=2)
    query = unit_vectors(1, seed=18)[0]
    hits = index.search(query, k=50)
    assert sorted(hit.id for hit in hits) == ids[2:]
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_search_on_empty_index_returns_nothing(index_factory: IndexFactory) -> None:
    index = index_factory()
    query = unit_vectors(1, seed=19)[0]
    assert index.search(query, k=10) == []
    assert index.exact_search(query, k=10) == []
    assert index.search(query, k=10, where={"lang": "en"}) == []


def test_search_skips_deleted_documents_and_still_returns_k(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(40, seed=20)
    ids = fill(index, vectors)
    query = vectors[0]
    nearest = [ids[i] for i in np.argsort(-(vectors @ query))[:10]]
    index.delete(nearest[:5], version=2)
    hits = index.search(query, k=10)
    assert len(hits) == 10
    assert not {hit.id for hit in hits} & set(nearest[:5])
    assert [hit.id for hit in hits[:5]] == nearest[5:]


def test_search_where_returns_only_matching_documents_up_to_k(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(60, seed=21)
    index.upsert(
        [
            record(f"doc-{i:02d}", 1, vectors[i], {"parity": "even" if i % 2 == 0 else "odd"})
            for i in range(60)
        ]
    )
    query = vectors[1]
    hits = index.search(query, k=8, where={"parity": "even"})
    evens = [i for i in range(0, 60, 2)]
    expected = [f"doc-{evens[j]:02d}" for j in np.argsort(-(vectors[evens] @ query))[:8]]
    assert [hit.id for hit in hits] == expected
    assert all(hit.metadata["parity"] == "even" for hit in hits)


def test_search_where_requires_every_pair_to_match(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(4, seed=22)
    index.upsert(
        [
            record("en-t1", 1, vectors[0], {"lang": "en", "tenant": "t1"}),
            record("en-t2", 1, vectors[1], {"lang": "en", "tenant": "t2"}),
            record("de-t1", 1, vectors[2], {"lang": "de", "tenant": "t1"}),
            record("bare", 1, vectors[3]),
        ]
    )
    for search in (index.search, index.exact_search):
        assert [hit.id for hit in search(vectors[3], 10, {"lang": "en", "tenant": "t1"})] == ["en-t1"]
        assert search(vectors[3], 10, {"lang": "fr"}) == []


def test_search_where_sees_metadata_changes_and_deletes(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(3, seed=23)
    index.upsert([record(f"d{i}", 1, vectors[i], {"tag": "x"}) for i in range(3)])
    index.upsert([record("d0", 2, vectors[0], {"tag": "y"})])
    index.delete(["d1"], version=2)
    assert [hit.id for hit in index.search(vectors[0], 10, {"tag": "x"})] == ["d2"]
    assert [hit.id for hit in index.search(vectors[0], 10, {"tag": "y"})] == ["d0"]


def test_exact_search_matches_numpy_brute_force(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(200, seed=24)
    ids = fill(index, vectors)
    query = unit_vectors(1, seed=25)[0]
    scores = vectors @ query
    expected = np.argsort(-scores)[:10]
    hits = index.exact_search(query, k=10)
    assert [hit.id for hit in hits] == [ids[i] for i in expected]
    assert [hit.score for hit in hits] == pytest.approx(scores[expected].tolist(), abs=1e-5)


def test_approximate_search_recalls_exact_neighbours(index_factory: IndexFactory) -> None:
    index = index_factory()
    fill(index, unit_vectors(500, seed=26))
    found = total = 0
    for query in unit_vectors(20, seed=27):
        exact = {hit.id for hit in index.exact_search(query, k=10)}
        found += len(exact & {hit.id for hit in index.search(query, k=10)})
        total += len(exact)
    assert found / total >= 0.9


def test_scan_pages_live_documents_in_id_order(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(25, seed=28)
    ids = [f"id-{i}" for i in range(25)]  # lexicographic order differs from numeric: id-10 < id-2
    index.upsert([record(doc_id, 1, vector) for doc_id, vector in zip(ids, vectors, strict=True)])
    index.delete(["id-3", "id-17"], version=2)
    expected = sorted(set(ids) - {"id-3", "id-17"})
    assert [doc.id for doc in iter_all(index, batch=4)] == expected
    page = index.scan("id-2", 3)
    assert [doc.id for doc in page] == [doc_id for doc_id in expected if doc_id > "id-2"][:3]
    assert index.scan(expected[-1], 10) == []


def test_max_version_covers_live_and_tombstoned_documents(index_factory: IndexFactory) -> None:
    index = index_factory()
    assert index.max_version() == 0
    fill(index, unit_vectors(3, seed=34), version=4)
    assert index.max_version() == 4
    index.delete(["unseen"], version=9)
    index.upsert([record("late", 6, unit_vectors(1, seed=35)[0])])
    assert index.max_version() == 9


def test_count_tracks_live_documents(index_factory: IndexFactory) -> None:
    index = index_factory()
    ids = fill(index, unit_vectors(10, seed=29))
    assert index.count() == 10
    index.delete([*ids[:3], "unseen"], version=2)
    assert index.count() == 7
    fill(index, unit_vectors(10, seed=30), version=3)
    assert index.count() == 10


def test_upsert_rejects_wrong_dimension_without_writing(index_factory: IndexFactory) -> None:
    index = index_factory()
    good = unit_vectors(1, seed=31)[0]
    bad = unit_vectors(1, seed=31, dim=DIM + 1)[0]
    with pytest.raises(ValueError, match=rf"dim {DIM}.*dim {DIM + 1}"):
        index.upsert([record("good", 1, good), record("bad", 1, bad)])
    assert index.count() == 0
    assert index.versions(["good", "bad"]) == {}


def test_storage_bytes_grows_with_data(index_factory: IndexFactory) -> None:
    index = index_factory(dim=64)
    index.flush()
    empty = index.storage_bytes()
    fill(index, unit_vectors(300, seed=32, dim=64))
    index.flush()
    assert index.storage_bytes() > empty + 300 * 64 * 4


def test_concurrent_searches_and_writes(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(400, seed=33)
    ids = fill(index, vectors[:100])
    errors: list[BaseException] = []
    searches = [0]
    writing = threading.Event()
    writing.set()

    def search_loop(seed: int) -> None:
        queries = unit_vectors(50, seed=seed)
        try:
            while writing.is_set():
                for query in queries:
                    hits = index.search(query, k=10)
                    # 100 of the first documents are never deleted, so 10 live hits always exist.
                    assert len(hits) == 10
                    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
                    searches[0] += 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=search_loop, args=(100 + n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for start in range(100, 400, 20):
            batch = [f"doc-{i:04d}" for i in range(start, start + 20)]
            index.upsert([record(d, 1, vectors[int(d[4:])]) for d in batch])
            index.delete(batch[:5], version=2)
    finally:
        writing.clear()
        for thread in threads:
            thread.join()
    assert errors == []
    assert searches[0] > 0
    assert index.count() == 100 + 300 - 75
    assert index.search(vectors[399], k=1)[0].id == "doc-0399"
    assert ids[0] in {hit.id for hit in index.search(vectors[0], k=1)}


def test_compact_keeps_live_documents_and_the_version_guard(index_factory: IndexFactory) -> None:
    index = index_factory()
    vectors = unit_vectors(40, seed=36)
    ids = fill(index, vectors)
    index.delete(ids[:20], version=2)
    assert 0.0 <= index.dead_fraction() <= 1.0
    assert isinstance(index.compact(), int)
    assert 0.0 <= index.dead_fraction() <= 1.0
    assert index.count() == 20
    assert [doc.id for doc in index.get(ids)] == ids[20:]
    assert [doc.id for doc in iter_all(index)] == ids[20:]
    assert index.versions(ids) == {doc_id: 2 if n < 20 else 1 for n, doc_id in enumerate(ids)}
    hits = index.search(vectors[0], k=10)
    assert len(hits) == 10
    assert {hit.id for hit in hits} <= set(ids[20:])
    # Tombstones outlive compaction: an older write still cannot bring a deleted document back.
    assert index.upsert([record(ids[0], 1, vectors[0])]).stale == (ids[0],)
    assert index.upsert([record(ids[1], 3, vectors[1])]).written == (ids[1],)
    assert index.search(vectors[1], k=1)[0].id == ids[1]
    assert index.count() == 21
