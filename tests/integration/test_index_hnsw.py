"""HnswIndex beyond the VectorIndex contract: persistence, crash recovery, graph growth, locking."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from proxy.adapters.hnsw import HnswIndex
from proxy.adapters.hnsw import graph as hnsw_graph
from proxy.adapters.hnsw import index as hnsw_index
from proxy.adapters.hnsw import locks as hnsw_locks
from proxy.adapters.hnsw import store as hnsw_store
from proxy.core.errors import ConfigError, IndexClosed, IndexConfigMismatch
from proxy.core.model import IndexRecord, Vector
from proxy.core.ports import iter_all

DIM = 8


def unit_vectors(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def record(doc_id: str, version: int, vector: Vector, metadata: dict[str, str] | None = None) -> IndexRecord:
    return IndexRecord(
        id=doc_id, version=version, text=f"text of {doc_id}", metadata=metadata or {}, vector=vector
    )


def doc_ids(count: int) -> list[str]:
    return [f"doc-{i:04d}" for i in range(count)]


def open_index(directory: Path, **options: object) -> HnswIndex:
    return HnswIndex("test", DIM, directory, initial_capacity=8, **options)  # type: ignore[arg-type]


def assert_each_finds_itself(index: HnswIndex, ids: list[str], vectors: np.ndarray) -> None:
    for doc_id, vector in zip(ids, vectors, strict=True):
        top = index.search(vector, k=1)
        assert top and top[0].id == doc_id, f"{doc_id} is not its own nearest neighbour"


def test_search_finds_nearest_after_reopen(tmp_path: Path) -> None:
    vectors = unit_vectors(60, seed=1)
    ids = doc_ids(60)
    index = open_index(tmp_path)
    index.upsert([record(i, 2, v, {"n": i[-1]}) for i, v in zip(ids, vectors, strict=True)])
    index.delete(ids[:10], version=3)
    index.close()

    reopened = open_index(tmp_path)
    try:
        assert reopened.count() == 50
        assert reopened.max_version() == 3
        assert_each_finds_itself(reopened, ids[10:], vectors[10:])
        assert len(reopened.search(vectors[0], k=100)) == 50
        assert reopened.get([ids[11]])[0].metadata == {"n": "1"}
        # Tombstones persist: an older write still cannot bring a deleted document back.
        assert reopened.upsert([record(ids[0], 2, vectors[0])]).stale == (ids[0],)
    finally:
        reopened.close()


def test_writes_keep_working_after_reopen(tmp_path: Path) -> None:
    vectors = unit_vectors(40, seed=2)
    ids = doc_ids(40)
    index = open_index(tmp_path)
    index.upsert([record(i, 1, v) for i, v in zip(ids[:20], vectors[:20], strict=True)])
    index.delete([ids[0]], version=2)
    index.close()

    reopened = open_index(tmp_path)
    try:
        # New labels must not collide with labels handed out before the reopen.
        reopened.upsert([record(i, 1, v) for i, v in zip(ids[20:], vectors[20:], strict=True)])
        reopened.upsert([record(ids[0], 3, vectors[0])])
        assert reopened.count() == 40
        assert_each_finds_itself(reopened, ids, vectors)
    finally:
        reopened.close()


_CRASHING_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import numpy as np
    from proxy.adapters.hnsw import HnswIndex
    from proxy.core.model import IndexRecord

    directory, vectors_path, flush_midway = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    vectors = np.load(vectors_path)
    ids = [f"doc-{i:04d}" for i in range(len(vectors) - 1)]
    records = [IndexRecord(i, 1, "t", {}, v) for i, v in zip(ids, vectors)]
    index = HnswIndex("killed", vectors.shape[1], Path(directory), initial_capacity=8)
    index.upsert(records[:100])
    if flush_midway:
        index.flush()
    index.upsert(records[100:])
    index.delete(["doc-0000", "doc-0150"], version=2)
    index.upsert([IndexRecord("doc-0001", 3, "moved", {}, vectors[-1])])
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("flush_midway", [False, True], ids=["never-flushed", "flushed-midway"])
def test_acknowledged_writes_survive_sigkill(tmp_path: Path, flush_midway: bool) -> None:
    vectors = unit_vectors(201, seed=3)
    np.save(tmp_path / "vectors.npy", vectors)
    directory = tmp_path / "index"
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            _CRASHING_WRITER,
            str(directory),
            str(tmp_path / "vectors.npy"),
            str(int(flush_midway)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr

    index = HnswIndex("killed", DIM, directory)
    try:
        ids = doc_ids(200)
        survivors = [i for i in range(2, 200) if i != 150]
        assert index.count() == 199 - 2 + 1
        assert_each_finds_itself(index, [ids[i] for i in survivors], vectors[survivors])
        assert index.search(vectors[-1], k=1)[0].id == "doc-0001"
        assert index.get(["doc-0001"])[0].text == "moved"
        # Every hit the graph returns is live: deletions reached the graph, not only SQLite.
        found = {hit.id for hit in index.search(vectors[0], k=500)}
        assert len(found) == 198
        assert not found & {"doc-0000", "doc-0150"}
    finally:
        index.close()


def test_writes_after_a_flush_are_replayed_from_sqlite(tmp_path: Path) -> None:
    vectors = unit_vectors(80, seed=4)
    ids = doc_ids(80)
    index = open_index(tmp_path / "live")
    index.upsert([record(i, 1, v) for i, v in zip(ids[:40], vectors[:40], strict=True)])
    index.flush()
    index.upsert([record(i, 1, v) for i, v in zip(ids[40:], vectors[40:], strict=True)])
    index.delete(ids[:5], version=2)
    # A copy of the files as they are now is what a crash would leave behind.
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "live", crashed)
    index.close()

    recovered = open_index(crashed)
    try:
        assert recovered.count() == 75
        assert_each_finds_itself(recovered, ids[5:], vectors[5:])
        assert len(recovered.search(vectors[0], k=80)) == 75
    finally:
        recovered.close()


@pytest.mark.parametrize("damage", ["truncated", "flipped-bytes", "missing", "missing-meta"])
def test_damaged_graph_file_is_rebuilt_from_sqlite(tmp_path: Path, damage: str) -> None:
    vectors = unit_vectors(50, seed=5)
    ids = doc_ids(50)
    index = open_index(tmp_path)
    index.upsert([record(i, 1, v) for i, v in zip(ids, vectors, strict=True)])
    index.close()
    graph = tmp_path / "graph.bin"
    content = bytearray(graph.read_bytes())
    if damage == "truncated":
        graph.write_bytes(content[: len(content) // 2])
    elif damage == "flipped-bytes":
        content[200:264] = bytes(255 - b for b in content[200:264])
        graph.write_bytes(bytes(content))
    elif damage == "missing":
        graph.unlink()
    else:
        (tmp_path / "graph.json").unlink()

    reopened = open_index(tmp_path)
    try:
        assert_each_finds_itself(reopened, ids, vectors)
    finally:
        reopened.close()


def test_graph_missing_live_rows_is_rebuilt(tmp_path: Path) -> None:
    vectors = unit_vectors(40, seed=6)
    ids = doc_ids(40)
    index = open_index(tmp_path)
    index.upsert([record(i, 1, v) for i, v in zip(ids[:20], vectors[:20], strict=True)])
    index.flush()
    old_graph = (tmp_path / "graph.bin").read_bytes()
    index.upsert([record(i, 1, v) for i, v in zip(ids[20:], vectors[20:], strict=True)])
    index.close()
    # An older graph file whose metadata claims the newest sequence: replay would skip the last 20 rows.
    meta = json.loads((tmp_path / "graph.json").read_text())
    (tmp_path / "graph.bin").write_bytes(old_graph)
    meta["graph_bytes"] = len(old_graph)
    meta["graph_crc32"] = hnsw_graph._crc32(tmp_path / "graph.bin")
    (tmp_path / "graph.json").write_text(json.dumps(meta))

    reopened = open_index(tmp_path)
    try:
        assert_each_finds_itself(reopened, ids, vectors)
    finally:
        reopened.close()


@pytest.mark.parametrize(("dim", "space"), [(DIM + 4, "cosine"), (DIM, "ip")])
def test_reopen_with_other_dim_or_space_raises_config_mismatch(tmp_path: Path, dim: int, space: str) -> None:
    open_index(tmp_path).close()
    with pytest.raises(
        IndexConfigMismatch, match=rf"dim={DIM}, space=cosine.*dim={dim}, space={space}"
    ) as error:
        HnswIndex("test", dim, tmp_path, space=space)  # type: ignore[arg-type]
    assert isinstance(error.value, ConfigError)
    assert isinstance(error.value, ValueError)
    # The failed open left the directory usable with its own config.
    open_index(tmp_path).close()


def test_index_grows_past_initial_capacity(tmp_path: Path) -> None:
    vectors = unit_vectors(300, seed=7)
    ids = doc_ids(300)
    index = HnswIndex("test", DIM, tmp_path, initial_capacity=2)
    try:
        for start in range(0, 300, 7):
            batch = range(start, min(start + 7, 300))
            index.upsert([record(ids[i], 1, vectors[i]) for i in batch])
        assert index.count() == 300
        assert_each_finds_itself(index, ids, vectors)
    finally:
        index.close()


def test_large_filtered_search_walks_the_graph_with_the_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hnsw_index, "_EXACT_FILTER_LIMIT", 0)
    vectors = unit_vectors(400, seed=8)
    index = open_index(tmp_path)
    try:
        index.upsert([record(f"d{i}", 1, vectors[i], {"bucket": str(i % 4)}) for i in range(400)])
        for query in unit_vectors(10, seed=9):
            hits = index.search(query, k=10, where={"bucket": "2"})
            exact = index.exact_search(query, k=10, where={"bucket": "2"})
            assert len(hits) == 10
            assert all(hit.metadata == {"bucket": "2"} for hit in hits)
            assert len({h.id for h in hits} & {h.id for h in exact}) >= 8
    finally:
        index.close()


class _ShortGraph:
    """Stands in for an hnswlib graph whose walk comes back with fewer nodes than asked for."""

    def knn_query(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "Cannot return the results in a contiguous 2D array. Probably ef or M is too small"
        )


def test_search_answers_exactly_when_the_graph_walk_comes_up_short(tmp_path: Path) -> None:
    vectors = unit_vectors(30, seed=10)
    ids = doc_ids(30)
    index = open_index(tmp_path)
    index.upsert([record(i, 1, v) for i, v in zip(ids, vectors, strict=True)])
    real_graph, index._graph = index._graph, _ShortGraph()  # type: ignore[assignment]
    try:
        hits = index.search(vectors[3], k=5)
        assert [hit.id for hit in hits] == [hit.id for hit in index.exact_search(vectors[3], k=5)]
        assert hits[0].id == ids[3]
    finally:
        index._graph = real_graph
        index.close()


def test_upsert_rejects_non_finite_vectors(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    try:
        vector = unit_vectors(1, seed=11)[0]
        vector[2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            index.upsert([record("a", 1, vector)])
        assert index.count() == 0
    finally:
        index.close()


def test_use_after_close_raises_and_close_is_idempotent(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    index.close()
    index.close()
    with pytest.raises(IndexClosed, match="'test' is closed"):
        index.upsert([record("a", 1, unit_vectors(1, seed=12)[0])])
    with pytest.raises(IndexClosed):
        index.search(unit_vectors(1, seed=12)[0], k=1)


def test_storage_bytes_counts_sqlite_and_graph_files(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    try:
        index.upsert([record(i, 1, v) for i, v in zip(doc_ids(100), unit_vectors(100, seed=13), strict=True)])
        index.flush()
        files = {path.name: path.stat().st_size for path in tmp_path.iterdir()}
        assert files["graph.bin"] > 100 * DIM * 4
        assert files["index.sqlite3"] > 100 * DIM * 4
        assert index.storage_bytes() == sum(files.values())
    finally:
        index.close()


def test_shared_lock_admits_many_readers_and_excludes_a_writer() -> None:
    lock = hnsw_locks.SharedExclusiveLock()
    second_reader_in = threading.Event()
    writer_in = threading.Event()

    def second_reader() -> None:
        with lock.shared():
            second_reader_in.set()

    def writer() -> None:
        with lock.exclusive():
            writer_in.set()

    with lock.shared():
        threading.Thread(target=second_reader).start()
        assert second_reader_in.wait(5), "a second search waited for the first"
        writer_thread = threading.Thread(target=writer)
        writer_thread.start()
        assert not writer_in.wait(0.2), "a write ran during a search"
    assert writer_in.wait(5)
    writer_thread.join()


# ---- compaction -----------------------------------------------------------------------------------------------


def auto_vacuum_mode(directory: Path) -> int:
    with sqlite3.connect(directory / "index.sqlite3") as conn:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])


def assert_half_deleted_state(index: HnswIndex, directory: Path, ids: list[str], vectors: np.ndarray) -> None:
    """The state after deleting every even-numbered document of `ids` at version 2."""
    deleted, kept = ids[::2], ids[1::2]
    assert index.count() == len(kept)
    assert [doc.id for doc in index.get(ids)] == kept
    assert [doc.id for doc in iter_all(index)] == kept
    assert index.versions(ids) == {doc_id: 2 - n % 2 for n, doc_id in enumerate(ids)}
    assert_each_finds_itself(index, kept[:200], vectors[1::2][:200])
    for query in vectors[:5]:
        hits = index.search(query, k=10)
        assert len(hits) == 10 and {hit.id for hit in hits} <= set(kept)
        # 2500 matches is above the exact-search limit: this walks the graph with the filter.
        assert all(hit.metadata == {"odd": "1"} for hit in index.search(query, k=10, where={"odd": "1"}))
    # Tombstones keep id and version only, and still reject older and equal versions.
    with sqlite3.connect(directory / "index.sqlite3") as conn:
        bulky = conn.execute(
            "SELECT COUNT(*) FROM documents WHERE deleted = 1 AND (text != '' OR metadata != '{}' OR vector IS NOT NULL)"
        ).fetchone()[0]
        pairs = conn.execute("SELECT COUNT(*) FROM metadata_pairs WHERE value = '0'").fetchone()[0]
    assert (bulky, pairs) == (0, 0)
    assert index.upsert(
        [record(deleted[0], 1, vectors[0]), record(deleted[1], 2, vectors[2])]
    ).stale == tuple(deleted[:2])


def test_compaction_after_deleting_half_gives_back_the_space(tmp_path: Path) -> None:
    dim, total = 128, 5000
    vectors = unit_vectors(total, seed=14, dim=dim)
    ids = doc_ids(total)
    index = HnswIndex("test", dim, tmp_path, ef_construction=40)
    for start in range(0, total, 1000):
        index.upsert([record(ids[i], 1, vectors[i], {"odd": str(i % 2)}) for i in range(start, start + 1000)])
    index.compact()  # the steady state to compare with: graph file saved, WAL truncated
    full = index.storage_bytes()
    # Every other row: each SQLite page loses half its bytes, and no page empties by itself.
    index.delete(ids[::2], version=2)
    assert index.dead_fraction() == pytest.approx(0.5)

    reclaimed = index.compact()
    compacted = index.storage_bytes()
    assert compacted < 0.65 * full, f"{full} -> {compacted} bytes"
    assert reclaimed > full // 3
    assert index.dead_fraction() == 0.0
    assert_half_deleted_state(index, tmp_path, ids, vectors)
    index.close()

    reopened = HnswIndex("test", dim, tmp_path, ef_construction=40)
    try:
        assert reopened.dead_fraction() == 0.0
        assert_half_deleted_state(reopened, tmp_path, ids, vectors)
        # Deleted labels are not in the compacted graph: they are added anew, past its headroom, so it grows.
        revived = reopened.upsert([record(ids[i], 3, vectors[i]) for i in range(0, 2000, 2)])
        assert len(revived.written) == 1000
        assert reopened.count() == 3500
        assert_each_finds_itself(reopened, ids[:400], vectors[:400])
    finally:
        reopened.close()


def test_new_database_is_created_with_incremental_auto_vacuum(tmp_path: Path) -> None:
    open_index(tmp_path).close()
    assert auto_vacuum_mode(tmp_path) == 2


def test_compaction_converts_a_database_created_without_auto_vacuum(tmp_path: Path) -> None:
    # How databases were created before auto_vacuum was set: WAL mode first, then the tables.
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(hnsw_store._SCHEMA)
    vectors = unit_vectors(2000, seed=15, dim=64)
    ids = doc_ids(2000)
    index = HnswIndex("test", 64, tmp_path, initial_capacity=8)
    try:
        assert auto_vacuum_mode(tmp_path) == 0
        index.upsert([record(i, 1, v) for i, v in zip(ids, vectors, strict=True)])
        index.flush()
        database_bytes = (tmp_path / "index.sqlite3").stat().st_size
        index.delete(ids[::2], version=2)
        index.compact()
        assert auto_vacuum_mode(tmp_path) == 2
        assert (tmp_path / "index.sqlite3").stat().st_size < 0.7 * database_bytes
        assert [doc.id for doc in iter_all(index)] == ids[1::2]
        assert index.upsert([record(ids[0], 1, vectors[0])]).stale == (ids[0],)
    finally:
        index.close()


def test_dead_fraction_counts_deleted_graph_elements(tmp_path: Path) -> None:
    vectors = unit_vectors(12, seed=16)
    ids = doc_ids(10)
    index = open_index(tmp_path)
    assert index.dead_fraction() == 0.0
    index.upsert([record(i, 1, v) for i, v in zip(ids, vectors[:10], strict=True)])
    index.delete([*ids[:4], "never-written"], version=2)
    assert index.dead_fraction() == pytest.approx(0.4)
    # A revived document takes its element back; a newer vector replaces an element in place.
    index.upsert([record(ids[0], 3, vectors[0]), record(ids[9], 3, vectors[11])])
    assert index.dead_fraction() == pytest.approx(0.3)
    index.close()

    reopened = open_index(tmp_path)
    try:
        assert reopened.dead_fraction() == pytest.approx(0.3)
        reopened.compact()
        assert reopened.dead_fraction() == 0.0
        # Seven elements in a graph built for eight: the three revived ones make it grow.
        reopened.upsert([record(i, 4, vectors[n]) for n, i in enumerate(ids[1:4], start=1)])
        assert reopened.count() == 10
        assert reopened.dead_fraction() == 0.0
        assert_each_finds_itself(reopened, ids[:9], vectors[:9])
        assert reopened.search(vectors[11], k=1)[0].id == ids[9]
    finally:
        reopened.close()


def test_writes_during_the_graph_build_reach_the_compacted_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = unit_vectors(61, seed=17)
    ids = doc_ids(60)
    index = open_index(tmp_path)
    index.upsert([record(i, 1, v) for i, v in zip(ids[:40], vectors[:40], strict=True)])
    index.delete(ids[:10], version=2)
    build = index._graph_from_snapshot

    def build_then_write() -> tuple[object, int]:
        built = build()
        # After the snapshot, before the swap: only the replay under the write lock can bring these in.
        index.upsert([record(i, 1, v) for i, v in zip(ids[40:], vectors[40:60], strict=True)])
        index.upsert([record(ids[0], 3, vectors[0]), record(ids[20], 3, vectors[60])])
        index.delete(ids[10:15], version=3)
        return built

    monkeypatch.setattr(index, "_graph_from_snapshot", build_then_write)
    index.compact()
    index.close()

    reopened = open_index(tmp_path)
    try:
        live = [ids[0], *ids[15:]]
        assert reopened.count() == len(live)
        assert sorted(hit.id for hit in reopened.search(vectors[5], k=100)) == live
        # The snapshot held 30 live rows; the replay added 21 and marked 5 of them deleted.
        assert reopened.dead_fraction() == pytest.approx(5 / 51)
        assert reopened.search(vectors[60], k=1)[0].id == ids[20]
        moved = [n for n in range(15, 60) if n != 20]
        assert_each_finds_itself(reopened, [ids[0]] + [ids[n] for n in moved], vectors[[0, *moved]])
    finally:
        reopened.close()


def test_compaction_beside_searches_and_a_writer_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dim = 16
    vectors = unit_vectors(3000, seed=18, dim=dim)
    new_vectors = unit_vectors(3000, seed=19, dim=dim)
    ids = doc_ids(3000)
    index = HnswIndex("test", dim, tmp_path, initial_capacity=8, ef_construction=64)
    index.upsert([record(i, 1, v) for i, v in zip(ids, vectors, strict=True)])
    index.delete(ids[::2], version=2)
    revived = ids[:200:2]
    dead = set(ids[::2]) - set(revived)
    before = {doc.id: doc for doc in index.get(ids)}

    stop = threading.Event()
    errors: list[BaseException] = []
    searches = [0]
    writes = [0]
    written: dict[str, bool] = {}  # new id -> live

    def search_loop(seed: int) -> None:
        queries = unit_vectors(40, seed=seed, dim=dim)
        try:
            while not stop.is_set():
                for query in queries:
                    hits = index.search(query, k=10)
                    # 1500 documents are never touched, so 10 live hits always exist.
                    assert len(hits) == 10 == len({hit.id for hit in hits})
                    assert not {hit.id for hit in hits} & dead
                    searches[0] += 1
        except BaseException as error:
            errors.append(error)

    def write_loop() -> None:
        try:
            for n in range(len(new_vectors)):
                if stop.is_set():
                    return
                index.upsert([record(f"new-{n:04d}", 1, new_vectors[n])])
                written[f"new-{n:04d}"] = True
                if n < len(revived):
                    index.upsert([record(revived[n], 3, vectors[2 * n])])
                if n % 5 == 4:
                    index.delete([f"new-{n - 2:04d}"], version=2)
                    written[f"new-{n - 2:04d}"] = False
                writes[0] += 1
        except BaseException as error:
            errors.append(error)

    build = index._graph_from_snapshot

    def build_while_writing() -> tuple[object, int]:
        built = build()
        # Deterministic overlap: some writes land after the snapshot and must be replayed into the new graph.
        seen = writes[0]
        for _ in range(3000):
            if writes[0] >= seen + 20 or errors:
                break
            stop.wait(0.01)
        return built

    monkeypatch.setattr(index, "_graph_from_snapshot", build_while_writing)
    threads = [threading.Thread(target=search_loop, args=(100 + n,)) for n in range(4)]
    threads.append(threading.Thread(target=write_loop))
    for thread in threads:
        thread.start()
    try:
        index.compact()
        index.compact()
        while writes[0] < len(revived) and not errors:
            stop.wait(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        assert errors == []
        assert searches[0] > 0
        after = {doc.id: doc for doc in index.get(ids)}
        assert after == before | {doc.id: doc for doc in index.get(revived)}
        assert {doc.id: doc.version for doc in index.get(revived)} == dict.fromkeys(revived, 3)
        assert {doc.id for doc in index.get(list(written))} == {i for i, live in written.items() if live}
        assert index.count() == 1500 + len(revived) + sum(written.values())
        assert_each_finds_itself(index, revived, vectors[:200:2])
    finally:
        index.close()


def test_wal_of_a_small_index_is_truncated_before_it_outgrows_the_database(tmp_path: Path) -> None:
    vectors = unit_vectors(2000, seed=20, dim=128)
    index = HnswIndex("test", 128, tmp_path, ef_construction=16)
    wal = tmp_path / "index.sqlite3-wal"
    largest = 0
    try:
        for start in range(0, 2000, 4):
            index.upsert([record(f"d{n}", 1, vectors[n]) for n in range(start, start + 4)])
            largest = max(largest, wal.stat().st_size)
        # Without a limit relative to the database, 500 commits would leave several megabytes of WAL.
        assert largest < hnsw_store._WAL_CHECKPOINT_MIN_BYTES + 64 * 1024
    finally:
        index.close()


def test_graph_build_for_compaction_does_not_hold_back_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = unit_vectors(41, seed=21)
    ids = doc_ids(40)
    index = open_index(tmp_path)
    index.upsert([record(i, 1, v) for i, v in zip(ids, vectors[:40], strict=True)])
    index.delete(ids[:20], version=2)
    add = hnsw_graph.add_to_graph
    checkpoints: list[tuple[int, int, int]] = []

    def add_then_checkpoint(graph: object, labels: list[int], batch: list[Vector], threads: int = -1) -> None:
        add(graph, labels, batch, threads)  # type: ignore[arg-type]
        if graph is not index._graph and not checkpoints:
            # Mid-build: a write lands, and a checkpoint that waits for no one must still get through.
            index.upsert([record("late", 1, vectors[40])])
            with sqlite3.connect(tmp_path / "index.sqlite3", timeout=0) as conn:
                checkpoints.append(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())

    monkeypatch.setattr(hnsw_graph, "add_to_graph", add_then_checkpoint)
    try:
        index.compact()
        assert checkpoints and checkpoints[0][0] == 0, f"checkpoint was blocked: {checkpoints}"
        assert index.search(vectors[40], k=1)[0].id == "late"
        assert index.count() == 21
    finally:
        index.close()


def _written(tmp_path: Path, name: str, count: int, seed: int) -> tuple[HnswIndex, np.ndarray, list[str]]:
    """An index holding `count` documents at version 1, their vectors and their ids."""
    index = HnswIndex(name, DIM, tmp_path)
    vectors = unit_vectors(count, seed=seed)
    ids = doc_ids(count)
    index.upsert([record(i, 1, v) for i, v in zip(ids, vectors, strict=True)])
    return index, vectors, ids


def test_row_cache_never_keeps_a_version_older_than_the_last_write(tmp_path: Path) -> None:
    # Searches fill the row cache while writers rewrite the same documents; once the writers stop, every
    # search must see the last version of every document (a row read before a commit and cached after it
    # would stay stale for good).
    index, vectors, ids = _written(tmp_path, "cache", 40, seed=31)
    stop = threading.Event()
    errors: list[BaseException] = []

    def search_loop(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                index.search(vectors[rng.integers(40)], k=10)
                index.versions(list(rng.choice(ids, 5)), for_query=True)  # fills the cache too
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    readers = [threading.Thread(target=search_loop, args=(s,)) for s in range(3)]
    for reader in readers:
        reader.start()
    for version in range(2, 60):
        index.upsert([record(i, version, v, {"v": str(version)}) for i, v in zip(ids, vectors, strict=True)])
    stop.set()
    for reader in readers:
        reader.join()
    assert not errors
    for vector in vectors:
        assert {(h.version, h.metadata["v"]) for h in index.search(vector, k=10)} == {(59, "59")}
    assert index.versions(ids, for_query=True) == dict.fromkeys(ids, 59)
    index.close()


def test_versions_answered_from_the_cache_follow_rewrites_and_deletes(tmp_path: Path) -> None:
    index, vectors, ids = _written(tmp_path, "versions", 20, seed=33)
    assert index.versions(ids, for_query=True) == dict.fromkeys(ids, 1)
    assert len(index._rows) == 20, "the rows a query's versions() read are cached"
    index.upsert([record(ids[0], 5, vectors[0])])
    index.delete([ids[1]], 6)
    index.delete(["never-written"], 7)
    expected = {**dict.fromkeys(ids, 1), ids[0]: 5, ids[1]: 6, "never-written": 7}
    assert index.versions([*ids, "never-written", "unknown"], for_query=True) == expected
    index.upsert([record(ids[1], 8, vectors[1])])  # back from the dead: the version cached before is gone
    assert index.versions([ids[1]], for_query=True) == {ids[1]: 8}
    assert [h.version for h in index.search(vectors[1], k=1)] == [8]
    index.close()


def test_row_cache_is_bounded_and_can_be_turned_off(tmp_path: Path) -> None:
    vectors = unit_vectors(50, seed=32)
    for size in (0, 5):
        index = HnswIndex(f"cache-{size}", DIM, tmp_path / str(size), row_cache=size)
        index.upsert([record(i, 1, v) for i, v in zip(doc_ids(50), vectors, strict=True)])
        for vector in vectors:
            assert len(index.search(vector, k=10)) == 10
        assert len(index._rows) == size
        index.close()


def test_a_search_gives_up_at_its_timeout_while_a_write_holds_the_graph(tmp_path: Path) -> None:
    index, vectors, ids = _written(tmp_path, "busy", 10, seed=34)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with index._graph_lock.exclusive():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait()
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="a write held the graph longer than the 100 ms"):
            index.search(vectors[0], k=3, timeout_s=0.1)
        assert time.monotonic() - started < 5, "the search waited for the write instead of giving up"
        started = time.monotonic()
        assert index.versions(ids[:3], for_query=True) == dict.fromkeys(ids[:3], 1)
        assert time.monotonic() - started < 5, "versions() waited for the write instead of reading around it"
    finally:
        release.set()
        thread.join()
    assert index.search(vectors[0], k=1, timeout_s=0.1)[0].id == ids[0]
    index.close()


def test_only_a_query_s_version_lookups_fill_the_row_cache(tmp_path: Path) -> None:
    index, _, ids = _written(tmp_path, "bulk", 30, seed=35)
    assert index.versions(ids) == dict.fromkeys(ids, 1)
    assert len(index._rows) == 0, "a backfill batch's lookup must not sweep the cache"
    assert index.versions(ids[:10], for_query=True) == dict.fromkeys(ids[:10], 1)
    assert len(index._rows) == 10
    index.close()
