"""What adoption adds beside an application's table, as statements to print and run, and what it reads of
the table first (`TableFacts`).

Locks (PostgreSQL's own rules; every statement runs under `lock_timeout`, so it gives up rather than queue
the application's writes behind a long transaction):
- CREATE SEQUENCE / CREATE TABLE / CREATE INDEX on the new, empty Switchyard tables: no lock on the
  application's table.
- CREATE OR REPLACE TRIGGER: SHARE ROW EXCLUSIVE on the application's table for the statement's few
  milliseconds; reads go on, writes wait that long (PostgreSQL 14 or later).
- At retirement, DROP INDEX CONCURRENTLY of the old vector index (no blocking lock), then ALTER TABLE ... DROP
  COLUMN: ACCESS EXCLUSIVE for a catalog change only (milliseconds, no rewrite); the column's space comes back
  as rows are rewritten by later updates, or at once with VACUUM FULL / pg_repack.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from proxy.adapters.pgvector.adopted_table import AdoptedTable, IdType, TableConfig
from proxy.adapters.pgvector.schema import OPERATORS, Space
from proxy.core.errors import ConfigError

LOCK_TIMEOUT = "5s"


def tracking_statements(t: AdoptedTable) -> list[sql.Composed]:
    """The version sequence, the changes table and the triggers that fill it."""
    texts = [t.id, *(sql.Identifier(c) for c in t.text_columns)]
    changed = sql.SQL(" OR ").join(
        sql.SQL("OLD.{c} IS DISTINCT FROM NEW.{c}").format(c=column) for column in texts
    )
    return [
        sql.SQL("CREATE SEQUENCE IF NOT EXISTS {seq} AS bigint START 2").format(seq=t.sequence),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {changes} (id {type} PRIMARY KEY, version bigint NOT NULL,"
            " deleted boolean NOT NULL, pending boolean NOT NULL DEFAULT true)"
        ).format(changes=t.changes, type=t.sql_type),
        sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON {changes} (version) WHERE pending").format(
            name=sql.Identifier(f"switchyard_{t.table}_pending"), changes=t.changes
        ),
        _track_function(t),
        # CREATE OR REPLACE (PostgreSQL 14+), not DROP + CREATE: dropping an existing trigger would take ACCESS
        # EXCLUSIVE on the application's table, blocking its reads too, when an adoption is applied again.
        sql.SQL(
            "CREATE OR REPLACE TRIGGER switchyard_track_writes AFTER INSERT OR DELETE ON {app}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()"
        ).format(app=t.app, fn=t.function),
        sql.SQL(
            "CREATE OR REPLACE TRIGGER switchyard_track_text AFTER UPDATE OF {columns} ON {app}"
            " FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {fn}()"
        ).format(columns=sql.SQL(", ").join(texts), app=t.app, changed=changed, fn=t.function),
    ]


def _track_function(t: AdoptedTable) -> sql.Composed:
    def record(row: str, deleted: bool) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {changes} (id, version, deleted) VALUES ({row}.{id}, nextval({seq}), {deleted})"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted,"
            " pending = true;"
        ).format(
            changes=t.changes,
            row=sql.SQL(row),
            id=t.id,
            seq=sql.Literal(t.sequence.as_string()),
            deleted=sql.Literal(deleted),
        )

    # A changed key is the old row deleted and a new one inserted. SECURITY DEFINER: it runs as its owner (who
    # adopted the table and owns the changes table and sequence), so every role that writes the application's
    # table, today's and those granted later, can go on writing it without grants on Switchyard's objects;
    # every name in it is schema-qualified, and the search_path is pinned against objects planted elsewhere.
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS $switchyard$\n"
        "BEGIN\n"
        "  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.{id} IS DISTINCT FROM NEW.{id}) THEN\n"
        "    {old_gone}\n"
        "  END IF;\n"
        "  IF TG_OP <> 'DELETE' THEN\n"
        "    {new_row}\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$switchyard$"
    ).format(fn=t.function, id=t.id, old_gone=record("OLD", True), new_row=record("NEW", False))


def side_table_statements(
    t: AdoptedTable, side: sql.Identifier, index: sql.Identifier, dim: int, space: Space, m: int, ef: int
) -> list[sql.Composed]:
    """The new model's table beside the application's: ids and vectors only, never a copy of the rows.

    Its HNSW index is made with the empty table, at once: the new leg serves its vectors as they arrive (a
    query for a document the backfill has not reached falls back to the old leg, as for every migration),
    at the price of inserting through the graph (see README, "Adopting a table")."""
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {side} (id {type} PRIMARY KEY, version bigint NOT NULL,"
            " deleted boolean NOT NULL DEFAULT false, embedding vector({dim}))"
        ).format(side=side, type=t.sql_type, dim=sql.Literal(dim)),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {index} ON {side} USING hnsw (embedding {ops})"
            " WITH (m = {m}, ef_construction = {ef})"
        ).format(
            index=index, side=side, ops=sql.SQL(OPERATORS[space][1]), m=sql.Literal(m), ef=sql.Literal(ef)
        ),
    ]


def set_lock_timeout(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    """As format_type() prints it: `bigint`, `text`, `vector(384)`..."""
    not_null: bool

    @property
    def vector_dim(self) -> int | None:
        if self.type.startswith("vector(") and self.type.endswith(")"):
            return int(self.type[len("vector(") : -1])
        return None


@dataclass(frozen=True)
class TableFacts:
    schema: str
    table: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    indexes: dict[str, str]
    """Index name -> its definition (pg_get_indexdef)."""
    triggers: tuple[str, ...]
    rows_estimate: int
    total_bytes: int


def inspect_table(conn: psycopg.Connection, schema: str, table: str) -> TableFacts | None:
    """The table's columns, key, indexes, triggers and size from the catalogs; None when there is no such table."""
    row = conn.execute("SELECT to_regclass(%s)::oid", (sql.Identifier(schema, table).as_string(),)).fetchone()
    if row is None or row[0] is None:
        return None
    oid = row[0]
    columns = {
        name: Column(name, kind, bool(not_null))
        for name, kind, not_null in conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
            " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        )
    }
    key = conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s AND i.indisprimary",
        (oid,),
    ).fetchone()
    indexes: dict[str, str] = dict(
        conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s",
            (oid,),
        )
    )
    triggers = tuple(
        r[0]
        for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal", (oid,))
    )
    sizes = conn.execute(
        "SELECT greatest(reltuples, 0)::bigint, pg_total_relation_size(oid) FROM pg_class WHERE oid = %s",
        (oid,),
    ).fetchone()
    assert sizes is not None
    return TableFacts(
        schema,
        table,
        columns,
        tuple(key[0] or ()) if key else (),
        indexes,
        triggers,
        int(sizes[0]),
        int(sizes[1]),
    )


def id_type_of(column_type: str) -> IdType | None:
    """The id type Switchyard handles a key column of this type as; None when it cannot."""
    for id_type in ("bigint", "integer", "smallint", "text", "uuid"):
        if column_type == id_type:
            return id_type
    return "text" if column_type.startswith("character varying") else None


def describe(
    conn: psycopg.Connection, index: str, config: TableConfig, where: str, *, need_tracking: bool = True
) -> tuple[AdoptedTable, TableFacts]:
    """The adopted table's spec (its id type read from the catalog) and facts; ConfigError says what is missing:
    the table, a column, or Switchyard's triggers (`need_tracking`)."""
    qualified = f"{config.schema}.{config.table}"
    facts = inspect_table(conn, config.schema, config.table)
    if facts is None:
        raise ConfigError(f"index {index!r}: no table {qualified} on {where}")
    wanted = (config.id_column, *config.text_columns, *config.metadata_columns)
    missing = [c for c in wanted if c not in facts.columns]
    if missing:
        raise ConfigError(f"index {index!r}: table {qualified} has no column {', '.join(missing)}")
    key_type = facts.columns[config.id_column].type
    id_type = id_type_of(key_type)
    if id_type is None:
        raise ConfigError(
            f"index {index!r}: id column {config.id_column} is {key_type}; supported: bigint, integer,"
            " smallint, text, varchar, uuid"
        )
    if need_tracking and "switchyard_track_writes" not in facts.triggers:
        raise ConfigError(
            f"index {index!r}: table {qualified} is not adopted yet (Switchyard's triggers are missing):"
            " run `switchyard adopt ... --apply` first"
        )
    spec = AdoptedTable(
        config.schema, config.table, config.id_column, id_type, config.text_columns, config.metadata_columns
    )
    return spec, facts


def install_tracking(conn: psycopg.Connection, spec: AdoptedTable) -> list[str]:
    """Creates the changes table, its sequence and the triggers, in `conn`'s transaction (all or nothing);
    returns the statements as run."""
    set_lock_timeout(conn)
    statements = tracking_statements(spec)
    for statement in statements:
        conn.execute(statement)
    return [s.as_string(conn) for s in statements]
