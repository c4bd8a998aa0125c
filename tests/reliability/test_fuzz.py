"""Hypothesis over every request field, through the real gRPC API of one sidecar process.

Ids (empty, huge, unicode, NUL), texts, metadata, vectors (wrong dims, NaN, inf, huge, empty), k, filters,
modes and batch sizes (0 to over the limit): every call must come back OK or with a deliberate error code,
never INTERNAL (an unhandled exception) or UNKNOWN; a rejected batch writes none of its ids; and the server
is still alive and SERVING at the end. The sidecar is mid-migration, so every write is a dual write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.core.validation import MAX_ID_CHARS
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import SidecarProcess, free_port
from tests.conftest import REDIS_URL, sidecar_config
from tests.reliability.support import fuzz_settings, record_result, require_redis

MAX_BATCH = 8
MAX_K = 20
MAX_TEXT = 2_000
DIMS = {"hash-a": 32, "hash-b": 48}
# Deliberate answers to bad input; anything else (INTERNAL, UNKNOWN, UNAVAILABLE...) is a bug here, where
# every backend is healthy. RESOURCE_EXHAUSTED is gRPC's own limit on message size.
ACCEPTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ = fuzz_settings()

_calls: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    require_redis(REDIS_URL)
    workdir = tmp_path_factory.mktemp("fuzz")
    config = sidecar_config(
        workdir / "data",
        server={"listen": f"127.0.0.1:{free_port()}", "max_batch_size": MAX_BATCH},
        migration={"old_index": "idx-a", "new_index": "idx-b", "backfill": {"rate_limit": 200}},
        state={"backend": "redis", "redis_url": REDIS_URL, "namespace": f"fuzz-{uuid.uuid4().hex}"},
    )
    config["server"].update(max_k=MAX_K, max_text_chars=MAX_TEXT)
    process = SidecarProcess(config, workdir).start()
    with process.client() as client:
        corpus = synthetic_corpus(40)
        for start in range(0, len(corpus), MAX_BATCH):
            client.upsert([Doc(d.id, d.text, {"topic": d.topic}) for d in corpus[start : start + MAX_BATCH]])
        client.admin.StartMigration(admin_pb.StartMigrationRequest())
    yield process
    process.kill()


@pytest.fixture(scope="module")
def client(sidecar: SidecarProcess) -> Iterator[SwitchyardClient]:
    with sidecar.client() as c:
        yield c


# -- strategies ---------------------------------------------------------------------------------------------

_odd_texts = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200),
    st.sampled_from(["\x00", "a\x00b", "\u200b", "😀" * 10, "x" * MAX_TEXT, "garlic comet", "a|b"]),
)
_bad_texts = st.sampled_from(["", " ", "\n\t", "x" * (MAX_TEXT + 1)])
# Mostly valid, oddly shaped values (so the accepted paths are fuzzed too), sometimes invalid ones.
texts = st.one_of(_odd_texts, _odd_texts, _odd_texts, _bad_texts)
_odd_ids = st.one_of(
    st.text(min_size=1, max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
    # With the 8-character prefix each example adds: exactly the longest id allowed.
    st.sampled_from(["\x00", "a\x00b", "ünïcødé-ïd", "|", "a|b|c", "x" * (MAX_ID_CHARS - 8)]),
)
ids = st.one_of(_odd_ids, _odd_ids, st.sampled_from(["", "y" * (MAX_ID_CHARS - 7)]))
_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 3.0e38, -3.0e38, 1e-45, float("nan"), float("inf")]),
)


@st.composite
def embeddings(draw: st.DrawFn, clean: bool = False) -> pb.Embedding | None:
    kind = draw(st.sampled_from(["none", "none", "valid"] if clean else ["none", "none", "valid", "odd"]))
    if kind == "none":
        return None
    if kind == "valid":
        model = draw(st.sampled_from(sorted(DIMS)))
        finite = st.floats(-10.0, 10.0, width=32).filter(bool)
        return pb.Embedding(
            model=model, values=draw(st.lists(finite, min_size=DIMS[model], max_size=DIMS[model]))
        )
    model = draw(st.sampled_from([*DIMS, "", "no-such-model"]))
    size = draw(st.sampled_from([0, 1, DIMS.get(model, 32), DIMS.get(model, 32) + 1, 32, 48]))
    fill = draw(st.sampled_from(["random", "same", "zeros"]))
    if fill == "random":
        values = draw(st.lists(_floats, min_size=size, max_size=size))
    else:
        values = [0.0 if fill == "zeros" else draw(_floats)] * size
    return pb.Embedding(model=model, values=values)


metadata = st.dictionaries(st.one_of(_odd_texts, st.just("")), st.one_of(_odd_texts, st.just("")), max_size=4)


@st.composite
def documents(draw: st.DrawFn) -> list[pb.Document]:
    """Half the batches hold only valid documents (oddly shaped), the others anything."""
    clean = draw(st.booleans())
    sizes = st.integers(1, MAX_BATCH)
    count = draw(sizes if clean else sizes | st.sampled_from([0, MAX_BATCH + 1, MAX_BATCH + 2]))
    nonce = uuid.uuid4().hex[:8]
    docs = {}
    for _ in range(count):
        raw_id = draw(_odd_ids if clean else ids)
        # Non-empty ids get a per-example prefix, so "none of its ids appear" is checked on fresh ids.
        doc_id = f"{nonce}{raw_id}" if raw_id else raw_id
        doc = pb.Document(id=doc_id, text=draw(_odd_texts if clean else texts), metadata=draw(metadata))
        embedding = draw(embeddings(clean))
        if embedding is not None:
            doc.embedding.CopyFrom(embedding)
        docs[doc_id if clean else len(docs)] = doc
    batch = list(docs.values())
    if batch and not clean and draw(st.booleans()):
        batch.append(batch[0])  # a duplicate id in one batch
    return batch


@st.composite
def queries(draw: st.DrawFn) -> pb.QueryRequest:
    request = pb.QueryRequest(
        text=draw(texts),
        k=draw(st.integers(1, MAX_K) | st.sampled_from([-1, 0, MAX_K + 1, 2**31 - 1, -(2**31)])),
        filter=draw(st.just({}) | metadata | st.just({"topic": "cooking"})),
        routing_key=draw(texts),
        mode=draw(st.sampled_from([0, 1, 2, 3, 4, 5, 99, -1])),
        include_text=draw(st.booleans()),
    )
    embedding = draw(embeddings())
    if embedding is not None:
        request.embedding.CopyFrom(embedding)
    return request


id_lists = st.lists(_odd_ids, min_size=1, max_size=MAX_BATCH, unique=True) | st.lists(
    ids, max_size=MAX_BATCH + 2
)


# -- calls --------------------------------------------------------------------------------------------------


def _call(name: str, fn: Any) -> tuple[grpc.StatusCode, Any]:
    try:
        response = fn()
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        response, code = exc, exc.code()
    counts = _calls.setdefault(name, {})
    counts[code.name] = counts.get(code.name, 0) + 1
    details = "" if code is grpc.StatusCode.OK else response.details()
    assert code in ACCEPTED, f"{name} answered {code.name}: {details}"
    return code, response


def _get(client: SwitchyardClient, ids: list[str]) -> pb.GetResponse:
    response = pb.GetResponse()
    for start in range(0, len(ids), MAX_BATCH):
        response.MergeFrom(client.get(ids[start : start + MAX_BATCH]))
    return response


def _valid_ids(raw: list[str]) -> list[str]:
    """The ids a Get accepts: non-empty, not too long, once each."""
    return list(dict.fromkeys(i for i in raw if i and len(i) <= MAX_ID_CHARS))


@FUZZ
@given(docs=documents())
def test_fuzzed_upserts_answer_a_status_and_never_half_write(
    client: SwitchyardClient, docs: list[Any]
) -> None:
    code, response = _call(
        "Upsert", lambda: client.vectors.Upsert(pb.UpsertRequest(documents=docs), timeout=10)
    )
    ids = _valid_ids([d.id for d in docs])
    if not ids:
        return
    read = _get(client, ids)
    if code is grpc.StatusCode.OK:
        versions = {v.id: v.version for v in response.versions}
        assert {d.id: d.version for d in read.documents} == versions
        assert all(list(d.indexes) == ["idx-a", "idx-b"] for d in read.documents), "dual written"
    else:
        assert not read.documents, (
            f"rejected batch ({response.details()}) left {[d.id for d in read.documents]}"
        )


@FUZZ
@given(request=queries())
def test_fuzzed_queries_answer_a_status(client: SwitchyardClient, request: pb.QueryRequest) -> None:
    code, response = _call("Query", lambda: client.vectors.Query(request, timeout=10))
    if code is grpc.StatusCode.OK:
        assert len(response.hits) <= request.k
        assert len({h.id for h in response.hits}) == len(response.hits), "no id twice in one answer"


@FUZZ
@given(raw=id_lists, delete=st.booleans())
def test_fuzzed_gets_and_deletes_answer_a_status(
    client: SwitchyardClient, raw: list[str], delete: bool
) -> None:
    if delete:
        _call("Delete", lambda: client.vectors.Delete(pb.DeleteRequest(ids=raw), timeout=10))
    else:
        _call("Get", lambda: client.vectors.Get(pb.GetRequest(ids=raw), timeout=10))


def test_the_server_survived_the_fuzzing(sidecar: SidecarProcess, client: SwitchyardClient) -> None:
    assert sidecar.process is not None and sidecar.process.poll() is None, "the sidecar process is alive"
    health = health_pb2_grpc.HealthStub(client.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert "Traceback" not in Path(sidecar.log_path).read_text(errors="replace"), "no unhandled exception"
    record_result("fuzz", "grpc", {"calls": sum(sum(c.values()) for c in _calls.values()), **_calls})
