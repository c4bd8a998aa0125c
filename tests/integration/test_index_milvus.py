"""What only the Milvus backend has: a version check done by the adapter, a server to lose, a collection to
check. Runs against a real milvus-lite engine (a `.db` folder per test)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from proxy.adapters.milvus import MilvusIndex, redact_uri
from proxy.core.errors import ConfigError, IndexClosed, IndexConfigMismatch, Unavailable
from proxy.core.model import IndexRecord
from proxy.demo.sidecar_process import free_port

DIM = 8


def _vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _record(doc_id: str, version: int, vector: np.ndarray) -> IndexRecord:
    return IndexRecord(id=doc_id, version=version, text=f"{doc_id} v{version}", metadata={}, vector=vector)


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db")


def test_concurrent_writers_of_the_same_ids_leave_the_highest_version(uri: str) -> None:
    # Two index objects on one collection (as during a hot reload) and eight threads, writing and deleting
    # the same ten ids at shuffled versions: without the per-id serialization, a read-then-upsert pair could
    # interleave with another and a lower version could land last.
    first = MilvusIndex("docs", DIM, uri, collection="shared")
    second = MilvusIndex("docs", DIM, uri, collection="shared")
    ids = [f"doc-{i}" for i in range(10)]
    operations = [(doc_id, version) for doc_id in ids for version in range(1, 41)]
    random.Random(7).shuffle(operations)
    vectors = _vectors(len(operations), seed=1)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        index = first if worker % 2 == 0 else second
        try:
            for position in range(worker, len(operations), 8):
                doc_id, version = operations[position]
                if version % 7 == 0:
                    index.delete([doc_id], version)
                else:
                    index.upsert([_record(doc_id, version, vectors[position])])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert first.versions(ids) == dict.fromkeys(ids, 40)
    assert [doc.version for doc in second.get(ids)] == [40] * 10
    # Every lower version is now refused, a tombstone's too.
    assert first.upsert([_record("doc-0", 35, vectors[0])]).stale == ("doc-0",)
    assert second.delete(["doc-1"], 39).stale == ("doc-1",)
    first.close()
    second.close()


def test_unreachable_server_raises_unavailable_naming_the_uri() -> None:
    uri = f"http://root:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable) as info:
        MilvusIndex("docs", DIM, uri, timeout_s=2)
    message = str(info.value)
    assert f"127.0.0.1:{uri.rsplit(':', 1)[1]}" in message
    assert "s3cret" not in message
    assert "\n" not in message
    assert redact_uri(uri) in message


def test_uri_that_is_neither_a_db_path_nor_a_server_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"uri .*data/milvus.*ending in \.db"):
        MilvusIndex("docs", DIM, str(tmp_path / "data" / "milvus"))


def test_collection_of_another_shape_is_refused_naming_the_field(uri: str) -> None:
    client = MilvusClient(uri)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("version", DataType.VARCHAR, max_length=16)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    params = client.prepare_index_params()
    params.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 8, "efConstruction": 32})
    client.create_collection("theirs", schema=schema, index_params=params)
    with pytest.raises(ConfigError) as info:
        MilvusIndex("docs", DIM, uri, collection="theirs")
    assert "'version' is VARCHAR, expected INT64" in str(info.value)
    assert "theirs" in str(info.value)
    assert client.describe_collection("theirs")["fields"][1]["type"] == DataType.VARCHAR  # left as it was


def test_collection_of_another_dim_or_space_is_a_mismatch(uri: str) -> None:
    MilvusIndex("docs", DIM, uri).close()
    with pytest.raises(
        IndexConfigMismatch, match=r"field 'vector' has dim 8, the index is configured for 16"
    ):
        MilvusIndex("docs", 16, uri)
    with pytest.raises(IndexConfigMismatch, match=r"metric COSINE.*space 'ip'"):
        MilvusIndex("docs", DIM, uri, space="ip")


def test_reopening_keeps_documents_versions_and_tombstones(uri: str) -> None:
    index = MilvusIndex("docs", DIM, uri)
    vectors = _vectors(3, seed=2)
    index.upsert([_record(f"d{i}", 5, vectors[i]) for i in range(3)])
    index.delete(["d1", "never-written"], 9)
    index.flush()
    index.close()
    with pytest.raises(IndexClosed):
        index.count()
    reopened = MilvusIndex("docs", DIM, uri)
    assert reopened.versions(["d0", "d1", "d2", "never-written"]) == {
        "d0": 5,
        "d1": 9,
        "d2": 5,
        "never-written": 9,
    }
    assert reopened.count() == 2
    assert reopened.max_version() == 9
    assert reopened.search(vectors[2], k=1)[0].id == "d2"
    reopened.close()


def test_ids_and_metadata_with_quotes_and_backslashes_are_literals(uri: str) -> None:
    index = MilvusIndex("docs", DIM, uri)
    vectors = _vectors(3, seed=3)
    tricky = ['a" or id != "', "back\\slash", "new\nline"]
    index.upsert(
        [
            IndexRecord(id=i, version=1, text=i, metadata={'k"ey': 'v"al\\'}, vector=vectors[n])
            for n, i in enumerate(tricky)
        ]
    )
    assert [doc.id for doc in index.get(tricky)] == tricky
    assert [doc.id for doc in index.get(['a"'])] == []
    assert len(index.search(vectors[0], 5, where={'k"ey': 'v"al\\'})) == 3
    assert index.search(vectors[0], 5, where={'k"ey': "v"}) == []
    index.close()


def test_text_over_the_varchar_limit_is_refused_before_anything_is_written(uri: str) -> None:
    index = MilvusIndex("docs", DIM, uri)
    vectors = _vectors(2, seed=4)
    good = _record("good", 1, vectors[0])
    long = IndexRecord(id="long", version=1, text="é" * 40_000, metadata={}, vector=vectors[1])
    with pytest.raises(ValueError, match="80,000 bytes of text"):
        index.upsert([good, long])
    assert index.versions(["good", "long"]) == {}
    index.close()
