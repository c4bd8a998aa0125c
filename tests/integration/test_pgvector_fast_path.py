"""The pgvector adapter at the database's speed: one round trip per call, vectors in binary and stored bit for
bit, settings made once per connection, and connections the server ends replaced without failing a call.

Needs the PostgreSQL with pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh); without it these tests fail.
Some look at the index's one pooled connection (`pool_size=1`) through `_pool`: what goes over the wire is
the behaviour under test, and only that connection shows it.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import pq, sql

from proxy.adapters.pgvector import PgVectorIndex
from proxy.core.model import IndexRecord
from tests.contract.conftest import PGVECTOR_DSN, open_pgvector

DIM = 8


def _record(doc_id: str, vector: np.ndarray, version: int = 1) -> IndexRecord:
    return IndexRecord(id=doc_id, version=version, text=doc_id, metadata={"n": doc_id}, vector=vector)


def _unit(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def index() -> Iterator[PgVectorIndex]:
    opened = open_pgvector(DIM, pool_size=1, ef_search=23)
    yield opened
    opened.drop()


def _pooled(index: PgVectorIndex) -> psycopg.Connection[Any]:
    """The index's only pooled connection (pool_size=1), idle in the pool: what its next call runs on."""
    return index._pool.read(lambda conn: conn)


def _traced(conn: psycopg.Connection[Any], call: Callable[[], object]) -> list[str]:
    """The protocol messages the client sent during `call`, from libpq's trace: 'Parse', 'Bind', 'Sync'..."""
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            call()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        # A line is "F <length> <message> <fields...>", tab-separated; F is the client's side.
        return [
            " ".join(field.strip() for field in line.rstrip("\n").split("\t")[2:])
            for line in trace
            if line.startswith("F\t")
        ]


def _count(messages: list[str], kind: str) -> int:
    return sum(1 for message in messages if message.split(" ")[0] == kind)


# ---- vectors in binary, stored bit for bit -----------------------------------------------------------------


def _awkward_float32s(seed: int) -> np.ndarray:
    """Values whose shortest decimal form is long, and the extremes of float32's range."""
    values = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32) / np.float32(3)
    values[0] = np.float32(1) / np.float32(3)
    values[1] = np.finfo(np.float32).max
    values[2] = np.finfo(np.float32).tiny  # the smallest normal
    values[3] = -np.float32(1e-45)  # subnormal
    return values


def test_vectors_are_stored_bit_for_bit_and_read_back_so_by_sql(index: PgVectorIndex) -> None:
    vectors = np.stack([_awkward_float32s(seed) for seed in range(20)])
    index.upsert([_record(f"d{n:02d}", v) for n, v in enumerate(vectors)])
    with psycopg.connect(PGVECTOR_DSN) as conn:
        register_vector(conn)
        rows = conn.execute(
            sql.SQL("SELECT id, embedding FROM {} ORDER BY id").format(sql.Identifier(index.table)),
            binary=True,
        ).fetchall()
        # The server's own text form of a stored value parses back to the same float32 too.
        text = conn.execute(
            sql.SQL("SELECT embedding::text FROM {} WHERE id = 'd00'").format(sql.Identifier(index.table))
        ).fetchone()
    assert [row[0] for row in rows] == [f"d{n:02d}" for n in range(20)]
    for (_, stored), written in zip(rows, vectors, strict=True):
        assert stored.to_numpy().tobytes() == written.tobytes()
    assert text is not None
    parsed = np.array([float(x) for x in text[0].strip("[]").split(",")], dtype=np.float32)
    assert parsed.tobytes() == vectors[0].tobytes()


def test_search_scores_carry_the_stored_float32_values_exactly() -> None:
    # In the inner-product space a basis vector's score is one stored component: x * 1 plus zeros, exact in
    # any summation order. A vector that lost bits on the way in (a short decimal form) would show here.
    index = open_pgvector(DIM, "ip")
    try:
        stored = _awkward_float32s(seed=3)
        stored[3] = np.float32(-0.123456789)  # a subnormal may be flushed to zero by the server's arithmetic
        index.upsert([_record("only", stored)])
        assert [doc.id for doc in index.get(["only"])] == ["only"]
        for j in range(DIM):
            basis = np.zeros(DIM, dtype=np.float32)
            basis[j] = 1
            hits = index.search(basis, k=1)
            exact = index.exact_search(basis, k=1)
            assert hits[0].score == float(stored[j]), j
            assert exact[0].score == float(stored[j]), j
    finally:
        index.drop()


def test_an_upsert_sends_its_vectors_as_one_binary_array_in_one_round_trip(index: PgVectorIndex) -> None:
    vectors = _unit(5, seed=1)
    conn = _pooled(index)
    sent = _traced(conn, lambda: index.upsert([_record(f"d{n}", v) for n, v in enumerate(vectors)]))
    assert _count(sent, "Sync") == 1 and _count(sent, "Bind") == 1
    assert _count(sent, "Query") == 0, "no BEGIN/COMMIT: the statement is a transaction of its own"
    # pgvector's text form would be text; the binary vector[] holds each float32's 4 bytes, big-endian.
    bind = next(message for message in sent if message.startswith("Bind"))
    assert "\\x" in bind and "[" not in bind


def test_compare_and_set_still_keeps_the_highest_version(index: PgVectorIndex) -> None:
    old, new = _unit(2, seed=2)
    assert index.upsert([_record("a", new, version=5)]).written == ("a",)
    result = index.upsert([_record("a", old, version=4), _record("b", old, version=1)])
    assert result.written == ("b",) and result.stale == ("a",)
    assert index.delete(["a"], version=3).stale == ("a",)
    assert index.delete(["a"], version=6).written == ("a",)
    assert index.upsert([_record("a", new, version=6)]).stale == ("a",)
    assert index.versions(["a", "b"]) == {"a": 6, "b": 1}
    assert [doc.id for doc in index.get(["a", "b"])] == ["b"]


# ---- one round trip per query, settings once per connection -----------------------------------------------


def test_a_search_is_one_statement_in_one_round_trip_with_ef_search_set_on_the_connection(
    index: PgVectorIndex,
) -> None:
    vectors = _unit(40, seed=4)
    index.upsert([_record(f"d{n:02d}", v) for n, v in enumerate(vectors)])
    conn = _pooled(index)
    for _ in range(6):  # past psycopg's prepare threshold: the steady state
        index.search(vectors[0], k=5)
    sent = _traced(conn, lambda: index.search(vectors[0], k=5))
    assert _count(sent, "Sync") == 1, sent
    assert _count(sent, "Bind") == 1 and _count(sent, "Execute") == 1, sent
    assert _count(sent, "Query") == 0, "no BEGIN/COMMIT, no SET"
    # Two parameters, the vector and k: the vector goes once, though the statement names it twice.
    bind = next(message for message in sent if message.startswith("Bind"))
    assert re.search(r'^Bind "" "\w+" 2 1 1 2 36 ', bind), bind
    # hnsw.ef_search was set when the pool opened the connection, and is in force on it.
    assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("23",)


def test_settings_for_one_search_go_in_its_round_trip_and_end_with_it(index: PgVectorIndex) -> None:
    vectors = _unit(40, seed=5)
    index.upsert([_record(f"d{n:02d}", v) for n, v in enumerate(vectors)])
    conn = _pooled(index)
    # More neighbours than ef_search, under a deadline: both settings, for this statement only.
    sent = _traced(conn, lambda: index.search(vectors[0], k=30, timeout_s=5.0))
    assert _count(sent, "Sync") == 1, sent
    assert _count(sent, "Query") == 0, sent
    assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("23",)
    assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    assert len(index.search(vectors[0], k=30, timeout_s=5.0)) == 30


# ---- liveness: no probe per checkout, dropped connections replaced ------------------------------------------


def test_a_checkout_sends_nothing_but_the_call(index: PgVectorIndex) -> None:
    index.upsert([_record("a", _unit(1, seed=6)[0])])
    conn = _pooled(index)
    sent = _traced(conn, lambda: index.versions(["a"]))
    assert _count(sent, "Sync") == 1 and _count(sent, "Query") == 0, sent


def _backends(index: PgVectorIndex, admin: psycopg.Connection[Any]) -> list[int]:
    """The index's pooled server processes: the adapter's, and their last statement named its table."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'switchyard' AND query LIKE %s",
        (f"%{index.table}%",),
    ).fetchall()
    return [pid for (pid,) in rows]


def test_an_idle_connection_the_server_terminated_is_replaced_without_failing_the_next_query(
    index: PgVectorIndex,
) -> None:
    vectors = _unit(10, seed=7)
    index.upsert([_record(f"d{n}", v) for n, v in enumerate(vectors)])
    assert index.search(vectors[3], k=1)[0].id == "d3"
    with psycopg.connect(PGVECTOR_DSN, autocommit=True) as admin:
        killed = _backends(index, admin)
        assert len(killed) == 1
        admin.execute("SELECT pg_terminate_backend(%s)", (killed[0],))
        time.sleep(0.2)  # the server's goodbye reaches the pooled connection's socket
        # A write first: it is never run twice (it may have committed), so only the check on checkout, which
        # sees the goodbye waiting on the idle socket, keeps it from failing.
        assert index.upsert([_record("d9", vectors[9], version=2)]).written == ("d9",)
        assert index.search(vectors[3], k=1)[0].id == "d3"
        assert index.get(["d3"])[0].id == "d3"
        assert _backends(index, admin) not in ([], killed)


def test_a_search_whose_connection_is_terminated_mid_query_runs_again_on_a_fresh_one(
    index: PgVectorIndex,
) -> None:
    vectors = _unit(10, seed=8)
    index.upsert([_record(f"d{n}", v) for n, v in enumerate(vectors)])
    outcome: list[object] = []
    with psycopg.connect(PGVECTOR_DSN) as holder, psycopg.connect(PGVECTOR_DSN, autocommit=True) as admin:
        # The search waits on this lock, so it is in flight when its server process is terminated: the
        # failure reaches the query itself, past any check on checkout.
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(index.table)))

        def search() -> None:
            try:
                outcome.append(index.search(vectors[4], k=1)[0].id)
            except Exception as exc:
                outcome.append(exc)

        searcher = threading.Thread(target=search)
        searcher.start()
        deadline = time.monotonic() + 10
        waiting: list[int] = []
        while not waiting and time.monotonic() < deadline:
            waiting = [
                pid
                for (pid,) in admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'switchyard'"
                    " AND wait_event_type = 'Lock' AND query LIKE %s",
                    (f"%{index.table}%",),
                )
            ]
        assert len(waiting) == 1, "the search never waited on the lock"
        admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
        time.sleep(0.3)  # the retry now waits on the lock, on its new connection
        holder.rollback()
        searcher.join(10)
    assert outcome == ["d4"]
