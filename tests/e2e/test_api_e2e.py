"""The data plane end to end: a real sidecar process, real gRPC over a socket, hnswlib files on disk."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import SidecarProcess
from tests.conftest import SidecarFactory, sidecar_config

CORPUS = synthetic_corpus(200)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchyardClient]:
    """One sidecar for the read-mostly tests of this module, loaded with 200 documents."""
    workdir = tmp_path_factory.mktemp("api")
    process = SidecarProcess(sidecar_config(workdir / "data"), workdir).start()
    client = process.client()
    for start in range(0, len(CORPUS), 50):
        client.upsert([Doc(d.id, d.text, {"topic": d.topic}) for d in CORPUS[start : start + 50]])
    yield client
    client.close()
    process.stop()


def _rejected(call: object, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert fragment in info.value.details()


def test_query_by_text_returns_the_document_itself_first(loaded: SwitchyardClient) -> None:
    target = CORPUS[17]
    response = loaded.query(target.text, k=5)
    assert response.hits[0].id == target.id
    assert response.hits[0].index == "idx-a" and response.hits[0].model == "hash-a"
    assert [h.score for h in response.hits] == sorted((h.score for h in response.hits), reverse=True)
    assert response.coverage == 1.0 and not response.degraded


def test_query_with_metadata_filter_only_returns_matching_documents(loaded: SwitchyardClient) -> None:
    response = loaded.query("telescope orbit galaxy", k=10, where={"topic": "cooking"})
    assert len(response.hits) == 10
    assert {h.metadata["topic"] for h in response.hits} == {"cooking"}


def test_query_by_caller_vector_of_the_serving_model(loaded: SwitchyardClient) -> None:
    target = CORPUS[42]
    vector = HashingEmbedder("hash-a", 32, seed=1).embed([target.text])[0]
    response = loaded.query(vector=vector.tolist(), vector_model="hash-a", k=1)
    assert response.hits[0].id == target.id


def test_get_returns_text_metadata_version_and_reports_missing(loaded: SwitchyardClient) -> None:
    response = loaded.get([CORPUS[3].id, "no-such-doc"])
    assert [d.id for d in response.documents] == [CORPUS[3].id]
    doc = response.documents[0]
    assert doc.text == CORPUS[3].text and doc.metadata["topic"] == CORPUS[3].topic
    assert doc.version > 0 and list(doc.indexes) == ["idx-a"]
    assert list(response.missing_ids) == ["no-such-doc"]


def test_upsert_replaces_a_document_with_a_newer_version(loaded: SwitchyardClient) -> None:
    first = loaded.upsert([Doc("replace-me", "old words about garlic")])["replace-me"]
    second = loaded.upsert([Doc("replace-me", "new words about telescopes")])["replace-me"]
    assert second > first
    assert loaded.get(["replace-me"]).documents[0].text == "new words about telescopes"
    assert loaded.query("new words about telescopes", k=1).hits[0].id == "replace-me"


def test_delete_removes_from_queries_and_reports_unknown_ids(loaded: SwitchyardClient) -> None:
    loaded.upsert([Doc("delete-me", "a unique sentence about zebra crossings")])
    response = loaded.delete(["delete-me", "never-existed"])
    assert [d.id for d in response.deleted] == ["delete-me"]
    assert list(response.missing_ids) == ["never-existed"]
    assert "delete-me" not in {h.id for h in loaded.query("zebra crossings", k=10).hits}
    assert list(loaded.get(["delete-me"]).missing_ids) == ["delete-me"]


def test_wrong_dimension_is_rejected(loaded: SwitchyardClient) -> None:
    _rejected(lambda: loaded.query(vector=[0.1] * 31, vector_model="hash-a"), "has 31 dimensions")
    _rejected(lambda: loaded.upsert([Doc("x", "t", vector=[0.1] * 5, vector_model="hash-a")]), "produces 32")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(loaded: SwitchyardClient, bad: float) -> None:
    vector = [0.1] * 31 + [bad]
    _rejected(lambda: loaded.query(vector=vector, vector_model="hash-a"), "NaN or infinite")
    _rejected(
        lambda: loaded.upsert([Doc("nan", "t", vector=vector, vector_model="hash-a")]), "NaN or infinite"
    )


def test_empty_text_and_no_vector_is_rejected(loaded: SwitchyardClient) -> None:
    _rejected(lambda: loaded.upsert([Doc("empty", "   ")]), "text is empty")
    _rejected(lambda: loaded.query("", k=3), "needs text or an embedding")


@pytest.mark.parametrize(
    ("k", "fragment"), [(0, "at least 1"), (-3, "at least 1"), (51, "exceeds the limit of 50")]
)
def test_k_out_of_range_is_rejected(loaded: SwitchyardClient, k: int, fragment: str) -> None:
    _rejected(lambda: loaded.query("garlic", k=k), fragment)


def test_unknown_model_is_rejected(loaded: SwitchyardClient) -> None:
    _rejected(lambda: loaded.query(vector=[0.1] * 32, vector_model="gpt-9"), "not a configured model")


def test_rejected_batches_write_nothing(loaded: SwitchyardClient) -> None:
    duplicate = [Doc("dup-1", "first"), Doc("dup-2", "second"), Doc("dup-1", "again")]
    _rejected(lambda: loaded.upsert(duplicate), "appears twice")
    oversized = [Doc(f"big-{n}", f"text {n}") for n in range(65)]
    _rejected(lambda: loaded.upsert(oversized), "exceeds the limit of 64")
    bad_last = [
        Doc("ok-1", "fine text"),
        Doc("ok-2", "fine text"),
        Doc("bad", "t", vector=[math.nan] * 32, vector_model="hash-a"),
    ]
    _rejected(lambda: loaded.upsert(bad_last), "NaN")
    ids = ["dup-1", "dup-2", "big-0", "big-64", "ok-1", "ok-2", "bad"]
    assert sorted(loaded.get(ids).missing_ids) == sorted(ids)


def test_health_and_reflection_are_served(loaded: SwitchyardClient) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(loaded.channel)
    for service in ("", "switchyard.v1.VectorService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(loaded.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    listed = next(iter(stub.ServerReflectionInfo(iter([request]))))
    names = {s.name for s in listed.list_services_response.service}
    assert {"switchyard.v1.VectorService", "switchyard.v1.AdminService"} <= names


def test_documents_survive_a_graceful_restart(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    config = sidecar_config(tmp_path / "data")
    process = start_sidecar(config)
    docs = CORPUS[:60]
    with process.client() as client:
        client.upsert([Doc(d.id, d.text, {"topic": d.topic}) for d in docs])
        client.delete([docs[0].id])
        before = [h.id for h in client.query(docs[5].text, k=5).hits]
    assert process.stop() == 0
    assert (tmp_path / "data" / "indexes" / "idx-a").is_dir()
    process.start()
    with process.client() as client:
        assert [h.id for h in client.query(docs[5].text, k=5).hits] == before
        assert list(client.get([docs[0].id]).missing_ids) == [docs[0].id]
        assert len(client.get([d.id for d in docs[1:]]).documents) == 59
        newer = client.upsert([Doc("after-restart", "fresh")])["after-restart"]
        assert newer > max(d.version for d in client.get([d.id for d in docs[1:]]).documents)


def test_documents_survive_sigkill_without_flush(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    process = start_sidecar(sidecar_config(tmp_path / "data"))
    with process.client() as client:
        client.upsert([Doc(d.id, d.text) for d in CORPUS[:40]])
    process.kill()
    process.start()
    with process.client() as client:
        assert len(client.get([d.id for d in CORPUS[:40]]).documents) == 40
        assert client.query(CORPUS[7].text, k=1).hits[0].id == CORPUS[7].id


def test_admin_without_a_migration_says_how_to_configure_one(loaded: SwitchyardClient) -> None:
    with pytest.raises(grpc.RpcError) as info:
        loaded.status()
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "migration:" in info.value.details()


def test_versions_continue_above_the_index_when_state_is_lost(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    config = sidecar_config(tmp_path / "data")
    process = start_sidecar(config)
    with process.client() as client:
        first = client.upsert([Doc("kept", "first text")])["kept"]
    process.stop()
    (tmp_path / "data" / "state.sqlite3").unlink()  # like a Redis restart without persistence
    process.start()
    with process.client() as client:
        second = client.upsert([Doc("kept", "second text")])["kept"]
        assert second > first
        assert client.get(["kept"]).documents[0].text == "second text"
