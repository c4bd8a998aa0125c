"""CPU time of the processes one measurement involves: a server process, a database's backends, and the
measuring process itself. Per-request CPU is what bounds throughput once the cores are busy, so the sections
report it beside the latencies, per process, to make a throughput ratio's arithmetic visible.

Read on this machine: psutil when it is installed (portable), /proc/<pid>/stat otherwise (Linux).
"""

from __future__ import annotations

import importlib
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


psutil = _optional("psutil")  # not a dependency: /proc serves on Linux
_GONE: tuple[type[Exception], ...] = (OSError, ValueError, IndexError, *([psutil.Error] if psutil else []))

# The client backends of the sampler's own database, itself left out: one database per benchmark keeps other
# clients of the same server (a test run beside the benchmark) out of the figure.
_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND backend_type = ANY(%s) AND pid <> pg_backend_pid()"
)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (0 when no pid is given)."""
    if not pid:
        return 0.0
    if psutil is not None:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    # /proc/<pid>/stat: the command name may contain spaces, so fields are counted after its closing ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """This process's CPU seconds, every thread (grpc's and psycopg's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_if_alive(pid: int) -> float | None:
    try:
        return process_cpu_s(pid)
    except _GONE:  # ended between the listing and the read, or not a process of this machine
        return None


class BackendsCpu:
    """CPU time of one database's client backends, per pid, from a connection of its own."""

    def __init__(self, dsn: str, *, parallel_workers: bool = False) -> None:
        """`parallel_workers`: count those too (an index build's helpers: short-lived, sampled while alive)."""
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._kinds = ["client backend", *(["parallel worker"] if parallel_workers else [])]

    def sample(self) -> dict[int, float]:
        pids = [int(pid) for (pid,) in self._conn.execute(_BACKENDS, (self._kinds,))]
        return {pid: cpu for pid in pids if (cpu := _cpu_if_alive(pid)) is not None}

    def close(self) -> None:
        self._conn.close()


def backends_spent(before: Mapping[int, float], after: Mapping[int, float]) -> tuple[float, int]:
    """CPU seconds between two samples, and how many backends used any: a backend that started in between
    counts whole; one that ended in between is lost (the sections keep their connections open through a
    measurement, so none does)."""
    deltas = [cpu - before.get(pid, 0.0) for pid, cpu in after.items()]
    return sum(deltas), sum(1 for delta in deltas if delta > 0)


def server_is_local(dsn: str) -> bool:
    """Whether the server's backends are processes of this machine, so their CPU time can be read here."""
    # Read while the connection is open: its backend process ends with it.
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        try:
            name = psutil.Process(row[0]).name() if psutil else Path(f"/proc/{row[0]}/comm").read_text()
        except _GONE:
            return False
    return name.strip().startswith("postgres")


@dataclass(frozen=True)
class CpuSpent:
    server_s: float
    db_s: float
    client_s: float
    db_backends: int = 0
    """Backends that did any work: a pool spreads one client's queries over all its connections."""


class PhaseCpu:
    """The CPU a measurement costs: `server_pid` (0: none), the backends of `dsn`'s database ('': none), and
    this process."""

    def __init__(self, server_pid: int, dsn: str) -> None:
        self._server_pid = server_pid
        self._backends = BackendsCpu(dsn) if dsn else None
        self._start = (0.0, 0.0)
        self._db_start: dict[int, float] = {}

    def start(self) -> None:
        self._db_start = self._backends.sample() if self._backends else {}
        self._start = (process_cpu_s(self._server_pid), own_cpu_s())

    def stop(self) -> CpuSpent:
        server, client = process_cpu_s(self._server_pid), own_cpu_s()
        db, busy = backends_spent(self._db_start, self._backends.sample()) if self._backends else (0.0, 0)
        if self._backends:
            self._backends.close()
        return CpuSpent(server - self._start[0], db, client - self._start[1], busy)
