"""One contract for every StateStore adapter: the Redis one and the local SQLite one must behave the same.

Redis tests talk to the real server at REDIS_URL and fail (never skip) when it is unreachable.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.adapters.state.local_store import LocalStateStore
from proxy.adapters.state.redis_store import RedisStateStore
from proxy.core.errors import StateUnavailable
from proxy.core.ports import StateStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SHORT_TTL_S = 0.2

StoreFactory = Callable[[], StateStore]
"""Opens another store on the test's namespace: a second replica sharing the same state."""


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "local"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    namespace = f"test-{uuid.uuid4().hex}"
    opened: list[StateStore] = []

    def open_one() -> StateStore:
        store: StateStore
        if request.param == "redis":
            store = RedisStateStore(REDIS_URL, namespace)
        else:
            store = LocalStateStore(tmp_path / "state.sqlite3", namespace)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
    if request.param == "redis":
        _delete_namespace(namespace)


@pytest.fixture
def store(open_store: StoreFactory) -> StateStore:
    return open_store()


def _delete_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"switchyard:{namespace}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


T = TypeVar("T")


def _in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Runs work(0..count-1) on `count` threads at once."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(work, range(count)))


def test_adapters_satisfy_the_protocol(store: StateStore) -> None:
    assert isinstance(store, StateStore)


# --- versions ---


def test_next_versions_reserves_consecutive_increasing_ranges(store: StateStore) -> None:
    first = store.next_versions(3)
    second = store.next_versions(1)
    third = store.next_versions(5)
    assert first >= 1
    assert second >= first + 3
    assert third >= second + 1


def test_advance_versions_only_ever_raises_the_counter(store: StateStore) -> None:
    store.advance_versions(1000)
    assert store.next_versions(1) == 1001
    store.advance_versions(10)  # lower than the counter: no effect
    assert store.next_versions(2) == 1002


def test_concurrent_next_versions_from_8_threads_never_overlap(open_store: StoreFactory) -> None:
    replicas = [open_store(), open_store()]

    def reserve(worker: int) -> list[int]:
        versions: list[int] = []
        for _ in range(40):
            first = replicas[worker % 2].next_versions(3)
            versions.extend(range(first, first + 3))
        return versions

    per_thread = _in_threads(8, reserve)
    everything = [v for versions in per_thread for v in versions]
    assert len(set(everything)) == len(everything) == 8 * 40 * 3
    for versions in per_thread:
        assert versions == sorted(versions)


def test_namespaces_do_not_share_state(open_store: StoreFactory, tmp_path: Path) -> None:
    store = open_store()
    store.set_fields("phase", {"name": "dual_write"})
    store.enqueue("reembed", ["a"], 1.0)
    other: StateStore
    if isinstance(store, RedisStateStore):
        other = RedisStateStore(REDIS_URL, f"test-{uuid.uuid4().hex}")
    else:
        other = LocalStateStore(tmp_path / "state.sqlite3", f"test-{uuid.uuid4().hex}")
    try:
        assert other.get_fields("phase") == {}
        assert other.queue_size("reembed") == 0
    finally:
        other.close()


# --- hashes and compare-and-set ---


def test_set_fields_merges_into_the_hash(store: StateStore) -> None:
    assert store.get_fields("phase") == {}
    store.set_fields("phase", {"name": "backfill", "cursor": ""})
    store.set_fields("phase", {"cursor": "doc-17"})
    store.set_fields("phase", {})
    assert store.get_fields("phase") == {"name": "backfill", "cursor": "doc-17"}


def test_compare_and_set_with_expected_none_only_creates(store: StateStore) -> None:
    assert store.compare_and_set_field("phase", "name", None, "idle")
    assert not store.compare_and_set_field("phase", "name", None, "backfill")
    assert store.get_fields("phase") == {"name": "idle"}


def test_compare_and_set_requires_the_current_value(store: StateStore) -> None:
    store.set_fields("phase", {"name": "idle"})
    assert not store.compare_and_set_field("phase", "name", "backfill", "promoted")
    assert not store.compare_and_set_field("phase", "absent", "idle", "x")
    assert store.compare_and_set_field("phase", "name", "idle", "backfill")
    assert store.get_fields("phase") == {"name": "backfill"}


def test_compare_and_set_treats_empty_string_as_a_value_not_absence(store: StateStore) -> None:
    store.set_fields("phase", {"cursor": ""})
    assert not store.compare_and_set_field("phase", "cursor", None, "doc-1")
    assert store.compare_and_set_field("phase", "cursor", "", "doc-1")


def test_concurrent_compare_and_set_has_exactly_one_winner(open_store: StoreFactory) -> None:
    replicas = [open_store(), open_store()]
    wins = _in_threads(8, lambda i: replicas[i % 2].compare_and_set_field("cutover", "by", None, f"r{i}"))
    assert wins.count(True) == 1
    assert replicas[0].get_fields("cutover") == {"by": f"r{wins.index(True)}"}


# --- events ---


def test_events_come_back_in_append_order_per_key(store: StateStore) -> None:
    assert store.events("history") == []
    for event in ["idle->dual_write", "dual_write->backfill", "backfill->validate"]:
        store.append_event("history", event)
    store.append_event("decisions", "hold")
    assert store.events("history") == ["idle->dual_write", "dual_write->backfill", "backfill->validate"]
    assert store.events("decisions") == ["hold"]


# --- priority queue ---


def test_enqueue_counts_only_ids_not_queued_before(store: StateStore) -> None:
    assert store.enqueue("reembed", ["a", "b", "a"], 1.0) == 2
    assert store.enqueue("reembed", ["b", "c"], 1.0) == 1
    assert store.enqueue("reembed", [], 1.0) == 0
    assert store.queue_size("reembed") == 3


def test_dequeue_returns_highest_priority_first_and_fifo_among_ties(store: StateStore) -> None:
    store.enqueue("reembed", ["low-1"], -1.0)
    store.enqueue("reembed", ["mid-1", "mid-2"], 1.0)
    store.enqueue("reembed", ["high-1"], 5.0)
    store.enqueue("reembed", ["mid-3"], 1.0)
    store.enqueue("reembed", ["high-2"], 5.0)
    assert store.dequeue("reembed", 10) == ["high-1", "high-2", "mid-1", "mid-2", "mid-3", "low-1"]
    assert store.dequeue("reembed", 10) == []


def test_fifo_among_ties_holds_past_single_digit_insertion_counts(store: StateStore) -> None:
    ids = [f"doc-{i:03d}" for i in reversed(range(120))]
    for id_ in ids:
        store.enqueue("reembed", [id_], 1.0)
    assert store.dequeue("reembed", 200) == ids


def test_priorities_one_ulp_apart_are_still_ordered(store: StateStore) -> None:
    # Guards against packing priority and insertion order into one float score.
    base = 1e6
    store.enqueue("reembed", ["lower"], base)
    store.enqueue("reembed", ["higher"], base + base * 2**-52)
    assert store.dequeue("reembed", 2) == ["higher", "lower"]


def test_requeued_id_keeps_the_higher_priority(store: StateStore) -> None:
    store.enqueue("reembed", ["a", "b"], 2.0)
    store.enqueue("reembed", ["c"], 1.5)
    assert store.enqueue("reembed", ["a"], 1.0) == 0
    assert store.enqueue("reembed", ["c"], 3.0) == 0
    assert store.queue_size("reembed") == 3
    assert store.dequeue("reembed", 3) == ["c", "a", "b"]


def test_raised_priority_keeps_the_original_place_among_equals(store: StateStore) -> None:
    store.enqueue("reembed", ["early"], 0.0)
    store.enqueue("reembed", ["late"], 1.0)
    store.enqueue("reembed", ["early"], 1.0)
    assert store.dequeue("reembed", 2) == ["early", "late"]


def test_dequeue_takes_at_most_count_and_shrinks_the_queue(store: StateStore) -> None:
    store.enqueue("reembed", [f"doc-{i}" for i in range(5)], 1.0)
    assert store.dequeue("reembed", 2) == ["doc-0", "doc-1"]
    assert store.queue_size("reembed") == 3
    assert store.dequeue("other-queue", 2) == []


def test_a_dequeued_id_can_be_queued_again(store: StateStore) -> None:
    store.enqueue("reembed", ["a"], 1.0)
    assert store.dequeue("reembed", 1) == ["a"]
    assert store.enqueue("reembed", ["a"], 1.0) == 1


def test_ids_with_separator_characters_round_trip(store: StateStore) -> None:
    ids = ["a|b", "00000000000000000001|x", "ключ", "a:b:z"]
    store.enqueue("q:z", ids, 1.0)
    assert store.dequeue("q:z", 10) == ids


def test_concurrent_dequeue_never_returns_an_id_twice(open_store: StoreFactory) -> None:
    replicas = [open_store(), open_store()]
    ids = [f"doc-{i}" for i in range(600)]
    replicas[0].enqueue("reembed", ids, 1.0)

    def drain(worker: int) -> list[str]:
        taken: list[str] = []
        while batch := replicas[worker % 2].dequeue("reembed", 7):
            taken.extend(batch)
        return taken

    taken = [id_ for batch in _in_threads(6, drain) for id_ in batch]
    assert sorted(taken) == sorted(ids)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("enqueue"),
                st.lists(st.sampled_from("abcdef"), max_size=4),
                st.sampled_from([-1.0, 0.0, 2.5]),
            ),
            st.tuples(st.just("dequeue"), st.integers(1, 4)),
        ),
        max_size=25,
    )
)
def test_queue_matches_a_reference_model(store: StateStore, operations: list[tuple]) -> None:  # type: ignore[type-arg]
    queue = f"q-{uuid.uuid4().hex}"
    model: dict[str, tuple[float, int]] = {}
    seq = 0
    for operation in operations:
        if operation[0] == "enqueue":
            _, ids, priority = operation
            added = 0
            for id_ in ids:
                if id_ in model:
                    model[id_] = (max(model[id_][0], priority), model[id_][1])
                else:
                    seq += 1
                    model[id_] = (priority, seq)
                    added += 1
            assert store.enqueue(queue, ids, priority) == added
        else:
            expected = sorted(model, key=lambda i: (-model[i][0], model[i][1]))[: operation[1]]
            for id_ in expected:
                del model[id_]
            assert store.dequeue(queue, operation[1]) == expected
        assert store.queue_size(queue) == len(model)


# --- leases ---


def test_lease_is_exclusive_until_released_by_its_owner(store: StateStore) -> None:
    assert store.lease_owner("backfill") is None
    assert store.try_lease("backfill", "replica-a", 30)
    assert not store.try_lease("backfill", "replica-b", 30)
    store.release_lease("backfill", "replica-b")
    assert store.lease_owner("backfill") == "replica-a"
    store.release_lease("backfill", "replica-a")
    assert store.lease_owner("backfill") is None
    assert store.try_lease("backfill", "replica-b", 30)


def test_owner_renewal_extends_the_lease(store: StateStore) -> None:
    assert store.try_lease("backfill", "replica-a", SHORT_TTL_S)
    time.sleep(SHORT_TTL_S * 0.6)
    assert store.try_lease("backfill", "replica-a", SHORT_TTL_S)
    time.sleep(SHORT_TTL_S * 0.6)
    assert not store.try_lease("backfill", "replica-b", SHORT_TTL_S)
    assert store.lease_owner("backfill") == "replica-a"


def test_expired_lease_can_be_taken_over(store: StateStore) -> None:
    assert store.try_lease("backfill", "replica-a", SHORT_TTL_S)
    time.sleep(SHORT_TTL_S * 1.5)
    assert store.lease_owner("backfill") is None
    assert store.try_lease("backfill", "replica-b", SHORT_TTL_S)
    store.release_lease("backfill", "replica-a")
    assert store.lease_owner("backfill") == "replica-b"


def test_concurrent_lease_attempts_have_exactly_one_winner(open_store: StoreFactory) -> None:
    replicas = [open_store(), open_store()]
    wins = _in_threads(8, lambda i: replicas[i % 2].try_lease("backfill", f"r{i}", 30))
    assert wins.count(True) == 1


# --- argument checks and failures ---


def test_invalid_arguments_are_rejected(store: StateStore) -> None:
    with pytest.raises(ValueError, match="count"):
        store.next_versions(0)
    with pytest.raises(ValueError, match="count"):
        store.dequeue("reembed", 0)
    with pytest.raises(ValueError, match="priority"):
        store.enqueue("reembed", ["a"], float("nan"))
    with pytest.raises(ValueError, match="ttl"):
        store.try_lease("backfill", "a", 0)


def test_unreachable_redis_raises_state_unavailable_naming_the_url() -> None:
    store = RedisStateStore("redis://:s3cret@127.0.0.1:1/0", "test", socket_timeout=0.5)
    try:
        with pytest.raises(StateUnavailable) as raised:
            store.next_versions(1)
    finally:
        store.close()
    message = str(raised.value)
    assert "redis://:***@127.0.0.1:1/0" in message
    assert "s3cret" not in message
    assert "running" in message


def test_local_store_in_a_missing_directory_is_created(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "nested" / "dir" / "state.sqlite3", "test")
    try:
        assert store.next_versions(1) == 1
    finally:
        store.close()


def test_local_store_keeps_state_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = LocalStateStore(path, "test")
    first.next_versions(10)
    first.enqueue("reembed", ["a"], 1.0)
    first.close()
    second = LocalStateStore(path, "test")
    try:
        assert second.next_versions(1) == 11
        assert second.dequeue("reembed", 1) == ["a"]
    finally:
        second.close()


def _reserve_in_process(path: str) -> list[int]:
    store = LocalStateStore(Path(path), "test")
    try:
        return [store.next_versions(1) for _ in range(50)]
    finally:
        store.close()


def test_local_versions_are_disjoint_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_reserve_in_process, [path] * 4))
    everything = [v for versions in results for v in versions]
    assert sorted(everything) == list(range(1, 201))
