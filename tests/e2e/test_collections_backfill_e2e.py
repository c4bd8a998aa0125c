"""Several collections backfilling in one real sidecar process: they share the machine, each resumes from its
own checkpoint after a SIGKILL, and one collection's failing new leg does not hold up another."""

from __future__ import annotations

from pathlib import Path

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.sidecar_process import free_port
from tests.conftest import SidecarFactory
from tests.e2e.collections_support import (
    SIZE,
    collections_config,
    load,
    poll,
    start,
    summaries,
    wait_complete,
)
from tests.migration_support import writes_applied


def _progress(client: SwitchyardClient, names: list[str]) -> dict[str, int]:
    listed = summaries(client)
    assert all(listed[n].backfill_total in (0, SIZE) for n in names), listed
    return {n: listed[n].backfill_done for n in names}


def _assert_all_moved(client: SwitchyardClient, name: str, texts: dict[str, str]) -> dict[str, int]:
    """Every document of the collection in both its indexes at its current version; returns the versions."""
    stored = client.get(list(texts), collection=name).documents
    assert {d.id: d.text for d in stored} == texts
    assert {tuple(d.indexes) for d in stored} == {(f"{name}-old", f"{name}-new")}
    return {d.id: d.version for d in stored}


def test_three_collections_backfilling_at_once_all_progress_and_all_finish(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    names = ["one", "two", "three"]
    sidecar = start_sidecar(collections_config(tmp_path / "data", names))
    with sidecar.client() as client:
        docs = {n: load(client, n) for n in names}
        for name in names:
            assert start(client, name) == "backfilling"
        seen: list[dict[str, int]] = []

        def read() -> dict[str, int]:
            seen.append(_progress(client, names))
            return seen[-1]

        poll(read, lambda done: all(d == SIZE for d in done.values()), "all three backfilled")
        first_finished = next(done for done in seen if SIZE in done.values())
        assert all(d > 0 for d in first_finished.values()), (
            f"one finished while another had not begun: {seen}"
        )
        assert any(all(0 < d < SIZE for d in done.values()) for done in seen), (
            f"never all three at once: {seen}"
        )
        for name in names:
            _assert_all_moved(client, name, {d.id: d.text for d in docs[name]})


def test_a_sigkill_mid_backfill_resumes_every_collection_from_its_checkpoint(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    names = ["one", "two"]
    sidecar = start_sidecar(collections_config(tmp_path / "data", names, rate_limit=100))
    with sidecar.client() as client:
        texts = {n: {d.id: d.text for d in load(client, n)} for n in names}
        for name in names:
            start(client, name)
        before_kill = poll(
            lambda: _progress(client, names),
            lambda done: all(d >= SIZE // 4 for d in done.values()),
            "both a quarter backfilled",
        )
        last = list(texts["one"])[-1]
        updated = {n: client.upsert([Doc(last, f"updated in {n}")], collection=n)[last] for n in names}
    sidecar.kill()
    sidecar.start()
    with sidecar.client() as client:
        resumed = _progress(client, names)
        for name in names:
            assert 0 < before_kill[name] < SIZE, "killed mid-backfill"
            assert resumed[name] >= before_kill[name], f"{name} restarted from {resumed[name]}"
            assert client.status(collection=name).phase == "backfilling"
        for name in names:
            assert wait_complete(client, name).backfill.done == SIZE
            texts[name][last] = f"updated in {name}"
            assert _assert_all_moved(client, name, texts[name])[last] == updated[name]
    sidecar.stop()
    # One row write per document in each new index: the dual-written update made the backfill skip that
    # document, and the batch cut short by the SIGKILL was not written again after the restart.
    for name in names:
        assert writes_applied(tmp_path / "data" / "indexes" / f"{name}-new") == SIZE


def test_one_collections_failing_new_leg_leaves_another_collections_backfill_and_queries_alone(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    config = collections_config(tmp_path / "data", ["good", "bad"])
    # `bad`'s new index embeds with a remote model nothing listens for: its backfill and new leg fail.
    unreachable = f"http://127.0.0.1:{free_port()}/v1"
    config["models"]["down"] = {
        "kind": "openai",
        "base_url": unreachable,
        "model": "down",
        "dim": 24,
        "max_retries": 0,
        "timeout_s": 2,
    }
    config["indexes"]["bad-new"] = {"model": "down"}
    sidecar = start_sidecar(config)
    with sidecar.client() as client:
        docs = {n: load(client, n) for n in ("good", "bad")}
        start(client, "bad")
        start(client, "good")
        poll(sidecar.log_tail, lambda log: "backfill step failed" in log, "bad's backfill failing")
        assert wait_complete(client, "good").backfill.done == SIZE
        bad = client.status(collection="bad")
        assert (bad.phase, bad.backfill.done, bad.backfill.complete) == ("backfilling", 0, False)

        bad_answer = client.query(docs["bad"][5].text, k=5, mode=pb.ROUTING_MODE_DUAL, collection="bad")
        assert bad_answer.degraded and list(bad_answer.failed_legs) == ["bad-new"], "the fault is real"
        assert bad_answer.hits[0].id == docs["bad"][5].id
        for n, doc in enumerate(docs["good"][:20]):
            for mode in (pb.ROUTING_MODE_DUAL, pb.ROUTING_MODE_UNSPECIFIED):
                answer = client.query(doc.text, k=5, mode=mode, routing_key=f"user-{n}", collection="good")
                assert not answer.degraded and not answer.failed_legs, answer
                assert answer.hits[0].id == doc.id
            dual = client.query(doc.text, k=5, mode=pb.ROUTING_MODE_DUAL, collection="good")
            assert {h.index for h in dual.hits} <= {"good-old", "good-new"} and dual.coverage == 1.0
        client.upsert([Doc("late", "written while bad is failing")], collection="good")
        texts = {d.id: d.text for d in docs["good"]} | {"late": "written while bad is failing"}
        _assert_all_moved(client, "good", texts)
        assert client.status(collection="bad").backfill.done == 0
