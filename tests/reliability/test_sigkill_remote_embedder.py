"""SIGKILL of a sidecar whose new model is a remote API, while its backfill has embedding requests in flight.

The new index's model is `kind: openai` against a local server (this process, 127.0.0.1) that answers each
batch after 150 ms with at most four at once, so a backfill page is several concurrent requests long. The
sidecar is killed twice at a moment the server holds requests, and clients update documents between the
kills. After the last restart the backfill must finish with every document in the new index at its newest
version and text, and no checkpoint past a document that was not written.
"""

from __future__ import annotations

import time
from pathlib import Path

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy.bench.embed_server import EmbedServer, ServerRules
from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.corpus import synthetic_corpus
from proxy.demo.sidecar_process import SidecarProcess, free_port
from tests.migration_support import migration_config
from tests.reliability.support import check_index_files, record_result, wait_backfill_complete

DIM = 32
CORPUS = synthetic_corpus(600)
KILLS = 2


def _config(data_dir: Path, server_root: str) -> dict[str, object]:
    config = migration_config(data_dir, lease_ttl_s=1.0)
    config["state"] = {"backend": "local", "namespace": "sigkill-remote"}
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"  # type: ignore[index]
    remote = {"kind": "openai", "base_url": f"{server_root}/v1", "model": "m", "dim": DIM}
    config["models"]["remote-b"] = {**remote, "batch_size": 8, "max_concurrency": 4}  # type: ignore[index]
    config["indexes"]["idx-b"] = {"model": "remote-b"}  # type: ignore[index]
    return config


def _wait_for_requests_in_flight(server: EmbedServer, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while server.state.in_flight == 0:
        assert time.monotonic() < deadline, "the backfill never had an embedding request in flight"
        time.sleep(0.01)


def _update(client: SwitchyardClient, round_: int, latest: dict[str, str]) -> None:
    """New text for every 7th document (spread over moved and unmoved slices)."""
    docs = [Doc(d.id, f"{d.text} (edit {round_})", {"topic": d.topic}) for d in CORPUS[round_::7]]
    client.upsert(docs)
    latest.update({d.id: d.text for d in docs})


def test_sigkill_with_embedding_requests_in_flight_leaves_every_document_at_its_newest_version(
    tmp_path: Path,
) -> None:
    latest = {d.id: d.text for d in CORPUS}
    kills: list[tuple[int, int]] = []
    with EmbedServer(ServerRules(dim=DIM, delay_s=0.15, max_concurrency=4)) as server:
        sidecar = SidecarProcess(_config(tmp_path / "data", server.root), tmp_path / "sidecar").start()
        try:
            with sidecar.client() as client:
                for start in range(0, len(CORPUS), 300):
                    client.upsert(
                        [Doc(d.id, d.text, {"topic": d.topic}) for d in CORPUS[start : start + 300]]
                    )
                client.admin.StartMigration(admin_pb.StartMigrationRequest())
            for round_ in range(KILLS):
                _wait_for_requests_in_flight(server)
                with sidecar.client() as client:
                    backfill = client.status().backfill
                kills.append((backfill.done, backfill.total))
                sidecar.kill()
                sidecar.start()
                with sidecar.client() as client:
                    _update(client, round_, latest)
            with sidecar.client() as client:
                wait_backfill_complete(client)
                ids = list(latest)
                stored = {
                    d.id: d
                    for start in range(0, len(ids), 300)
                    for d in client.get(ids[start : start + 300]).documents
                }
            sidecar.stop()
            problems, live = check_index_files(tmp_path / "data", {"idx-a": DIM, "idx-b": DIM})
        finally:
            sidecar.kill()
    wrong_text = [i for i, text in latest.items() if i not in stored or stored[i].text != text]
    record_result(
        "sigkill_remote",
        "openai-kind",
        {
            "kills": KILLS,
            "backfill_done_at_kills": kills,
            "embedding_requests": len(server.state.requests),
            "live_documents": live,
            "lost_or_wrong": len(problems) + len(wrong_text),
        },
    )
    assert all(done < total for done, total in kills), f"a kill after the backfill: {kills}"
    assert not problems, f"{len(problems)} differences between the indexes: {problems[:10]}"
    assert not wrong_text, f"{len(wrong_text)} documents not at their newest text: {wrong_text[:10]}"
    assert live == len(CORPUS)
