"""The pgvector section's writes: documents with caller-supplied vectors into a table whose HNSW index is
present (so every row enters the graph as it is written), three ways, taking turns:

- `sidecar`: Upsert RPCs of `backfill_batch` documents to a sidecar serving a pgvector index on its table;
- `executemany`: the adapter's own upsert statement with the adapter's parameters, one execution per batch,
  sent by psycopg's `executemany` (pipelined: no round trip waited for between batches);
- `copy`: one binary COPY per batch.

Each method has its own table, fresh and empty with its HNSW index, and writes its share of the documents per
turn, the order rotating each turn, so the tables grow alike and drift in the machine's speed hits all three.
One writer each: the HNSW inserts, PostgreSQL's own work on one backend, set the pace whatever the method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.adapters.pgvector.writes import upsert_params, upsert_statement
from proxy.bench.cpu import CpuSpent, PhaseCpu
from proxy.bench.pg_server import (
    GraphParams,
    PgServer,
    connection,
    copy_rows,
    create_table,
    index_table,
    pg_index,
    pg_sidecar_config,
)
from proxy.bench.settings import BenchSettings
from proxy.bench.sidecars import OLD_MODEL, ensure_running, start_sidecar
from proxy.bench.stats import ratio
from proxy.core.model import IndexRecord
from proxy.demo.corpus import CorpusDoc

TARGET_WRITE_RATIO = 0.9
"""Sidecar rows/s over the best direct method that keeps the index live."""
METHODS = ("sidecar", "executemany", "copy")
DIRECT_METHODS = ("executemany", "copy")
_WRITE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class WriteMethod:
    name: str
    rows: int
    seconds: float
    """Wall time of its turns, summed."""
    db_cpu_s: float
    """PostgreSQL's client backends over its turns."""
    sidecar_cpu_s: float
    client_cpu_s: float
    """The benchmark process, which sends the writes."""

    @property
    def rows_per_s(self) -> float:
        return ratio(self.rows, self.seconds)

    @property
    def ms_per_row(self) -> float:
        return ratio(1000 * self.seconds, self.rows)

    @property
    def db_cpu_ms_per_row(self) -> float:
        return ratio(1000 * self.db_cpu_s, self.rows)

    @property
    def sidecar_cpu_ms_per_row(self) -> float:
        return ratio(1000 * self.sidecar_cpu_s, self.rows)

    @property
    def client_cpu_ms_per_row(self) -> float:
        return ratio(1000 * self.client_cpu_s, self.rows)


@dataclass(frozen=True)
class PgWritesResult:
    docs: int
    batch: int
    rounds: int
    methods: list[WriteMethod]

    def method(self, name: str) -> WriteMethod:
        return next(m for m in self.methods if m.name == name)

    @property
    def best_direct(self) -> WriteMethod:
        """The fastest direct method that keeps the HNSW index live (every row searchable once written)."""
        return max((self.method(name) for name in DIRECT_METHODS), key=lambda m: m.rows_per_s)

    @property
    def ratio(self) -> float:
        return ratio(self.method("sidecar").rows_per_s, self.best_direct.rows_per_s)

    @property
    def same_statement_ratio(self) -> float:
        """Sidecar over `executemany` of the statement the adapter sends: the sidecar's own share of a miss;
        the rest is that statement's cost in the database against the best method's."""
        return ratio(self.method("sidecar").rows_per_s, self.method("executemany").rows_per_s)

    @property
    def passed(self) -> bool:
        return self.ratio >= TARGET_WRITE_RATIO


Writer = Callable[[int], None]
"""Writes one turn's share (its number) of the documents."""


def run_writes(
    settings: BenchSettings,
    server: PgServer,
    docs: Sequence[CorpusDoc],
    vectors: np.ndarray,
    tables: dict[str, str],
    workdir: Path,
) -> PgWritesResult:
    count, batch, rounds = (
        min(settings.pg_write_docs, len(docs)),
        settings.backfill_batch,
        settings.pg_write_rounds,
    )
    docs, vectors = docs[:count], vectors[:count]
    graph = GraphParams()
    for name in METHODS:
        create_table(server.dsn, index_table(tables[f"w_{name}"], settings.dim), graph)
    config = pg_sidecar_config(
        workdir / "data",
        {"docs-pg": pg_index(OLD_MODEL, server.dsn, tables["w_sidecar"], graph)},
        settings.dim,
    )
    shares = [range(count * n // rounds, count * (n + 1) // rounds) for n in range(rounds)]
    sidecar, _ = start_sidecar(config, workdir)
    try:
        assert sidecar.process is not None
        with sidecar.client() as client, connection(server.dsn) as conn:
            requests = _upsert_requests(docs, vectors, shares, batch)

            def through_sidecar(turn: int) -> None:
                for request in requests[turn]:
                    client.vectors.Upsert(request, timeout=_WRITE_TIMEOUT_S)

            executemany_table = index_table(tables["w_executemany"], settings.dim)
            statement = upsert_statement(executemany_table.identifier)
            params = _upsert_params(docs, vectors, shares, batch)

            def executemany(turn: int) -> None:
                conn.cursor().executemany(statement, params[turn])

            copy_table = index_table(tables["w_copy"], settings.dim)

            def copy(turn: int) -> None:
                for start in range(shares[turn].start, shares[turn].stop, batch):
                    end = min(start + batch, shares[turn].stop)
                    copy_rows(conn, copy_table, docs[start:end], vectors[start:end], version=1)

            writers: dict[str, Writer] = {
                "sidecar": through_sidecar,
                "executemany": executemany,
                "copy": copy,
            }
            pids = {"sidecar": sidecar.process.pid, "executemany": 0, "copy": 0}
            spent = _take_turns(writers, pids, server.dsn, rounds)
        ensure_running(sidecar)
    finally:
        sidecar.stop()
    methods = [
        WriteMethod(name, count, sum(s for s, _ in spent[name]), *_sum_cpu([c for _, c in spent[name]]))
        for name in METHODS
    ]
    return PgWritesResult(count, batch, rounds, methods)


def _take_turns(
    writers: dict[str, Writer], pids: dict[str, int], dsn: str, rounds: int
) -> dict[str, list[tuple[float, CpuSpent]]]:
    """Each method writes one share per round, the order rotated each round; wall and CPU time per turn."""
    spent: dict[str, list[tuple[float, CpuSpent]]] = {name: [] for name in writers}
    names = list(writers)
    for turn in range(rounds):
        shift = turn % len(names)
        for name in [*names[shift:], *names[:shift]]:
            cpu = PhaseCpu(pids[name], dsn)
            cpu.start()
            started = time.perf_counter()
            writers[name](turn)
            seconds = time.perf_counter() - started
            spent[name].append((seconds, cpu.stop()))
    return spent


def _sum_cpu(spent: list[CpuSpent]) -> tuple[float, float, float]:
    return sum(c.db_s for c in spent), sum(c.server_s for c in spent), sum(c.client_s for c in spent)


def _upsert_requests(
    docs: Sequence[CorpusDoc], vectors: np.ndarray, shares: list[range], batch: int
) -> list[list[pb.UpsertRequest]]:
    """Built before timing: what a client sends is measured, not how fast this process builds messages."""
    return [
        [
            pb.UpsertRequest(
                documents=[
                    pb.Document(
                        id=docs[n].id,
                        text=docs[n].text,
                        metadata={"topic": docs[n].topic},
                        embedding=pb.Embedding(model=OLD_MODEL, values=vectors[n].tolist()),
                    )
                    for n in range(start, min(start + batch, share.stop))
                ]
            )
            for start in range(share.start, share.stop, batch)
        ]
        for share in shares
    ]


def _upsert_params(
    docs: Sequence[CorpusDoc], vectors: np.ndarray, shares: list[range], batch: int
) -> list[list[tuple[list[object], ...]]]:
    """The adapter's parameters of its upsert statement (`upsert_params`), per batch, built before timing."""
    turns = []
    for share in shares:
        batches = []
        for start in range(share.start, share.stop, batch):
            positions = range(start, min(start + batch, share.stop))
            records = [
                IndexRecord(docs[n].id, 1, docs[n].text, {"topic": docs[n].topic}, vectors[n])
                for n in positions
            ]
            batches.append(upsert_params(records, [vectors[n] for n in positions], range(len(records))))
        turns.append(batches)
    return turns
