"""Connections to an index's PostgreSQL server, with connection failures raised as the core's errors.

Unavailable when the server cannot be reached (the message names the DSN, its password masked), IndexClosed
after `close`, ConfigError for a DSN that does not parse. Errors the statements themselves raise pass through.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from proxy.core.errors import ConfigError, IndexClosed, Unavailable


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


def _connect_kwargs(timeout_s: float) -> dict[str, Any]:
    # libpq's connect_timeout is whole seconds, and values below 2 are raised to 2.
    return {"connect_timeout": max(2, math.ceil(timeout_s)), "application_name": "switchyard"}


def _rolled_back(exc: psycopg.Error) -> bool:
    """SQLSTATE class 40, transaction rollback: deadlocks and serialization failures, where the server
    undid the whole transaction, so running it again is safe. psycopg's error classes do not nest by SQLSTATE
    class (DeadlockDetected is no TransactionRollback), so the code decides."""
    return (exc.sqlstate or "").startswith("40")


@contextmanager
def setup_transaction(index: str, dsn: str, *, connect_timeout_s: float) -> Iterator[psycopg.Connection]:
    """A connection of its own, outside any pool, in one transaction: for schema setup; closed afterwards."""
    try:
        conn = psycopg.connect(dsn, **_connect_kwargs(connect_timeout_s))
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


class IndexConnectionPool:
    """The pooled connections of one index; thread-safe, like the psycopg pool it wraps."""

    def __init__(self, index: str, dsn: str, *, pool_size: int, connect_timeout_s: float) -> None:
        self._index = index
        self._where_dsn = redact_dsn(dsn)
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs=_connect_kwargs(connect_timeout_s),
            # A connection broken by a server restart is replaced on checkout instead of failing a request.
            check=ConnectionPool.check_connection,
            # Also how long a call waits while the server is down before it raises Unavailable.
            timeout=connect_timeout_s,
            # The pool retries a lost connection with exponential backoff; a short give-up lets the next call
            # start a fresh attempt instead, so service resumes within seconds of the server coming back.
            reconnect_timeout=connect_timeout_s * 2,
            name=f"pgvector-{index}",
            open=False,
        )
        self._pool.open(wait=False)

    def ensure_open(self) -> None:
        if self._pool.closed:
            raise IndexClosed(f"index {self._index!r} is closed")

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in a transaction: committed when the block succeeds, rolled back otherwise."""
        self.ensure_open()
        try:
            with self._pool.connection() as conn:
                yield conn
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

    @contextmanager
    def autocommit(self) -> Iterator[psycopg.Connection]:
        """A pooled connection outside any transaction block, for statements that may not run in one."""
        with self.transaction() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.autocommit = False
