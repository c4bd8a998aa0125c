"""An index's table and what belongs to it: names, DDL, and the checks that an existing table fits.

Table (created when absent):
  id        text COLLATE "C" PRIMARY KEY  byte order = code point order = Python's str order, which the
                                          backfill's `scan` cursor relies on; the primary key index serves it
  version   bigint      compare-and-set guard: a row changes only to a higher version
  deleted   boolean     tombstone: kept so that an older write cannot recreate the id
  text      text
  metadata  jsonb       object of string values; a GIN index (jsonb_path_ops) serves `where` filters (@>)
  embedding vector(d)   NULL on tombstones, so they never enter the HNSW index
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from proxy.core.errors import ConfigError

Space = Literal["cosine", "ip"]

# HNSW indexes arrived in pgvector 0.5.0.
_MIN_PGVECTOR = (0, 5, 0)
# Leaves room for the suffixes of the index names within PostgreSQL's 63-byte identifier limit.
_MAX_TABLE_NAME = 48
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Serializes schema setup across processes: CREATE ... IF NOT EXISTS races with itself.
SETUP_LOCK_KEY = 0x5357_5047  # "SWPG"

# Per space: the distance operator and the HNSW operator class (`rows.similarity` turns distance into score).
OPERATORS: dict[str, tuple[str, str]] = {
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


def check_table_name(index: str, table: str) -> None:
    if not _TABLE_NAME.fullmatch(table) or len(table) > _MAX_TABLE_NAME:
        raise ConfigError(
            f"pgvector index {index!r}: table name {table!r} must be letters, digits and underscores,"
            f" not starting with a digit, at most {_MAX_TABLE_NAME} characters"
        )


@dataclass(frozen=True)
class IndexTable:
    """The table of one index (its name already checked), and the vectors it holds."""

    index: str  # the VectorIndex's name, for messages
    name: str
    dim: int
    space: Space

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.name)

    @property
    def regclass(self) -> str:
        """The quoted name, for `%s::regclass` parameters."""
        return self.identifier.as_string()

    @property
    def hnsw_index_name(self) -> str:
        return f"{self.name}_embedding_hnsw"

    @property
    def hnsw_index(self) -> sql.Identifier:
        return sql.Identifier(self.hnsw_index_name)

    @property
    def metadata_index(self) -> sql.Identifier:
        return sql.Identifier(f"{self.name}_metadata_gin")

    @property
    def distance_operator(self) -> sql.SQL:
        return sql.SQL(OPERATORS[self.space][0])


def ensure_schema(
    conn: psycopg.Connection,
    table: IndexTable,
    *,
    where_dsn: str,
    hnsw_m: int,
    hnsw_ef_construction: int,
    defer_hnsw: bool = False,
) -> None:
    """Creates the extension, table and indexes when absent, and checks an existing table; in `conn`'s
    transaction, which the setup lock is held for.

    `defer_hnsw`: a table without its HNSW index is left without it (a new one is created so), for a bulk
    backfill that builds it at the end (`deferred`); an index that exists is kept."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY,))
    _ensure_extension(conn, table.index, where_dsn)
    _ensure_table(conn, table, hnsw_m, hnsw_ef_construction, defer_hnsw)


def _ensure_extension(conn: psycopg.Connection, index: str, where_dsn: str) -> None:
    version = _extension_version(conn)
    if version is None:
        try:
            with conn.transaction():  # a savepoint: a failure leaves the outer transaction usable
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise _extension_error(exc, index, where_dsn) from None
        version = _extension_version(conn) or "0"
    if _version_tuple(version) < _MIN_PGVECTOR:
        raise ConfigError(
            f"pgvector index {index!r}: the server at {where_dsn} has pgvector {version};"
            " HNSW indexes need 0.5.0 or later (ALTER EXTENSION vector UPDATE after upgrading pgvector)"
        )


def _extension_error(exc: psycopg.Error, index: str, where_dsn: str) -> ConfigError:
    failed = f"pgvector index {index!r}: CREATE EXTENSION vector failed on {where_dsn}"
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


def _ensure_table(
    conn: psycopg.Connection, table: IndexTable, m: int, ef_construction: int, defer_hnsw: bool
) -> None:
    opclass = sql.SQL(OPERATORS[table.space][1])
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} ("
            ' id text COLLATE "C" PRIMARY KEY,'
            " version bigint NOT NULL,"
            " deleted boolean NOT NULL,"
            " text text NOT NULL,"
            " metadata jsonb NOT NULL,"
            " embedding vector({dim}))"
        ).format(t=table.identifier, dim=sql.Literal(table.dim))
    )
    _check_existing_table(conn, table)
    # CREATE INDEX takes a SHARE lock on the table even when IF NOT EXISTS then finds the index, and that
    # lock waits for every writer and for a CONCURRENTLY build (`deferred`), which can run for minutes: a
    # sidecar starting beside one would hang. The catalog says whether an index exists without a table lock.
    if not defer_hnsw and not _index_exists(conn, table.hnsw_index):
        _create_hnsw(conn, table, opclass, m, ef_construction)
    if not _index_exists(conn, table.metadata_index):
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON {t} USING gin (metadata jsonb_path_ops)").format(
                name=table.metadata_index, t=table.identifier
            )
        )


def _index_exists(conn: psycopg.Connection, index: sql.Identifier) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (index.as_string(),)).fetchone()
    return bool(row and row[0])


def _create_hnsw(
    conn: psycopg.Connection, table: IndexTable, opclass: sql.SQL, m: int, ef_construction: int
) -> None:
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {t} USING hnsw (embedding {opclass})"
            " WITH (m = {m}, ef_construction = {ef})"
        ).format(
            name=table.hnsw_index,
            t=table.identifier,
            opclass=opclass,
            m=sql.Literal(m),
            ef=sql.Literal(ef_construction),
        )
    )


def _check_existing_table(conn: psycopg.Connection, table: IndexTable) -> None:
    row = conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
        (table.regclass,),
    ).fetchone()
    found_dim = None if row is None else int(row[0])
    if found_dim != table.dim:
        raise ConfigError(
            f"pgvector index {table.index!r}: table {table.name} holds vectors of dim {found_dim},"
            f" but the index is opened with dim {table.dim} (its model's dim); configure another table"
            " for this model, or drop that table"
        )
    spaces = {
        name for name, (_, opclass) in OPERATORS.items() if opclass in _hnsw_opclasses(conn, table.regclass)
    }
    if spaces and table.space not in spaces:
        raise ConfigError(
            f"pgvector index {table.index!r}: table {table.name} has an HNSW index for space"
            f" {', '.join(sorted(spaces))}, but the index is opened with space {table.space}"
        )


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
