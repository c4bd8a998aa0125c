"""`VectorIndex` on PostgreSQL with the pgvector extension: one table per index, an HNSW index on it.

Table (created when absent):
  id        text COLLATE "C" PRIMARY KEY  byte order = code point order = Python's str order, which the
                                          backfill's `scan` cursor relies on; the primary key index serves it
  version   bigint      compare-and-set guard: a row changes only to a higher version
  deleted   boolean     tombstone: kept so that an older write cannot recreate the id
  text      text
  metadata  jsonb       object of string values; a GIN index (jsonb_path_ops) serves `where` filters (@>)
  embedding vector(d)   NULL on tombstones, so they never enter the HNSW index

Every write is one INSERT ... ON CONFLICT DO UPDATE ... WHERE version < excluded.version per batch, in its own
transaction: the batch is atomic, and concurrent writers of one id serialize on its row lock, so the highest
version wins whatever the arrival order. A write is durable once it is acknowledged (committed), so `flush`
has nothing to do.

Connections come from a psycopg pool; the class keeps no other mutable state, so it is thread-safe.
Vectors travel in pgvector's text form ('[1.0,2.0]'), so no client-side type registration is needed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from proxy.core.errors import ConfigError, IndexClosed, Unavailable
from proxy.core.model import Hit, IndexRecord, Metadata, StoredDocument, Vector, WriteResult, checked_vector

Space = Literal["cosine", "ip"]

# HNSW indexes arrived in pgvector 0.5.0.
_MIN_PGVECTOR = (0, 5, 0)
# pgvector caps hnsw.ef_search here; an HNSW scan returns at most ef_search rows.
_MAX_EF_SEARCH = 1_000
# Leaves room for the suffixes of the index names within PostgreSQL's 63-byte identifier limit.
_MAX_TABLE_NAME = 48
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Serializes schema setup across processes: CREATE ... IF NOT EXISTS races with itself.
_SETUP_LOCK_KEY = 0x5357_5047  # "SWPG"
_WRITE_ATTEMPTS = 3

# Per space: the distance operator and the HNSW operator class (`_similarity` turns distance into score).
_OPERATORS: dict[str, tuple[str, str]] = {
    "cosine": ("<=>", "vector_cosine_ops"),
    "ip": ("<#>", "vector_ip_ops"),
}


def default_table(name: str) -> str:
    """The table an index uses unless configured: `switchyard_<name>`, made a safe, unique identifier."""
    base = re.sub(r"[^a-z0-9_]", "_", name.lower())
    if base != name or len(base) > 36:
        # Sanitizing can map two names to one base; a digest of the real name keeps their tables apart.
        base = f"{base[:27]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return f"switchyard_{base}"


def redact_dsn(dsn: str) -> str:
    """The DSN as key=value pairs with any password masked, for error messages and logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


class PgVectorIndex:
    """`VectorIndex` in a PostgreSQL table with pgvector (see the module docstring)."""

    def __init__(
        self,
        name: str,
        dim: int,
        dsn: str,
        *,
        table: str | None = None,
        space: Space = "cosine",
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 40,
        pool_size: int = 8,
        connect_timeout_s: float = 5.0,
    ) -> None:
        """Connects, creates the extension, table and indexes when absent, and checks an existing table.

        Raises Unavailable when the server cannot be reached, ConfigError when pgvector is missing or too old,
        or the table was made for another dim or space.
        """
        if dim <= 0:
            raise ValueError(f"index {name!r}: dim must be positive, got {dim}")
        if space not in _OPERATORS:
            raise ValueError(f"index {name!r}: space must be 'cosine' or 'ip', got {space!r}")
        self._name = name
        self._dim = dim
        self._space: Space = space
        self._table_name = table or default_table(name)
        _check_table_name(name, self._table_name)
        self._table = sql.Identifier(self._table_name)
        self._regclass = self._table.as_string()  # quoted, for `%s::regclass` parameters
        self._hnsw_index = sql.Identifier(f"{self._table_name}_embedding_hnsw")
        self._operator = sql.SQL(_OPERATORS[space][0])
        self._ef_search = ef_search
        self._where_dsn = redact_dsn(dsn)
        self._connect_timeout_s = connect_timeout_s
        self._setup(dsn, hnsw_m, hnsw_ef_construction)
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
            name=f"pgvector-{name}",
            open=False,
        )
        self._pool.open(wait=False)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def in_process(self) -> bool:
        return False

    @property
    def table(self) -> str:
        return self._table_name

    # ---- writes -------------------------------------------------------------------------------------------

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        # Every vector is checked before anything is written: a bad batch changes nothing.
        vectors = [self._checked_vector(r.vector, f"document {r.id!r}") for r in records]
        for record in records:
            self._check_no_nul(record)
        winners = _latest_per_id(records)
        if not winners:
            return WriteResult()
        ordered = sorted(winners.values(), key=lambda position: records[position].id)
        query = sql.SQL(
            "INSERT INTO {t} AS t (id, version, deleted, text, metadata, embedding)"
            " SELECT u.id, u.version, false, u.text, u.metadata, u.embedding::vector"
            " FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::jsonb[], %s::text[])"
            "  AS u(id, version, text, metadata, embedding)"
            # Rows are locked in id order, so two overlapping batches cannot deadlock each other.
            " ORDER BY u.id"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = false,"
            "  text = excluded.text, metadata = excluded.metadata, embedding = excluded.embedding"
            # Version CAS: a late backfill or re-embed must not overwrite a newer write or revive a tombstone.
            " WHERE t.version < excluded.version"
            " RETURNING id"
        ).format(t=self._table)
        params = (
            [records[i].id for i in ordered],
            [records[i].version for i in ordered],
            [records[i].text for i in ordered],
            [json.dumps(records[i].metadata) for i in ordered],
            [_vector_text(vectors[i]) for i in ordered],
        )
        written = self._write(query, params)
        return _outcome(records, winners, written)

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        unique = sorted(dict.fromkeys(ids))
        if not unique:
            return WriteResult()
        query = sql.SQL(
            "INSERT INTO {t} AS t (id, version, deleted, text, metadata, embedding)"
            " SELECT u.id, %s, true, '', '{{}}', NULL FROM unnest(%s::text[]) AS u(id) ORDER BY u.id"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = true,"
            "  text = '', metadata = '{{}}', embedding = NULL"
            " WHERE t.version < excluded.version"
            " RETURNING id"
        ).format(t=self._table)
        written = self._write(query, (version, unique))
        ordered = list(dict.fromkeys(ids))
        return WriteResult(
            written=tuple(i for i in ordered if i in written),
            stale=tuple(i for i in ordered if i not in written),
        )

    def _write(self, query: sql.Composed, params: Sequence[Any]) -> set[str]:
        """Runs one write statement in its own transaction; returns the ids it changed."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._transaction() as conn:
                    return {row[0] for row in conn.execute(query, params)}
            except psycopg.errors.DeadlockDetected:
                # Id-ordered locking prevents deadlocks between our own batches; another client of the table
                # may still cause one. The transaction was rolled back whole, so running it again is safe.
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        query = sql.SQL(
            "SELECT id, version, text, metadata FROM {t} WHERE id = ANY(%s::text[]) AND NOT deleted"
        ).format(t=self._table)
        with self._transaction() as conn:
            found = {row[0]: _document(row) for row in conn.execute(query, (list(ids),))}
        return [found[doc_id] for doc_id in ids if doc_id in found]

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        query = sql.SQL("SELECT id, version FROM {t} WHERE id = ANY(%s::text[])").format(t=self._table)
        with self._transaction() as conn:
            return {doc_id: int(version) for doc_id, version in conn.execute(query, (list(ids),))}

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        # The id column's "C" collation makes this the order of Python strings. Two statements rather than
        # `(%s IS NULL OR id > %s)`: a prepared generic plan could not use the primary key for that OR, and
        # would read the whole table for every page.
        after = sql.SQL("") if after_id is None else sql.SQL(" AND id > %s")
        query = sql.SQL(
            "SELECT id, version, text, metadata FROM {t} WHERE NOT deleted{after} ORDER BY id LIMIT %s"
        ).format(t=self._table, after=after)
        params = (limit,) if after_id is None else (after_id, limit)
        with self._transaction() as conn:
            return [_document(row) for row in conn.execute(query, params)]

    def search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None = None,
        *,
        include_text: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        with self._transaction() as conn:
            # An HNSW scan yields at most ef_search rows, before the `where` filter and the tombstone check.
            ef_search = min(max(self._ef_search, k), _MAX_EF_SEARCH)
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
            if timeout_s is not None:
                # The fan-out stops waiting for this leg at its deadline; the server then stops working on it.
                milliseconds = max(1, round(timeout_s * 1000))
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{milliseconds}ms",))
            try:
                hits = self._nearest(conn, query, k, where, include_text)
            except psycopg.errors.QueryCanceled as exc:
                if timeout_s is None:
                    raise  # cancelled from outside (pg_cancel_backend), not by this search's deadline
                raise TimeoutError(
                    f"pgvector index {self._name!r}: the search ran past its {milliseconds} ms deadline"
                ) from exc
        if len(hits) < k:
            # Short: either fewer than k documents match, or the filter dropped too many of the graph's
            # candidates (pgvector filters after the index scan). The exact answer is right in both cases.
            return self.exact_search(query, k, where, include_text=include_text)
        return hits

    def exact_search(
        self, vector: Vector, k: int, where: Metadata | None = None, *, include_text: bool = False
    ) -> list[Hit]:
        query = self._checked_vector(vector, "the query")
        if k <= 0:
            return []
        with self._transaction() as conn:
            # Without index scans the planner can only read every matching row and sort: brute force.
            conn.execute("SET LOCAL enable_indexscan = off")
            return self._nearest(conn, query, k, where, include_text)

    def _nearest(
        self, conn: psycopg.Connection, query: Vector, k: int, where: Metadata | None, include_text: bool
    ) -> list[Hit]:
        filter_sql = sql.SQL(" AND metadata @> %s::jsonb") if where else sql.SQL("")
        statement = sql.SQL(
            "SELECT id, version, {text}, metadata, embedding {op} %s::vector AS distance FROM {t}"
            " WHERE embedding IS NOT NULL{filter} ORDER BY embedding {op} %s::vector LIMIT %s"
        ).format(
            t=self._table,
            op=self._operator,
            filter=filter_sql,
            text=sql.SQL("text" if include_text else "''"),
        )
        vector_text = _vector_text(query)
        params: list[Any] = [vector_text, *([json.dumps(where)] if where else []), vector_text, k]
        return [self._hit(row) for row in conn.execute(statement, params)]

    def _hit(self, row: tuple[Any, ...]) -> Hit:
        doc_id, version, text, metadata, distance = row
        return Hit(
            id=doc_id,
            score=self._similarity(float(distance)),
            version=int(version),
            metadata=metadata,
            text=text,
            index=self._name,
        )

    def _similarity(self, distance: float) -> float:
        if math.isnan(distance):
            return 0.0  # cosine distance to a zero vector is undefined; rank it as unrelated
        # `<=>` is 1 - cosine similarity; `<#>` is the negated inner product (so ascending order is best first).
        return 1.0 - distance if self._space == "cosine" else -distance

    def count(self) -> int:
        return self._scalar(sql.SQL("SELECT count(*) FROM {t} WHERE NOT deleted").format(t=self._table))

    def max_version(self) -> int:
        return self._scalar(sql.SQL("SELECT COALESCE(max(version), 0) FROM {t}").format(t=self._table))

    def storage_bytes(self) -> int:
        """Table, TOAST and every index on it, as PostgreSQL accounts them."""
        return self._scalar(
            sql.SQL("SELECT pg_total_relation_size({name}::regclass)").format(
                name=sql.Literal(self._regclass)
            )
        )

    def _scalar(self, query: sql.Composed) -> int:
        with self._transaction() as conn:
            row = conn.execute(query).fetchone()
        assert row is not None, "an aggregate always returns one row"
        return int(row[0])

    # ---- space ---------------------------------------------------------------------------------------------

    def dead_fraction(self) -> float:
        """Share of the table's row versions that are dead: old versions of updated and deleted documents.

        From PostgreSQL's statistics: cheap, but approximate, and several seconds behind the writes at times (a
        server process reports its counts when it goes idle). A tombstone row counts as live: it must stay.
        """
        query = "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass"
        with self._transaction() as conn:
            row = conn.execute(query, (self._regclass,)).fetchone()
        live, dead = (0, 0) if row is None else (int(row[0]), int(row[1]))
        return 0.0 if live + dead == 0 else dead / (live + dead)

    def compact(self) -> int:
        """Vacuums the table and rebuilds its HNSW index; returns storage_bytes before minus after.

        VACUUM makes dead rows' space reusable (it gives back only empty pages at the end of the table) and
        REINDEX CONCURRENTLY rebuilds the graph from the live rows alone. Neither blocks searches or writes;
        unlike VACUUM FULL, which would. Concurrent compactions of one table, from any process, take turns.
        """
        before = self.storage_bytes()
        with self._autocommit() as conn:  # neither statement may run inside a transaction block
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_SETUP_LOCK_KEY, self._table_name))
            try:
                conn.execute(sql.SQL("VACUUM (ANALYZE) {t}").format(t=self._table))
                conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {i}").format(i=self._hnsw_index))
            finally:
                # A session lock outlives the statement; the connection goes back to the pool still holding it.
                conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_SETUP_LOCK_KEY, self._table_name)
                )
        return before - self.storage_bytes()

    @contextmanager
    def _autocommit(self) -> Iterator[psycopg.Connection]:
        with self._transaction() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.autocommit = False

    # ---- durability and lifecycle -------------------------------------------------------------------------

    def flush(self) -> None:
        """Nothing to do: every acknowledged write is a committed, durable transaction."""
        self._ensure_open()

    def close(self) -> None:
        self._pool.close()

    def drop(self) -> None:
        """Drops the table with its indexes, then closes: for tests, and for an index that was retired."""
        with self._transaction() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=self._table))
        self.close()

    def _ensure_open(self) -> None:
        if self._pool.closed:
            raise IndexClosed(f"index {self._name!r} is closed")

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in a transaction: committed when the block succeeds, rolled back otherwise."""
        self._ensure_open()
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolClosed as exc:
            raise IndexClosed(f"index {self._name!r} is closed") from exc
        except PoolTimeout as exc:
            raise self._unavailable(
                "no connection to PostgreSQL became free or could be made in time"
            ) from exc
        except psycopg.OperationalError as exc:
            if isinstance(exc, psycopg.errors.TransactionRollbackError | psycopg.errors.QueryCanceled):
                raise
            raise self._unavailable(str(exc)) from exc

    def _unavailable(self, reason: str) -> Unavailable:
        return Unavailable(
            f"pgvector index {self._name!r}: cannot reach PostgreSQL at {self._where_dsn}"
            f" ({' '.join(reason.split())}); check that the server is running and accepts connections at that"
            " host and port, and that the DSN's user, password and database are right"
        )

    # ---- opening ------------------------------------------------------------------------------------------

    def _setup(self, dsn: str, m: int, ef_construction: int) -> None:
        try:
            conn = psycopg.connect(dsn, **_connect_kwargs(self._connect_timeout_s))
        except psycopg.OperationalError as exc:
            raise self._unavailable(str(exc)) from exc
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"pgvector index {self._name!r}: invalid DSN: {exc}") from None
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK_KEY,))
                self._ensure_extension(conn)
                self._ensure_table(conn, m, ef_construction)
        except psycopg.OperationalError as exc:
            raise self._unavailable(str(exc)) from exc
        finally:
            conn.close()

    def _ensure_extension(self, conn: psycopg.Connection) -> None:
        version = _extension_version(conn)
        if version is None:
            try:
                with conn.transaction():  # a savepoint: a failure leaves the outer transaction usable
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise self._extension_error(exc) from None
            version = _extension_version(conn) or "0"
        if _version_tuple(version) < _MIN_PGVECTOR:
            raise ConfigError(
                f"pgvector index {self._name!r}: the server at {self._where_dsn} has pgvector {version};"
                " HNSW indexes need 0.5.0 or later (ALTER EXTENSION vector UPDATE after upgrading pgvector)"
            )

    def _extension_error(self, exc: psycopg.Error) -> ConfigError:
        failed = f"pgvector index {self._name!r}: CREATE EXTENSION vector failed on {self._where_dsn}"
        reason = " ".join(str(exc).split())
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return ConfigError(
                f"{failed} ({reason}). pgvector is installed there, but this user may not create the"
                " extension: have a superuser run `CREATE EXTENSION vector` in that database once."
            )
        return ConfigError(
            f"{failed} ({reason}). pgvector is not installed on that server: install it"
            " (https://github.com/pgvector/pgvector; packages such as postgresql-<major>-pgvector come from"
            " apt.postgresql.org, not Debian) and run `CREATE EXTENSION vector`. For tests,"
            " scripts/ensure-pgvector.sh starts a local server that has it."
        )

    def _ensure_table(self, conn: psycopg.Connection, m: int, ef_construction: int) -> None:
        opclass = sql.SQL(_OPERATORS[self._space][1])
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} ("
                ' id text COLLATE "C" PRIMARY KEY,'
                " version bigint NOT NULL,"
                " deleted boolean NOT NULL,"
                " text text NOT NULL,"
                " metadata jsonb NOT NULL,"
                " embedding vector({dim}))"
            ).format(t=self._table, dim=sql.Literal(self._dim))
        )
        self._check_existing_table(conn)
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {name} ON {t} USING hnsw (embedding {opclass})"
                " WITH (m = {m}, ef_construction = {ef})"
            ).format(
                name=self._hnsw_index,
                t=self._table,
                opclass=opclass,
                m=sql.Literal(m),
                ef=sql.Literal(ef_construction),
            )
        )
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON {t} USING gin (metadata jsonb_path_ops)").format(
                name=sql.Identifier(f"{self._table_name}_metadata_gin"), t=self._table
            )
        )

    def _check_existing_table(self, conn: psycopg.Connection) -> None:
        row = conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
            (self._regclass,),
        ).fetchone()
        found_dim = None if row is None else int(row[0])
        if found_dim != self._dim:
            raise ConfigError(
                f"pgvector index {self._name!r}: table {self._table_name} holds vectors of dim {found_dim},"
                f" but the index is opened with dim {self._dim} (its model's dim); configure another table"
                " for this model, or drop that table"
            )
        spaces = {
            name
            for name, (_, opclass) in _OPERATORS.items()
            if opclass in _hnsw_opclasses(conn, self._regclass)
        }
        if spaces and self._space not in spaces:
            raise ConfigError(
                f"pgvector index {self._name!r}: table {self._table_name} has an HNSW index for space"
                f" {', '.join(sorted(spaces))}, but the index is opened with space {self._space}"
            )

    def _check_no_nul(self, record: IndexRecord) -> None:
        # PostgreSQL's text and jsonb cannot hold U+0000; refusing up front keeps the batch all-or-nothing
        # with the same ValueError as any other bad record, instead of a driver error halfway through.
        fields = [record.id, record.text, *record.metadata, *record.metadata.values()]
        if any("\x00" in field for field in fields):
            raise ValueError(
                f"index {self._name!r}: document {record.id!r} has a NUL character, which PostgreSQL cannot store"
            )

    def _checked_vector(self, vector: Vector, what: str) -> Vector:
        return checked_vector(vector, self._dim, self._name, what)


def _check_table_name(index: str, table: str) -> None:
    if not _TABLE_NAME.fullmatch(table) or len(table) > _MAX_TABLE_NAME:
        raise ConfigError(
            f"pgvector index {index!r}: table name {table!r} must be letters, digits and underscores,"
            f" not starting with a digit, at most {_MAX_TABLE_NAME} characters"
        )


def _connect_kwargs(timeout_s: float) -> dict[str, Any]:
    # libpq's connect_timeout is whole seconds, and values below 2 are raised to 2.
    return {"connect_timeout": max(2, math.ceil(timeout_s)), "application_name": "switchyard"}


def _extension_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return None if row is None else str(row[0])


def _hnsw_opclasses(conn: psycopg.Connection, regclass: str) -> set[str]:
    rows = conn.execute(
        "SELECT opc.opcname FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = c.relam"
        " JOIN pg_opclass opc ON opc.oid = i.indclass[0]"
        " WHERE i.indrelid = %s::regclass AND am.amname = 'hnsw'",
        (regclass,),
    )
    return {name for (name,) in rows}


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _latest_per_id(records: Sequence[IndexRecord]) -> dict[str, int]:
    """Position of the record each id's write comes down to: its highest version, the first one on a tie.

    One INSERT ... ON CONFLICT cannot change a row twice, so a batch naming an id twice sends one record."""
    winners: dict[str, int] = {}
    for position, record in enumerate(records):
        current = winners.get(record.id)
        if current is None or record.version > records[current].version:
            winners[record.id] = position
    return winners


def _outcome(records: Sequence[IndexRecord], winners: dict[str, int], written: set[str]) -> WriteResult:
    """Per record: written when it is its id's winner and the statement changed that id; stale otherwise."""
    won = [winners[r.id] == position and r.id in written for position, r in enumerate(records)]
    return WriteResult(
        written=tuple(r.id for r, ok in zip(records, won, strict=True) if ok),
        stale=tuple(r.id for r, ok in zip(records, won, strict=True) if not ok),
    )


def _vector_text(vector: Vector) -> str:
    # repr of a float32 widened to float64 parses back to the same float32: no precision is lost.
    return "[" + ",".join(map(repr, vector.tolist())) + "]"


def _document(row: tuple[Any, ...]) -> StoredDocument:
    doc_id, version, text, metadata = row
    return StoredDocument(id=doc_id, version=int(version), text=text, metadata=metadata)
