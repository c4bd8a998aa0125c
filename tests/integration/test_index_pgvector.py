"""What only the pgvector backend has: a server to lose, a table to share, SQL-side indexes and collation.

Needs the PostgreSQL with pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh); without it these tests fail.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from proxy.adapters.pgvector import PgVectorIndex, default_table, redact_dsn
from proxy.app.config import parse_config
from proxy.app.wiring import build_index
from proxy.core.errors import ConfigError, IndexClosed, Unavailable
from proxy.core.model import IndexRecord
from proxy.core.ports import iter_all
from proxy.demo.sidecar_process import free_port
from tests.contract.conftest import PGVECTOR_DSN, open_pgvector

DIM = 8
T = TypeVar("T")


def _vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _record(doc_id: str, version: int, vector: np.ndarray) -> IndexRecord:
    return IndexRecord(id=doc_id, version=version, text=f"{doc_id} v{version}", metadata={}, vector=vector)


@pytest.fixture
def index() -> Iterator[PgVectorIndex]:
    opened = open_pgvector(DIM, pool_size=8)
    yield opened
    opened.drop()


def test_unreachable_server_raises_unavailable_naming_the_dsn_without_its_password() -> None:
    port = free_port()
    dsn = f"postgresql://switchyard:s3cret-pw@127.0.0.1:{port}/vectors"
    with pytest.raises(Unavailable) as info:
        PgVectorIndex("docs", DIM, dsn, connect_timeout_s=2)
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "password=***" in message
    assert f"port={port}" in message and "host=127.0.0.1" in message
    assert "server is running" in message


def test_existing_table_of_another_dimension_is_refused_naming_both(index: PgVectorIndex) -> None:
    with pytest.raises(ConfigError, match=rf"holds vectors of dim {DIM}.*opened with dim {DIM * 2}"):
        PgVectorIndex("docs", DIM * 2, PGVECTOR_DSN, table=index.table)


def test_existing_table_of_another_space_is_refused(index: PgVectorIndex) -> None:
    with pytest.raises(ConfigError, match=r"HNSW index for space cosine.*opened with space ip"):
        PgVectorIndex("docs", DIM, PGVECTOR_DSN, table=index.table, space="ip")


def test_reopening_a_table_keeps_its_documents(index: PgVectorIndex) -> None:
    index.upsert([_record("a", 4, _vectors(1, seed=1)[0])])
    again = PgVectorIndex("docs", DIM, PGVECTOR_DSN, table=index.table)
    try:
        assert again.versions(["a"]) == {"a": 4}
    finally:
        again.close()


@pytest.mark.parametrize(("space", "opclass"), [("cosine", "vector_cosine_ops"), ("ip", "vector_ip_ops")])
def test_table_has_an_hnsw_index_with_the_configured_parameters(
    space: Literal["cosine", "ip"], opclass: str
) -> None:
    index = open_pgvector(DIM, space, hnsw_m=12, hnsw_ef_construction=48)
    try:
        with psycopg.connect(PGVECTOR_DSN) as conn:
            definitions = [
                row[0]
                for row in conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (index.table,)
                )
            ]
        hnsw = [d for d in definitions if "USING hnsw" in d]
        assert len(hnsw) == 1
        assert f"embedding {opclass}" in hnsw[0] and "m='12'" in hnsw[0] and "ef_construction='48'" in hnsw[0]
    finally:
        index.drop()


def test_search_uses_the_hnsw_index_and_exact_search_does_not(index: PgVectorIndex) -> None:
    vectors = _vectors(2_000, seed=2)
    index.upsert([_record(f"d{i}", 1, v) for i, v in enumerate(vectors)])
    with psycopg.connect(PGVECTOR_DSN) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(index.table)))
        query = sql.SQL("EXPLAIN SELECT id FROM {} ORDER BY embedding <=> %s::vector LIMIT 10").format(
            sql.Identifier(index.table)
        )
        literal = "[" + ",".join(map(str, vectors[0].tolist())) + "]"
        approximate = "\n".join(row[0] for row in conn.execute(query, (literal,)))
        conn.execute("SET enable_indexscan = off")  # what exact_search sets for its transaction
        exact = "\n".join(row[0] for row in conn.execute(query, (literal,)))
    assert "embedding_hnsw" in approximate
    assert "embedding_hnsw" not in exact


def test_concurrent_upserts_of_the_same_ids_keep_the_highest_version(index: PgVectorIndex) -> None:
    ids = [f"hot-{n}" for n in range(5)]
    vectors = _vectors(64, seed=3)
    versions = list(range(1, 65))
    random.Random(4).shuffle(versions)
    errors: list[BaseException] = []

    def writer(chunk: list[int]) -> None:
        try:
            for version in chunk:
                # Each batch names the same ids in its own order: row locks must not deadlock.
                batch = random.Random(version).sample(ids, len(ids))
                index.upsert([_record(doc_id, version, vectors[version - 1]) for doc_id in batch])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(versions[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert index.versions(ids) == dict.fromkeys(ids, 64)
    assert {doc.text for doc in index.get(ids)} == {f"{doc_id} v64" for doc_id in ids}
    assert {hit.id for hit in index.exact_search(vectors[63], k=5)} == set(ids)


def test_batch_naming_an_id_twice_stores_its_highest_version(index: PgVectorIndex) -> None:
    # One INSERT ... ON CONFLICT may not touch a row twice: the adapter sends each id's latest record.
    first, newest, late = _vectors(3, seed=9)
    result = index.upsert([_record("a", 1, first), _record("a", 3, newest), _record("a", 2, late)])
    assert result.written == ("a",) and result.stale == ("a", "a")
    assert index.get(["a"])[0].text == "a v3"
    assert index.search(newest, k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def _relation_bytes(relation: str) -> int:
    with psycopg.connect(PGVECTOR_DSN) as conn:
        row = conn.execute("SELECT pg_relation_size(%s::regclass)", (relation,)).fetchone()
    assert row is not None
    return int(row[0])


def test_compact_rebuilds_the_hnsw_index_from_live_rows_only(index: PgVectorIndex) -> None:
    vectors = _vectors(600, seed=10)
    ids = [f"d{i:03d}" for i in range(600)]
    index.upsert([_record(doc_id, 1, v) for doc_id, v in zip(ids, vectors, strict=True)])
    index.delete(ids[:500], version=2)
    graph = f"{index.table}_embedding_hnsw"
    before = _relation_bytes(graph)
    assert index.compact() > 0
    assert _relation_bytes(graph) < before / 2
    # From PostgreSQL's statistics, which lag the writes: only the range is certain.
    assert 0.0 <= index.dead_fraction() <= 1.0
    assert index.versions(ids[:1]) == {ids[0]: 2}
    assert index.search(vectors[550], k=1)[0].id == ids[550]


def test_scan_orders_ids_like_python_strings(index: PgVectorIndex) -> None:
    # Natural-language collations put "B" before "a" and ignore punctuation; the backfill's cursor needs
    # plain code point order, as Python compares str.
    ids = ["a", "B", "Z", "z", "a-b", "a b", "ab", "é", "ä", "中", "Ω", "_x", "10", "9"]
    vectors = _vectors(len(ids), seed=5)
    index.upsert([_record(doc_id, 1, v) for doc_id, v in zip(ids, vectors, strict=True)])
    assert [doc.id for doc in iter_all(index, batch=3)] == sorted(ids)


def test_batch_with_a_nul_character_writes_nothing(index: PgVectorIndex) -> None:
    good, bad = _vectors(2, seed=6)
    with pytest.raises(ValueError, match="NUL"):
        index.upsert([_record("good", 1, good), IndexRecord("bad", 1, "a\x00b", {}, bad)])
    assert index.versions(["good", "bad"]) == {}


def test_connections_killed_by_the_server_are_replaced(index: PgVectorIndex) -> None:
    index.upsert([_record("a", 1, _vectors(1, seed=7)[0])])
    with psycopg.connect(PGVECTOR_DSN, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'switchyard' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert index.versions(["a"]) == {"a": 1}


class _Outage:
    """A TCP relay to the test server that can be cut and restored: a server going down and coming back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        for sock in [self._listener, *self._sockets]:
            if sock is not None:
                _hang_up(sock)
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    for sock in (source, target):
        _hang_up(sock)


def _hang_up(sock: socket.socket) -> None:
    # shutdown, unlike close, also wakes a thread blocked in recv and sends the peer its end of stream.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _eventually(call: Callable[[], T], within_s: float) -> T:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return call()
        except Unavailable:
            if time.monotonic() > deadline:
                raise


def test_server_outage_raises_unavailable_and_the_index_recovers_after_it() -> None:
    params = conninfo_to_dict(PGVECTOR_DSN)
    outage = _Outage((str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))))
    outage.restore()
    table = f"test_{uuid.uuid4().hex[:20]}"
    index = PgVectorIndex(
        "docs",
        DIM,
        make_conninfo(PGVECTOR_DSN, host="127.0.0.1", port=outage.port),
        table=table,
        connect_timeout_s=2,
    )
    try:
        index.upsert([_record("a", 1, _vectors(1, seed=8)[0])])
        outage.cut()
        started = time.monotonic()
        with pytest.raises(Unavailable, match=rf"cannot reach PostgreSQL at .*port={outage.port}"):
            index.versions(["a"])
        assert time.monotonic() - started < 10
        outage.restore()
        assert _eventually(lambda: index.versions(["a"]), within_s=15) == {"a": 1}
    finally:
        outage.cut()
        outage.restore()
        index.drop()
        outage.cut()


def test_closed_index_refuses_calls_and_drop_removes_the_table() -> None:
    index = open_pgvector(DIM)
    table = index.table
    index.drop()
    with pytest.raises(IndexClosed, match="closed"):
        index.count()
    with psycopg.connect(PGVECTOR_DSN) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)


def test_missing_extension_is_a_config_error_saying_how_to_get_it() -> None:
    # A role that may not create the (untrusted) extension, in a database without it: the same failure as
    # a server where pgvector is not installed.
    suffix = uuid.uuid4().hex[:12]
    database, role = f"noext_{suffix}", f"noext_{suffix}"
    with psycopg.connect(PGVECTOR_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role))
        )
        try:
            dsn = make_conninfo(PGVECTOR_DSN, dbname=database, user=role)
            with pytest.raises(
                ConfigError, match=r"CREATE EXTENSION vector failed.*may not create the extension"
            ):
                PgVectorIndex("docs", DIM, dsn)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_default_table_names_are_safe_and_distinct() -> None:
    assert default_table("docs_v2") == "switchyard_docs_v2"
    odd = [default_table(name) for name in ("Docs", "docs-v2", "docs.v2", "x" * 80)]
    assert len(set(odd)) == len(odd)
    assert all(name.isidentifier() and len(name) <= 48 for name in odd)


def test_redacted_dsn_masks_the_password_in_both_forms() -> None:
    assert "secret" not in redact_dsn("postgresql://u:secret@h:5432/db")
    assert "secret" not in redact_dsn("host=h user=u password=secret dbname=db")
    assert "host=h" in redact_dsn("postgresql://u:secret@h:5432/db")


def _config_with(pgvector: dict[str, Any] | None, backend: str = "pgvector") -> dict[str, Any]:
    index: dict[str, Any] = {"model": "m", "backend": backend}
    if pgvector is not None:
        index["pgvector"] = pgvector
    return {
        "models": {"m": {"kind": "hashing", "dim": DIM}},
        "indexes": {"docs": index},
        "serving_index": "docs",
    }


@pytest.mark.parametrize(
    ("pgvector", "backend", "fragment"),
    [
        (None, "pgvector", "indexes.docs: backend pgvector needs a `pgvector:` section"),
        ({}, "pgvector", "set exactly one of `dsn` and `dsn_env`"),
        ({"dsn": "x", "dsn_env": "Y"}, "pgvector", "set exactly one of `dsn` and `dsn_env`"),
        ({"dsn": "x"}, "hnsw", "a `pgvector:` section is set but backend is hnsw"),
        ({"dsn": "x", "table": "bad-name"}, "pgvector", "indexes.docs.pgvector.table"),
        ({"dsn": "x", "m": 32, "ef_construction": 40}, "pgvector", "at least 2 * m"),
    ],
)
def test_invalid_pgvector_config_names_the_problem(
    pgvector: dict[str, Any] | None, backend: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_config_with(pgvector, backend))
    assert fragment in str(info.value)


def _resolved_dsn(raw: dict[str, Any]) -> str:
    params = parse_config(raw).indexes["docs"].pgvector
    assert params is not None
    return params.resolved_dsn()


def test_dsn_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SY_TEST_PG_PASSWORD", "hunter2")
    monkeypatch.setenv("SY_TEST_PG_DSN", "postgresql://db/whole")
    templated = _config_with({"dsn": "postgresql://app:${SY_TEST_PG_PASSWORD}@db/x"})
    assert _resolved_dsn(templated) == "postgresql://app:hunter2@db/x"
    assert _resolved_dsn(_config_with({"dsn_env": "SY_TEST_PG_DSN"})) == "postgresql://db/whole"
    monkeypatch.delenv("SY_TEST_PG_DSN")
    with pytest.raises(ConfigError, match="environment variable SY_TEST_PG_DSN is not set"):
        _resolved_dsn(_config_with({"dsn_env": "SY_TEST_PG_DSN"}))


def test_build_index_opens_the_configured_pgvector_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SY_TEST_PG_DSN", PGVECTOR_DSN)
    table = f"test_{uuid.uuid4().hex[:20]}"
    config = parse_config(
        _config_with({"dsn_env": "SY_TEST_PG_DSN", "table": table, "m": 8, "ef_search": 20})
    )
    index = build_index("docs", config.indexes["docs"], DIM, tmp_path)
    assert isinstance(index, PgVectorIndex)
    try:
        assert index.table == table and index.count() == 0
    finally:
        index.drop()


@contextlib.contextmanager
def _table_locked(index: PgVectorIndex) -> Iterator[None]:
    """Another session holding the table in ACCESS EXCLUSIVE mode: every read of it waits."""
    with psycopg.connect(PGVECTOR_DSN) as other:
        other.execute(
            sql.SQL("LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE").format(t=sql.Identifier(index.table))
        )
        yield
        other.rollback()


def test_a_search_with_a_timeout_is_cancelled_on_the_server_and_the_limit_does_not_stay() -> None:
    index = open_pgvector(DIM, pool_size=1)  # one connection: the next search reuses the cancelled one
    try:
        vectors = _vectors(20, seed=41)
        index.upsert([_record(f"d{n}", 1, v) for n, v in enumerate(vectors)])
        with _table_locked(index):
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="ran past its 200 ms deadline"):
                index.search(vectors[0], k=3, timeout_s=0.2)
            assert time.monotonic() - started < 5, "the server did not cancel the search"
        # A timed search that commits must not leave its limit on the pooled connection: a search without a
        # timeout then waits out a lock held longer than that limit.
        assert index.search(vectors[0], k=1, timeout_s=0.2)[0].id == "d0"
        held, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold_lock_until, args=(index, held, release))
        holder.start()
        assert held.wait(10)
        threading.Timer(0.6, release.set).start()
        assert index.search(vectors[0], k=1)[0].id == "d0"
        holder.join()
    finally:
        index.drop()


def _hold_lock_until(index: PgVectorIndex, held: threading.Event, release: threading.Event) -> None:
    with _table_locked(index):
        held.set()
        release.wait(10)
