"""Several collections in one real sidecar process: each keeps its own documents, migration, split, phase and
state namespace in Redis; calls that name no collection, or an unknown one, are refused with the names."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import redis

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.client import Doc, SwitchyardClient
from proxy.core.router import bucket_of
from tests.conftest import REDIS_URL, SidecarFactory
from tests.e2e.collections_support import (
    collections_config,
    load,
    poll,
    rpc_error,
    start,
    summaries,
    transition,
    unique_namespace,
    wait_complete,
)

ROUTING_KEYS = [f"user-{n}" for n in range(40)]


def _served_by(client: SwitchyardClient, collection: str, text: str) -> dict[str, int]:
    return {
        key: client.query(text, k=3, routing_key=key, collection=collection).served_by for key in ROUTING_KEYS
    }


def test_two_collections_keep_their_documents_migrations_and_state_apart(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    namespace = unique_namespace()
    sidecar = start_sidecar(collections_config(tmp_path / "data", ["default", "beta"], namespace=namespace))
    with sidecar.client() as client:
        docs = {name: load(client, name) for name in ("default", "beta")}
        ids = [d.id for d in docs["default"]]
        assert ids == [d.id for d in docs["beta"]], "both collections hold the same ids"
        for name in ("default", "beta"):
            stored = client.get(ids, collection=name).documents
            assert [(d.id, d.text, d.metadata["collection"]) for d in stored] == [
                (d.id, d.text, name) for d in docs[name]
            ]
            assert {tuple(d.indexes) for d in stored} == {(f"{name}-old",)}

        # Only `default` migrates: `beta` stays planned and its old index answers its queries.
        assert start(client, "default") == "backfilling"
        assert client.status().collection == "default", "an empty collection means `default`"
        assert client.status(collection="beta").phase == "planned"
        beta_doc = docs["beta"][7]
        answer = client.query(beta_doc.text, k=3, include_text=True, collection="beta")
        assert (answer.hits[0].id, answer.hits[0].text) == (beta_doc.id, beta_doc.text)
        assert {h.index for h in answer.hits} == {"beta-old"} and answer.served_by == pb.ROUTING_MODE_OLD
        listed = summaries(client)
        assert (listed["default"].phase, listed["beta"].phase) == ("backfilling", "planned")
        assert listed["default"].is_default and not listed["beta"].is_default

        # `beta` backfills slowly beside it while `default` goes through split and cut-over.
        slow = admin_pb.SetBackfillRateRequest(collection="beta", docs_per_second=5)
        assert client.admin.SetBackfillRate(slow).docs_per_second == 5
        assert start(client, "beta") == "backfilling"
        wait_complete(client, "default")
        assert transition(client, "default", "validated") == "validated"
        report = client.admin.ValidateMigration(admin_pb.ValidateMigrationRequest(collection="default"))
        assert report.passed, report.report_text
        assert transition(client, "default", "shifting") == "shifting"
        client.admin.SetTrafficSplit(admin_pb.SetTrafficSplitRequest(collection="default", percent=50))
        expected = {
            k: pb.ROUTING_MODE_DUAL if bucket_of(k) < 5000 else pb.ROUTING_MODE_OLD for k in ROUTING_KEYS
        }
        assert len(set(expected.values())) == 2, "the routing keys fall on both sides of a 50% split"
        assert _served_by(client, "default", docs["default"][3].text) == expected
        assert set(_served_by(client, "beta", beta_doc.text).values()) == {pb.ROUTING_MODE_OLD}
        assert (
            client.admin.PauseMigration(admin_pb.PauseMigrationRequest(collection="beta")).phase == "paused"
        )
        assert transition(client, "default", "cut_over") == "cut_over"

        default_doc = docs["default"][11]
        answer = client.query(default_doc.text, k=3, include_text=True, collection="default")
        assert (answer.hits[0].id, answer.hits[0].text) == (default_doc.id, default_doc.text)
        assert {h.index for h in answer.hits} == {"default-new"} and answer.served_by == pb.ROUTING_MODE_NEW
        assert {h.index for h in client.query(beta_doc.text, k=3, collection="beta").hits} == {"beta-old"}
        listed = summaries(client)
        assert (listed["default"].phase, listed["default"].serving_index) == ("cut_over", "default-new")
        assert listed["default"].coverage == 1.0
        assert listed["default"].backfill_done == listed["default"].backfill_total == len(ids)
        beta = listed["beta"]
        assert (beta.phase, beta.serving_index, beta.new_index) == ("paused", "beta-old", "beta-new")
        assert beta.coverage < 1.0 and beta.backfill_done < beta.backfill_total == len(ids)

        # Rolling `default` back leaves `beta` where it was; `beta` then resumes and completes.
        rollback = admin_pb.RollbackMigrationRequest(collection="default", reason="e2e")
        assert client.admin.RollbackMigration(rollback).phase == "rolled_back"
        assert client.status(collection="beta").phase == "paused"
        answer = client.query(default_doc.text, k=3, collection="default")
        assert {h.index for h in answer.hits} == {"default-old"} and answer.hits[0].id == default_doc.id
        assert client.admin.ResumeMigration(admin_pb.ResumeMigrationRequest(collection="beta")).phase == (
            "backfilling"
        )
        client.admin.SetBackfillRate(admin_pb.SetBackfillRateRequest(collection="beta", docs_per_second=0))
        beta_status = wait_complete(client, "beta")
        assert "rolled_back" not in {c.to_phase for c in beta_status.history}
        stored = client.get(ids, collection="beta").documents
        assert {tuple(d.indexes) for d in stored} == {("beta-old", "beta-new")}
        assert [d.text for d in stored] == [d.text for d in docs["beta"]]
        listed = summaries(client)
        assert (listed["default"].phase, listed["default"].serving_index) == ("rolled_back", "default-old")
        assert (listed["beta"].phase, listed["beta"].coverage) == ("backfilling", 1.0)

    _assert_state_namespaced(namespace)


def _assert_state_namespaced(namespace: str) -> None:
    """`default` keeps the un-suffixed namespace; `beta` has `<namespace>/beta`; nothing else is written."""
    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as r:
        default_keys = set(r.scan_iter(f"switchyard:{namespace}:*"))
        beta_keys = set(r.scan_iter(f"switchyard:{namespace}/beta:*"))
        assert set(r.scan_iter(f"switchyard:{namespace}*")) == default_keys | beta_keys
        assert not default_keys & beta_keys
        expected = {f"switchyard:{namespace}": ("rolled_back", default_keys)}
        expected[f"switchyard:{namespace}/beta"] = ("backfilling", beta_keys)
        for prefix, (phase, keys) in expected.items():
            assert {f"{prefix}:hash:migration", f"{prefix}:versions"} <= keys
            assert r.hget(f"{prefix}:hash:migration", "phase") == phase


AdminCall = Callable[[SwitchyardClient, str], Any]
ADMIN_CALLS: dict[str, AdminCall] = {
    "GetMigrationStatus": lambda c, name: c.status(collection=name),
    "StartMigration": lambda c, name: c.admin.StartMigration(admin_pb.StartMigrationRequest(collection=name)),
    "PauseMigration": lambda c, name: c.admin.PauseMigration(admin_pb.PauseMigrationRequest(collection=name)),
    "ResumeMigration": lambda c, name: c.admin.ResumeMigration(
        admin_pb.ResumeMigrationRequest(collection=name)
    ),
    "SetBackfillRate": lambda c, name: c.admin.SetBackfillRate(
        admin_pb.SetBackfillRateRequest(collection=name, docs_per_second=10)
    ),
    "SetTrafficSplit": lambda c, name: c.admin.SetTrafficSplit(
        admin_pb.SetTrafficSplitRequest(collection=name, percent=10)
    ),
    "TransitionMigration": lambda c, name: c.admin.TransitionMigration(
        admin_pb.TransitionMigrationRequest(collection=name, to_phase="backfilling")
    ),
    "ValidateMigration": lambda c, name: c.admin.ValidateMigration(
        admin_pb.ValidateMigrationRequest(collection=name)
    ),
    "PromoteMigration": lambda c, name: c.admin.PromoteMigration(
        admin_pb.PromoteMigrationRequest(collection=name)
    ),
    "RollbackMigration": lambda c, name: c.admin.RollbackMigration(
        admin_pb.RollbackMigrationRequest(collection=name)
    ),
}
DATA_CALLS: dict[str, AdminCall] = {
    "Upsert": lambda c, name: c.upsert([Doc("x", "words about telescopes")], collection=name),
    "Get": lambda c, name: c.get(["x"], collection=name),
    "Delete": lambda c, name: c.delete(["x"], collection=name),
    "Query": lambda c, name: c.query("telescopes", collection=name),
}


def test_an_unknown_or_missing_collection_is_refused_naming_the_known_ones(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    config = collections_config(tmp_path / "data", ["docs", "faq"], without_migration=["faq"])
    with start_sidecar(config).client() as client:
        for call in [*DATA_CALLS.values(), *ADMIN_CALLS.values()]:
            rpc_error(
                partial(call, client, "nope"),
                grpc.StatusCode.NOT_FOUND,
                "'nope'",
                "known collections: docs, faq",
            )
            rpc_error(
                partial(call, client, ""),
                grpc.StatusCode.INVALID_ARGUMENT,
                "collection: required",
                "(docs, faq)",
                "default_collection",
            )
        for call in ADMIN_CALLS.values():
            rpc_error(
                partial(call, client, "faq"),
                grpc.StatusCode.FAILED_PRECONDITION,
                "no migration is configured for collection 'faq'",
            )
        assert list(client.get(["x"], collection="docs").missing_ids) == ["x"], "no refused call wrote"
        assert client.status(collection="docs").phase == "planned", "no refused call started a migration"
        client.upsert([Doc("x", "words about telescopes")], collection="faq")
        assert client.query("words about telescopes", k=1, collection="faq").hits[0].index == "faq-old"
        listed = summaries(client)
        assert not any(c.is_default for c in listed.values())
        assert (listed["faq"].phase, listed["faq"].serving_index, listed["faq"].new_index) == (
            "none",
            "faq-old",
            "",
        )
        assert (listed["docs"].phase, listed["docs"].old_index, listed["docs"].new_index) == (
            "planned",
            "docs-old",
            "docs-new",
        )


def test_an_empty_collection_acts_on_the_configured_default_collection(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    config = collections_config(
        tmp_path / "data", ["docs", "faq"], without_migration=["faq"], default_collection="faq"
    )
    sidecar = start_sidecar(config)
    with sidecar.client() as client, SwitchyardClient(sidecar.target, collection="docs") as docs_client:
        client.upsert([Doc("shared", "a note about telescopes")])
        docs_client.upsert([Doc("shared", "a recipe with garlic")])
        assert client.get(["shared"]).documents[0].text == "a note about telescopes"
        assert client.get(["shared"], collection="faq").documents[0].text == "a note about telescopes"
        assert docs_client.get(["shared"]).documents[0].text == "a recipe with garlic"
        hit = client.query("a note about telescopes", k=1, include_text=True).hits[0]
        assert (hit.id, hit.index, hit.text) == ("shared", "faq-old", "a note about telescopes")
        # The Admin service resolves an empty collection the same way: `faq` has no migration.
        rpc_error(lambda: client.status(), grpc.StatusCode.FAILED_PRECONDITION, "collection 'faq'")
        assert docs_client.status().collection == "docs"
        assert start(client, "docs") == "backfilling"
        assert client.status(collection="docs").phase == "backfilling"
        listed = summaries(client)
        assert listed["faq"].is_default and not listed["docs"].is_default
        poll(lambda: summaries(client)["docs"], lambda s: s.coverage == 1.0, "docs backfilled")
