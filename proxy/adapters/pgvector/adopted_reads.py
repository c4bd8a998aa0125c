"""What both legs of an adoption read the same way: documents joined with the application's table, versions,
scans in key order, and k-NN with the same filters, deadline and exact fallback as an index of Switchyard's own.

A subclass sets `_name`, `_dim`, `_space`, `_spec`, `_pool` and `_statements` (`LegStatements`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from psycopg import sql

from proxy.adapters.pgvector.adopted_table import AdoptedTable
from proxy.adapters.pgvector.connection import IndexConnectionPool
from proxy.adapters.pgvector.queries import (
    bounded_ef_search,
    run_with_settings,
    search_deadline,
    search_settings,
)
from proxy.adapters.pgvector.rows import hit, stored_document
from proxy.adapters.pgvector.schema import Space
from proxy.core.errors import Unavailable
from proxy.core.model import Hit, Metadata, StoredDocument, Vector, checked_vector

DEFAULT_EF_SEARCH = 40


def render(statement: sql.Composable) -> bytes:
    """Rendered once, when the index opens: names are checked ASCII identifiers, the same in every encoding."""
    return statement.as_bytes(None)


class LegStatements(Protocol):
    get: bytes
    versions: bytes
    scan_first: bytes
    scan_after: bytes
    count: bytes
    max_version: bytes
    storage_bytes: bytes

    def nearest(self, include_text: bool, exact: bool, keys: tuple[str, ...]) -> bytes: ...


class TableReads:
    _name: str
    _dim: int
    _space: Space
    _spec: AdoptedTable
    _pool: IndexConnectionPool
    _statements: LegStatements
    _ef_search: int = DEFAULT_EF_SEARCH
    _retired: bool = False
    _nearest: dict[tuple[bool, bool, tuple[str, ...]], bytes]

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
    def spec(self) -> AdoptedTable:
        return self._spec

    def id_key(self, doc_id: str) -> tuple[int, str]:
        return self._spec.id_key(doc_id)

    def _open(
        self, statements: LegStatements, dsn: str, *, ef_search: int, pool_size: int, connect_timeout_s: float
    ) -> None:
        """Sets the statements and opens the pool: the last step of a subclass's constructor."""
        self._statements = statements
        self._nearest = {}
        self._ef_search = bounded_ef_search(ef_search)
        self._pool = IndexConnectionPool(
            self._name,
            dsn,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            # Set once per connection; a search for more neighbours raises it for its own statement.
            settings={"hnsw.ef_search": str(self._ef_search)},
        )

    # ---- space and lifecycle: the table is the application's, nothing to compact ---------------------

    def compact(self) -> int:
        return 0

    def dead_fraction(self) -> float:
        return 0.0

    def flush(self) -> None:
        """Nothing to do: every acknowledged write is a committed transaction."""
        self._pool.ensure_open()

    def close(self) -> None:
        self._pool.close()

    # ---- reads ----------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        wanted = self._parsed(ids)
        if not wanted:
            return []
        rows = self._pool.read(lambda c: c.execute(self._statements.get, (list(wanted),)).fetchall())
        found = {row[0]: stored_document(row) for row in rows}
        return [found[wanted[i]] for i in ids if i in wanted and wanted[i] in found]

    def versions(self, ids: Sequence[str], *, for_query: bool = False) -> dict[str, int]:
        wanted = self._parsed(ids)
        if not wanted:
            return {}
        rows = self._pool.read(lambda c: c.execute(self._statements.versions, (list(wanted),)).fetchall())
        found = {doc_id: int(version) for doc_id, version in rows}
        return {i: found[wanted[i]] for i in ids if i in wanted and wanted[i] in found}

    def scan(self, after_id: str | None, limit: int) -> list[StoredDocument]:
        params: tuple[Any, ...]
        if after_id is None:
            query, params = self._statements.scan_first, (limit,)
        else:
            query, params = self._statements.scan_after, (after_id, limit)
        return [stored_document(r) for r in self._pool.read(lambda c: c.execute(query, params).fetchall())]

    def search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None = None,
        *,
        include_text: bool = False,
        timeout_s: float | None = None,
    ) -> list[Hit]:
        settings = search_settings(k, self._ef_search, timeout_s)
        with search_deadline(self._name, timeout_s):
            hits = self._search(vector, k, where, include_text, exact=False, settings=settings)
        if len(hits) < k:
            # As for an index of Switchyard's own: pgvector filters after the graph scan, exact is right.
            return self.exact_search(vector, k, where, include_text=include_text)
        return hits

    def exact_search(
        self, vector: Vector, k: int, where: Metadata | None = None, *, include_text: bool = False
    ) -> list[Hit]:
        return self._search(vector, k, where, include_text, exact=True, settings={"enable_indexscan": "off"})

    def _search(
        self,
        vector: Vector,
        k: int,
        where: Metadata | None,
        include_text: bool,
        *,
        exact: bool,
        settings: dict[str, str],
    ) -> list[Hit]:
        query = checked_vector(vector, self._dim, self._name, "the query")
        if self._retired:
            raise Unavailable(
                f"index {self._name!r}: its vector column was dropped when the migration retired it"
            )
        keys = tuple(sorted(where or {}))
        if k <= 0 or any(key not in self._spec.metadata_columns for key in keys):
            return []  # no row has metadata outside the configured columns, as no document has a missing key
        statement = self._nearest_statement(include_text, exact, keys)
        params: dict[str, Any] = {"query": query, "k": k, **{f"f_{key}": (where or {})[key] for key in keys}}
        rows = self._pool.read(lambda c: run_with_settings(c, statement, params, settings))
        return [hit(row, self._space, self._name) for row in rows]

    def _nearest_statement(self, include_text: bool, exact: bool, keys: tuple[str, ...]) -> bytes:
        cache_key = (include_text, exact, keys)
        statement = self._nearest.get(cache_key)
        if statement is None:
            statement = self._statements.nearest(include_text, exact, keys)
            self._nearest[cache_key] = statement
        return statement

    def count(self) -> int:
        return self._scalar(self._statements.count)

    def max_version(self) -> int:
        return self._scalar(self._statements.max_version)

    def storage_bytes(self) -> int:
        """The whole application table (rows, TOAST, every index): what adoption adds to is measured on it."""
        return self._scalar(self._statements.storage_bytes)

    def _scalar(self, query: bytes) -> int:
        row = self._pool.read(lambda c: c.execute(query).fetchone())
        assert row is not None
        return int(row[0])

    def _parsed(self, ids: Sequence[str]) -> dict[str, str]:
        """Requested id -> the form the table returns it in, for ids a row could have."""
        parsed = {i: self._spec.parse_id(i) for i in ids}
        return {i: p for i, p in parsed.items() if p is not None}
