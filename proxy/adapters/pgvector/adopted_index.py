"""`VectorIndex` over an application's own table and its vector column, served in place (the old leg).

Reads return what a direct query returns: the same rows, ids, scores and filters, with the text columns
joined as the models embed them and the metadata columns as strings. Versions come from Switchyard's changes
table (`adopted_table`): 1 for a row never written since adoption. The application writes the table itself,
so `upsert` and `delete` are refused; its writes reach the new model through the change feed.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from proxy.adapters.pgvector.adopted_ddl import describe, inspect_table, set_lock_timeout
from proxy.adapters.pgvector.adopted_reads import TableReads, render
from proxy.adapters.pgvector.adopted_table import AdoptedTable, TableConfig
from proxy.adapters.pgvector.connection import Connection, redact_dsn, setup_transaction
from proxy.adapters.pgvector.schema import OPERATORS, Space
from proxy.core.errors import ConfigError, FailedPrecondition
from proxy.core.model import IndexRecord, WriteResult
from proxy.core.ports import Change


class AdoptedTableIndex(TableReads):
    """The old leg of an adoption (see the module docstring); thread-safe."""

    def __init__(
        self,
        name: str,
        dim: int,
        dsn: str,
        *,
        table: TableConfig,
        vector_column: str,
        space: Space = "cosine",
        ef_search: int = 40,
        pool_size: int = 8,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._name, self._dim, self._space = name, dim, space
        self._where = redact_dsn(dsn)
        with setup_transaction(name, dsn, connect_timeout_s=connect_timeout_s) as conn:
            self._spec, facts = describe(conn, name, table, self._where)
        self._vector = sql.Identifier(vector_column)
        column = facts.columns.get(vector_column)
        # Gone once the migration retired it: the rows still feed the new model, nothing searches them.
        self._retired = column is None
        if column is not None and column.vector_dim != dim:
            raise ConfigError(
                f"index {name!r}: column {self._spec.qualified}.{vector_column} is {column.type}, but the model"
                f" gives {dim}-dimensional vectors; is `model` the one the application embedded with?"
            )
        self._sql = _Statements(self._spec, self._vector, space)
        self._open(
            self._sql, dsn, ef_search=ef_search, pool_size=pool_size, connect_timeout_s=connect_timeout_s
        )

    # ---- writes: the application's --------------------------------------------------------------------

    def upsert(self, records: Sequence[IndexRecord]) -> WriteResult:
        raise FailedPrecondition(
            f"index {self._name!r} serves the application's table {self._spec.qualified} in place: the"
            " application writes it directly, and Switchyard embeds what it writes with the new model through"
            " its trigger; send writes to the database, not through the proxy"
        )

    def delete(self, ids: Sequence[str], version: int) -> WriteResult:
        return self.upsert([])

    # ---- change feed -------------------------------------------------------------------------------------

    def pending_changes(self, limit: int) -> list[Change]:
        rows = self._pool.read(lambda c: c.execute(self._sql.pending, (limit,)).fetchall())
        return [Change(doc_id, int(version), bool(deleted)) for doc_id, version, deleted in rows]

    def settle(self, changes: Sequence[Change]) -> None:
        if changes:
            params = ([c.id for c in changes], [c.version for c in changes])
            self._pool.write(lambda c: c.execute(self._sql.settle, params))

    def pending_count(self) -> int:
        return self._scalar(self._sql.pending_count)

    def retire_vectors(self) -> bool:
        """Drops the old vector column and every index on it (see `adopted_ddl` for the locks)."""
        if self._retired:
            return False

        def drop(conn: Connection) -> None:
            set_lock_timeout(conn)
            facts = inspect_table(conn, self._spec.schema, self._spec.table)
            assert facts is not None
            column = self._vector.as_string()
            for index, definition in facts.indexes.items():
                if f"({column} " in definition or f"({column})" in definition:
                    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(index)))
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(self._spec.app, self._vector)
            )

        self._pool.write(drop)
        self._retired = True
        return True


class _Statements:
    """The old leg's statements, rendered once."""

    def __init__(self, t: AdoptedTable, vector: sql.Identifier, space: Space) -> None:
        self._t, self._vector, self._space = t, vector, space
        ids = sql.SQL("%s::text[]::{}[]").format(t.sql_type)
        document = sql.SQL(
            "SELECT t.{id}::text, coalesce(c.version, 1), {text}, {meta} FROM {app} t"
            " LEFT JOIN {changes} c ON c.id = t.{id}"
        ).format(
            id=t.id, text=t.text_expression(), meta=t.metadata_expression(), app=t.app, changes=t.changes
        )
        order = t.ordered_id()
        self.get = render(document + sql.SQL(" WHERE t.{id} = ANY({ids})").format(id=t.id, ids=ids))
        # A row written since adoption (or deleted: a tombstone) has its version in the changes table; any
        # other row of the table is at version 1.
        self.versions = render(
            sql.SQL(
                "WITH w(id) AS (SELECT unnest({ids})) SELECT w.id::text, coalesce(c.version, 1) FROM w"
                " LEFT JOIN {changes} c ON c.id = w.id"
                " WHERE c.id IS NOT NULL OR EXISTS (SELECT 1 FROM {app} t WHERE t.{id} = w.id)"
            ).format(changes=t.changes, ids=ids, id=t.id, app=t.app)
        )
        self.scan_first = render(document + sql.SQL(" ORDER BY {o} LIMIT %s").format(o=order))
        self.scan_after = render(
            document
            + sql.SQL(" WHERE {o} > %s::{type} ORDER BY {o} LIMIT %s").format(o=order, type=t.sql_type)
        )
        self.count = render(sql.SQL("SELECT count(*) FROM {}").format(t.app))
        self.max_version = render(
            sql.SQL("SELECT greatest(1, (SELECT max(version) FROM {}))").format(t.changes)
        )
        self.storage_bytes = render(
            sql.SQL("SELECT pg_total_relation_size({})").format(sql.Literal(t.app.as_string()))
        )
        self.pending = render(
            sql.SQL(
                "SELECT id::text, version, deleted FROM {} WHERE pending ORDER BY version LIMIT %s"
            ).format(t.changes)
        )
        self.settle = render(
            sql.SQL(
                "UPDATE {changes} c SET pending = false FROM unnest(%s::text[], %s::bigint[]) AS u(id, version)"
                " WHERE c.id = u.id::{type} AND c.version = u.version"
            ).format(changes=t.changes, type=t.sql_type)
        )
        self.pending_count = render(sql.SQL("SELECT count(*) FROM {} WHERE pending").format(t.changes))

    def nearest(self, include_text: bool, exact: bool, keys: tuple[str, ...]) -> bytes:
        t, op = self._t, sql.SQL(OPERATORS[self._space][0])
        statement = sql.SQL(
            "{exact}SELECT t.{id}::text, coalesce(c.version, 1), {text}, {meta}, t.{vec} {op} %(query)b"
            " FROM {app} t LEFT JOIN {changes} c ON c.id = t.{id}"
            " WHERE t.{vec} IS NOT NULL{filters} ORDER BY t.{vec} {op} %(query)b LIMIT %(k)s"
        ).format(
            exact=sql.SQL("/* exact */ " if exact else ""),
            id=t.id,
            text=t.text_expression() if include_text else sql.SQL("''"),
            meta=t.metadata_expression(),
            vec=self._vector,
            op=op,
            app=t.app,
            changes=t.changes,
            filters=t.filter_clause(keys),
        )
        return render(statement)
