"""Connections to an index's PostgreSQL server, with connection failures raised as the core's errors.

Unavailable when the server cannot be reached (the message names the DSN, its password masked), IndexClosed
after `close`, ConfigError for a DSN that does not parse. Errors the statements themselves raise pass through.

Every pooled connection is in autocommit and set up once, when the pool opens it (`register_vector`, the
session settings), so a statement costs one round trip: no BEGIN/COMMIT (a single statement is its own
transaction), no per-query SET, and no liveness probe on checkout. A checkout probes a connection only when
there is a reason to (see `_Liveness`); a read that still meets a connection the server dropped runs once more
on another one, which is safe for a read and invisible to its caller.
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from proxy.core.errors import ConfigError, IndexClosed, Unavailable

T = TypeVar("T")
Connection = psycopg.Connection[Any]

# A connection idle longer than this is probed (one round trip) before it serves a call. pgbouncer's
# server_check_delay has the same default: server-side idle limits (idle_session_timeout, a firewall's or a
# load balancer's) are minutes, and a busy index reuses its connections within milliseconds, so the probe is
# almost never paid on the query path.
IDLE_PROBE_S = 30.0


def redact_dsn(dsn: str) -> str:
    """The DSN as key=value pairs with any password masked, for error messages and logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def unavailable(index: str, where_dsn: str, reason: str) -> Unavailable:
    return Unavailable(
        f"pgvector index {index!r}: cannot reach PostgreSQL at {where_dsn}"
        f" ({' '.join(reason.split())}); check that the server is running and accepts connections at that"
        " host and port, and that the DSN's user, password and database are right"
    )


def connect_kwargs(timeout_s: float) -> dict[str, Any]:
    # libpq's connect_timeout is whole seconds, and values below 2 are raised to 2.
    return {"connect_timeout": max(2, math.ceil(timeout_s)), "application_name": "switchyard"}


def _rolled_back(exc: psycopg.Error) -> bool:
    """SQLSTATE class 40, transaction rollback: deadlocks and serialization failures, where the server
    undid the whole transaction, so running it again is safe. psycopg's error classes do not nest by SQLSTATE
    class (DeadlockDetected is no TransactionRollback), so the code decides."""
    return (exc.sqlstate or "").startswith("40")


@contextmanager
def setup_transaction(index: str, dsn: str, *, connect_timeout_s: float) -> Iterator[Connection]:
    """A connection of its own, outside any pool, in one transaction: for schema setup; closed afterwards."""
    try:
        conn = psycopg.connect(dsn, **connect_kwargs(connect_timeout_s))
    except psycopg.OperationalError as exc:
        raise unavailable(index, redact_dsn(dsn), str(exc)) from exc
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"pgvector index {index!r}: invalid DSN: {exc}") from None
    try:
        with conn.transaction():
            yield conn
    except psycopg.OperationalError as exc:
        raise unavailable(index, redact_dsn(dsn), str(exc)) from exc
    finally:
        conn.close()


class _Dropped(Exception):
    """A statement failed because its connection is gone (the server ended it, or the network did)."""


class _Liveness:
    """The pool's `check` callback: which connections to probe before they serve a call.

    Probed (`ConnectionPool.check_connection`, one round trip) when one of these holds, taken as it is
    otherwise:
    - its socket has something to read while idle: an idle connection is sent nothing unless the server ends
      it (pg_terminate_backend, a shutdown, idle_session_timeout all send an error and close), so a
      non-blocking poll (~1 µs) sees those without a round trip;
    - it has been idle longer than IDLE_PROBE_S, for the ends that send nothing (a firewall dropping state).
    A connection that fails the probe is discarded by the pool, which hands out another or opens one.
    """

    def __init__(self) -> None:
        self._returned_at: WeakKeyDictionary[Connection, float] = WeakKeyDictionary()

    def returned(self, conn: Connection) -> None:
        self._returned_at[conn] = time.monotonic()

    def check(self, conn: Connection) -> None:
        # A connection the pool just opened was never returned: it is as fresh as it gets.
        returned_at = self._returned_at.get(conn, math.inf)
        if time.monotonic() - returned_at > IDLE_PROBE_S or _has_input(conn):
            ConnectionPool.check_connection(conn)


def _has_input(conn: Connection) -> bool:
    # poll, not select: select fails for descriptors past FD_SETSIZE (1024), which a busy sidecar can reach.
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class IndexConnectionPool:
    """The pooled connections of one index; thread-safe, like the psycopg pool it wraps.

    `settings` are session parameters every connection gets once, when it is opened (hnsw.ef_search)."""

    def __init__(
        self,
        index: str,
        dsn: str,
        *,
        pool_size: int,
        connect_timeout_s: float,
        settings: Mapping[str, str],
    ) -> None:
        self._index = index
        self._where_dsn = redact_dsn(dsn)
        self._settings = dict(settings)
        self._liveness = _Liveness()
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={**connect_kwargs(connect_timeout_s), "autocommit": True},
            configure=self._configure,
            # No `reset` callback: with one, psycopg_pool hands every returned connection to a worker thread,
            # and the next call waits on that hand-over (or opens a connection) instead of reusing it at once.
            check=self._liveness.check,
            # Also how long a call waits while the server is down before it raises Unavailable.
            timeout=connect_timeout_s,
            # The pool retries a lost connection with exponential backoff; a short give-up lets the next call
            # start a fresh attempt instead, so service resumes within seconds of the server coming back.
            reconnect_timeout=connect_timeout_s * 2,
            name=f"pgvector-{index}",
            open=False,
        )
        self._pool.open(wait=False)

    def _configure(self, conn: Connection) -> None:
        # Vectors travel in binary as numpy float32 arrays: no text formatting or parsing on either side.
        register_vector(conn)
        for name, value in self._settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))

    def ensure_open(self) -> None:
        if self._pool.closed:
            raise IndexClosed(f"index {self._index!r} is closed")

    def close(self) -> None:
        self._pool.close()

    def read(self, run: Callable[[Connection], T]) -> T:
        """`run(conn)` on a pooled connection in autocommit; run again, once, on another connection when the
        first one turns out to have been dropped by the server. Only for calls that change nothing."""
        try:
            with self._checkout(retry_dropped=True) as conn:
                return run(conn)
        except _Dropped:
            pass  # the pool has just replaced what was dropped with it
        with self._checkout(retry_dropped=False) as conn:
            return run(conn)

    def write(self, run: Callable[[Connection], T]) -> T:
        """`run(conn)` on a pooled connection in autocommit, never run twice: a write that met a dropped
        connection may have committed, so it fails with Unavailable and its caller decides."""
        with self._checkout(retry_dropped=False) as conn:
            return run(conn)

    @contextmanager
    def _checkout(self, *, retry_dropped: bool) -> Iterator[Connection]:
        self.ensure_open()
        try:
            with self._pool.connection() as conn:
                try:
                    yield conn
                except psycopg.OperationalError as exc:
                    if not conn.broken:
                        raise
                    # What took this connection down (a server restart) most likely took its idle siblings
                    # too: probe them all now, once, rather than let each fail a call of its own.
                    self._pool.check()
                    if retry_dropped:
                        raise _Dropped from exc
                    raise
                finally:
                    self._liveness.returned(conn)
        except PoolClosed as exc:
            raise IndexClosed(f"index {self._index!r} is closed") from exc
        except PoolTimeout as exc:
            raise unavailable(
                self._index,
                self._where_dsn,
                "no connection to PostgreSQL became free or could be made in time",
            ) from exc
        except psycopg.OperationalError as exc:
            if _rolled_back(exc) or isinstance(exc, psycopg.errors.QueryCanceled):
                raise  # the caller's to retry (`writes.run_write`) or to explain (`search` past its deadline)
            raise unavailable(self._index, self._where_dsn, str(exc)) from exc
