"""In-process tests of the recovery mechanisms the fault tests rely on.

Dual writes recorded before they run, and repaired exactly (PendingWrite); a state store that is down
(the last known layout keeps serving) or comes back empty (the state is written back, versions stay
above the indexes); leg pools that keep a slow index from starving the other one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from proxy.adapters.state.redis_store import RedisStateStore
from proxy.app.assembly import App
from proxy.core.errors import Unavailable
from proxy.core.model import DocumentInput, RoutingMode
from proxy.core.service import QueryInput
from proxy.migration.backfill import PENDING_SETTLE_S
from proxy.migration.state import REPAIR_PRIORITY, PendingWrite, repair_queue
from tests.migration_support import in_process_app, migration_config
from tests.reliability.support import RedisServer


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def app(tmp_path: Path, private_redis: RedisServer) -> Iterator[App]:
    if private_redis.process is None:
        private_redis.start()  # a test that stopped it
    config = migration_config(tmp_path / "data", lease_ttl_s=1.0)
    config["state"]["redis_url"] = private_redis.url
    application = in_process_app(config)
    assert application.controller is not None
    application.controller.start()
    yield application
    if private_redis.process is None:
        private_redis.start()
    application.close()


def _pending(app: App, doc_id: str, version: int, at: float | None = None) -> None:
    member = PendingWrite(doc_id, version, time.time() if at is None else at).member()
    app.state.enqueue(repair_queue("idx-b"), [member], REPAIR_PRIORITY)


def _record(doc_id: str, version: int, text: str, app: App) -> Any:
    binding = app.bindings["idx-a"]
    return binding.records_for([DocumentInput(doc_id, text)], [version])


def _drain_repairs(app: App) -> None:
    assert app.controller is not None
    app.controller.backfiller.drain_repairs()


# -- dual writes: recorded first, repaired exactly -------------------------------------------------------


def test_pending_write_member_round_trips_ids_with_separators_and_nul() -> None:
    for doc_id in ("plain", "a|b|c", "\x00", "ünï|cødé"):
        entry = PendingWrite(doc_id, 42, 1700000000.5)
        assert PendingWrite.parse(entry.member()) == entry


def test_a_write_that_reached_only_the_primary_is_copied_to_the_secondary(app: App) -> None:
    old, new = app.bindings["idx-a"].index, app.bindings["idx-b"].index
    version = app.state.next_versions(1)
    _pending(app, "half", version)
    old.upsert(_record("half", version, "killed between the two writes", app))  # then the process died
    _drain_repairs(app)
    assert [(d.version, d.text) for d in new.get(["half"])] == [(version, "killed between the two writes")]


def test_a_delete_that_reached_only_the_primary_is_carried_over(app: App) -> None:
    written = app.service.upsert([DocumentInput("gone", "about to be deleted")])["gone"]
    old, new = app.bindings["idx-a"].index, app.bindings["idx-b"].index
    version = app.state.next_versions(1)
    _pending(app, "gone", version)
    old.delete(["gone"], version)
    assert new.versions(["gone"]) == {"gone": written}
    _drain_repairs(app)
    assert not new.get(["gone"]) and new.versions(["gone"]) == {"gone": version}


def test_a_tombstone_no_pending_write_carried_is_left_alone(app: App) -> None:
    """A retired old copy (retire_as_you_go) is a tombstone at a fresh version: never a deletion of the new."""
    written = app.service.upsert([DocumentInput("moved", "lives on in the new index")])["moved"]
    _drain_repairs(app)  # the upsert's own entry: nothing to do
    app.bindings["idx-a"].index.delete(["moved"], app.state.next_versions(1))
    _pending(app, "moved", written)
    _drain_repairs(app)
    assert [d.version for d in app.bindings["idx-b"].index.get(["moved"])] == [written]


def test_a_pending_write_not_in_the_primary_waits_then_is_dropped(app: App) -> None:
    _pending(app, "in-flight", app.state.next_versions(1))
    _pending(app, "never-landed", app.state.next_versions(1), at=time.time() - PENDING_SETTLE_S - 1)
    _drain_repairs(app)
    waiting = app.state.dequeue(repair_queue("idx-b"), 10)
    assert [PendingWrite.parse(m).id for m in waiting] == ["in-flight"]


def test_a_superseded_pending_write_is_not_copied(app: App) -> None:
    first = app.service.upsert([DocumentInput("twice", "first")])["twice"]
    second = app.service.upsert([DocumentInput("twice", "second")])["twice"]
    _pending(app, "twice", first)
    _drain_repairs(app)
    assert [(d.version, d.text) for d in app.bindings["idx-b"].index.get(["twice"])] == [(second, "second")]


class _DownIndex:
    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def upsert(self, records: object) -> object:
        raise ConnectionError("down")


def test_repairs_survive_a_secondary_that_fails_while_they_are_drained(app: App) -> None:
    assert app.controller is not None
    version = app.state.next_versions(1)
    _pending(app, "keep-me", version)
    app.bindings["idx-a"].index.upsert(_record("keep-me", version, "only in the primary", app))
    healthy = app.controller.backfiller.target
    app.controller.backfiller.target = replace(healthy, index=_DownIndex(healthy.index))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        _drain_repairs(app)
    assert app.state.queue_size(repair_queue("idx-b")) == 1, "the entry went back to the queue"
    app.controller.backfiller.target = healthy
    _drain_repairs(app)
    assert [d.version for d in app.bindings["idx-b"].index.get(["keep-me"])] == [version]


def test_every_dual_write_is_recorded_before_it_runs(app: App) -> None:
    versions = app.service.upsert([DocumentInput("d1", "one"), DocumentInput("d2", "two")])
    deleted, _ = app.service.delete(["d1"])
    queued = [PendingWrite.parse(m) for m in app.state.dequeue(repair_queue("idx-b"), 10)]
    assert sorted((p.id, p.version) for p in queued) == sorted([*versions.items(), ("d1", deleted["d1"])])


# -- the state store down, or back empty -----------------------------------------------------------------


def test_queries_and_reads_keep_the_last_known_layout_while_redis_is_down(
    app: App, private_redis: RedisServer
) -> None:
    assert app.controller is not None
    app.service.upsert([DocumentInput("q1", "garlic and comets")])
    app.controller.set_traffic_percent(100)
    app.topology.layout()
    private_redis.stop()
    time.sleep(0.6)  # past the state cache: the next query has to ask Redis, which is gone
    outcome = app.service.query(QueryInput(k=3, text="garlic and comets", routing_key="user-1"))
    assert outcome.served_by is RoutingMode.DUAL and outcome.hits[0].id == "q1"
    assert [r.document.id for r in app.service.get(["q1"])[0]] == ["q1"]
    with pytest.raises(Unavailable, match="unreachable"):
        app.service.upsert([DocumentInput("q2", "needs a version from Redis")])
    with pytest.raises(Unavailable):
        app.controller.status()  # operators get the store's own answer, not a cached one


def test_an_empty_redis_gets_the_remembered_state_back(app: App) -> None:
    assert app.controller is not None
    before = app.service.upsert([DocumentInput("v1", "before the restart")])["v1"]
    app.controller.set_traffic_percent(30)
    app.controller.set_rate(40)
    app.topology.layout()
    _forget_namespace(app)
    time.sleep(0.6)
    layout = app.topology.layout()
    status = app.controller.status()
    assert layout.secondary is not None and layout.traffic_percent == 30, "dual writes and split continue"
    assert status.state.phase.value == "backfilling" and status.backfill.rate_limit == 40
    assert [c.to_phase.value for c in status.state.history] == ["backfilling", "backfilling"]
    assert "restored" in status.state.history[-1].reason
    after = app.service.upsert([DocumentInput("v1", "after the restart")])["v1"]
    assert after > before and app.service.get(["v1"])[0][0].document.text == "after the restart"


def test_a_never_started_migration_is_not_restored(
    app: App, tmp_path: Path, private_redis: RedisServer
) -> None:
    config = migration_config(tmp_path / "fresh")
    config["state"] = {**app.config.state.model_dump(), "namespace": "never-started"}
    fresh = in_process_app(config)
    try:
        assert fresh.controller is not None
        assert fresh.topology.layout().secondary is None
        _forget_namespace(fresh)
        time.sleep(0.6)
        assert (
            fresh.topology.layout().secondary is None
            and fresh.controller.status().state.phase.value == "planned"
        )
    finally:
        fresh.close()


def test_redis_store_never_hands_out_a_version_twice_after_losing_its_counter(
    private_redis: RedisServer,
) -> None:
    store = RedisStateStore(private_redis.url, "versions-lost")
    try:
        store.advance_versions(100)
        first = store.next_versions(5)
        client = redis.Redis.from_url(private_redis.url)
        client.delete("switchyard:versions-lost:versions")
        client.close()
        assert store.next_versions(1) > first + 4
    finally:
        store.close()


def _forget_namespace(app: App) -> None:
    """What a Redis restarted without persistence looks like to one namespace: every key gone."""
    client = redis.Redis.from_url(app.config.state.redis_url)
    try:
        keys = list(client.scan_iter(f"switchyard:{app.config.state.namespace}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
