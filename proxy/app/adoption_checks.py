"""The checks `switchyard adopt` makes before anything changes: the table's shape against the request, the
privileges the DDL needs, text that is really there, and that the configured old model produced the stored
vectors. Each failure is an `AdoptionRefused` naming what to fix; every check only reads."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from numpy.typing import ArrayLike
from psycopg import sql

from proxy.adapters.pgvector.adopted_ddl import TableFacts, id_type_of
from proxy.adapters.pgvector.adopted_table import AdoptedTable
from proxy.core.errors import FailedPrecondition
from proxy.core.ports import Embedder

EXACT_COUNT_LIMIT = 1_000_000
"""Below this many rows (the planner's estimate) rows are counted exactly; above, estimated from a sample."""
COUNT_SAMPLE_ROWS = 100_000
"""About how many rows the empty-text and NULL-vector counts read of a table over EXACT_COUNT_LIMIT."""
SORT_LIMIT = 100_000
"""Up to this many rows the sample check picks its rows by ORDER BY random(); above, from TABLESAMPLE pages."""
MIN_MEDIAN_SIMILARITY = 0.99
"""The same model on the same text gives the same vector (up to float rounding and quantization)."""
MAX_EMPTY_SHARE = 0.5


class AdoptionRefused(FailedPrecondition):
    """A reason not to adopt the table as asked; nothing was changed."""


@dataclass(frozen=True)
class TableCounts:
    rows: int
    exact: bool
    """False: `rows` is pg_class.reltuples and the other counts come from a TABLESAMPLE of the table."""
    scanned: int
    """Rows the counts below were taken over."""
    null_vectors: int
    empty_text: dict[str, int]
    """Per text column: rows where it is NULL or empty."""


@dataclass(frozen=True)
class SampleCheck:
    compared: int
    median: float
    minimum: float


def check_shape(facts: TableFacts, spec_columns: Sequence[str], id_column: str) -> None:
    """Columns present, a one-column primary key of a supported type on `id_column`."""
    qualified = f"{facts.schema}.{facts.table}"
    missing = [c for c in dict.fromkeys(spec_columns) if c not in facts.columns]
    if missing:
        present = ", ".join(facts.columns) or "none"
        raise AdoptionRefused(
            f"table {qualified} has no column {', '.join(missing)} (its columns: {present})"
        )
    if not facts.primary_key:
        raise AdoptionRefused(
            f"table {qualified} has no primary key: Switchyard addresses rows by a one-column primary key;"
            f" add one (ALTER TABLE {qualified} ADD PRIMARY KEY ({id_column}))"
        )
    if len(facts.primary_key) > 1:
        raise AdoptionRefused(
            f"table {qualified} has a composite primary key ({', '.join(facts.primary_key)}): Switchyard"
            " needs a one-column key"
        )
    if facts.primary_key[0] != id_column:
        raise AdoptionRefused(
            f"--id-column {id_column} is not the primary key of {qualified}; its key is {facts.primary_key[0]}"
        )
    key_type = facts.columns[id_column].type
    if id_type_of(key_type) is None:
        raise AdoptionRefused(
            f"id column {id_column} is {key_type}; supported: bigint, integer, smallint, text, varchar, uuid"
        )


def check_vector(facts: TableFacts, vector_column: str, model: str, model_dim: int) -> int:
    """The vector column's dimension, which must be the old model's."""
    column = facts.columns[vector_column]
    dim = column.vector_dim
    if dim is None:
        kind = "a vector without a fixed dimension" if column.type == "vector" else f"of type {column.type}"
        raise AdoptionRefused(
            f"column {vector_column} is {kind}; Switchyard serves a vector(N) column (pgvector's vector"
            " type with its dimension)"
        )
    if dim != model_dim:
        raise AdoptionRefused(
            f"column {vector_column} is vector({dim}) but the old model {model} gives {model_dim} dimensions:"
            " check --old-model (the model that produced the stored vectors)"
        )
    return dim


def check_privileges(conn: psycopg.Connection, facts: TableFacts) -> None:
    """What the DDL needs: SELECT and TRIGGER on the table, CREATE on its schema (for the changes table,
    the sequence, the trigger function and the side table)."""
    qualified = sql.Identifier(facts.schema, facts.table).as_string(conn)
    row = conn.execute(
        "SELECT current_user, has_table_privilege(%(t)s, 'SELECT'), has_table_privilege(%(t)s, 'TRIGGER'),"
        " has_schema_privilege(%(s)s, 'CREATE')",
        {"t": qualified, "s": facts.schema},
    ).fetchone()
    assert row is not None
    user, can_select, can_trigger, can_create = row
    grants = [
        *([f"GRANT SELECT ON {qualified} TO {user}"] if not can_select else []),
        *([f"GRANT TRIGGER ON {qualified} TO {user}"] if not can_trigger else []),
        *([f"GRANT CREATE ON SCHEMA {facts.schema} TO {user}"] if not can_create else []),
    ]
    if grants:
        raise AdoptionRefused(
            f"insufficient privileges: role {user} needs SELECT and TRIGGER on {qualified} and CREATE on"
            f" schema {facts.schema} (or run as the table's owner with CREATE on the schema); missing: "
            + "; ".join(grants)
        )


def count_table(
    conn: psycopg.Connection, spec: AdoptedTable, vector_column: str, facts: TableFacts
) -> TableCounts:
    """Rows, NULL vectors and empty text per column: exact below EXACT_COUNT_LIMIT, else from a sample of
    about COUNT_SAMPLE_ROWS rows (whole pages at random: TABLESAMPLE SYSTEM)."""
    exact = facts.rows_estimate < EXACT_COUNT_LIMIT
    source = _source(spec, 0 if exact else facts.rows_estimate, COUNT_SAMPLE_ROWS)
    empties = [
        sql.SQL("count(*) FILTER (WHERE coalesce(t.{c}::text, '') = '')").format(c=sql.Identifier(c))
        for c in spec.text_columns
    ]
    row = conn.execute(
        sql.SQL("SELECT count(*), count(*) FILTER (WHERE t.{v} IS NULL), {empties} FROM {source}").format(
            v=sql.Identifier(vector_column), empties=sql.SQL(", ").join(empties), source=source
        )
    ).fetchone()
    assert row is not None
    scanned = int(row[0])
    return TableCounts(
        rows=scanned if exact else facts.rows_estimate,
        exact=exact,
        scanned=scanned,
        null_vectors=int(row[1]),
        empty_text={c: int(n) for c, n in zip(spec.text_columns, row[2:], strict=True)},
    )


def check_text(counts: TableCounts) -> None:
    if counts.scanned == 0:
        return
    for column, empty in counts.empty_text.items():
        if empty > MAX_EMPTY_SHARE * counts.scanned:
            share = 100.0 * empty / counts.scanned
            raise AdoptionRefused(
                f"text column {column} is NULL or empty in {share:.0f}% of the rows"
                f"{'' if counts.exact else ' sampled'} ({empty} of {counts.scanned}): the models would embed"
                " little or nothing; check --text-columns"
            )


def sample_check(
    conn: psycopg.Connection,
    spec: AdoptedTable,
    vector_column: str,
    embedder: Embedder,
    sample: int,
    counts: TableCounts,
) -> SampleCheck | None:
    """Re-embeds up to `sample` random rows' text (as Switchyard builds it) with the old model and compares
    with their stored vectors; None when no row has both text and a vector."""
    rows = _sample_rows(conn, spec, vector_column, sample, counts)
    return judge_sample(rows, embedder) if rows else None


def judge_sample(rows: Sequence[tuple[str, ArrayLike]], embedder: Embedder) -> SampleCheck:
    """Re-embeds the rows' text with the old model and compares with their stored vectors: AdoptionRefused
    unless they agree (any backend: the rows are (text as Switchyard builds it, stored vector))."""
    try:
        fresh = embedder.embed([text for text, _ in rows])
    except Exception as exc:  # a model that cannot load or a server that refuses: say which, change nothing
        raise AdoptionRefused(f"the old model {embedder.model} could not embed the sample: {exc}") from exc
    similarities = [_cosine(stored, new) for (_, stored), new in zip(rows, fresh, strict=True)]
    result = SampleCheck(len(similarities), statistics.median(similarities), min(similarities))
    if result.median < MIN_MEDIAN_SIMILARITY:
        raise AdoptionRefused(
            f"sample check failed: re-embedding {result.compared} rows with the old model {embedder.model}"
            f" gives vectors unlike the stored ones (cosine similarity median {result.median:.3f}, min"
            f" {result.minimum:.3f}; needed median >= {MIN_MEDIAN_SIMILARITY}). Likely causes: another model"
            ' produced the stored vectors, the application adds a prefix such as "passage: " that the'
            " model config lacks, or the text is built from other columns (--text-columns, in order,"
            " joined by a newline)"
        )
    return result


def _sample_rows(
    conn: psycopg.Connection, spec: AdoptedTable, vector_column: str, sample: int, counts: TableCounts
) -> list[tuple[str, list[float]]]:
    # Pages at random rather than a sort of the whole table; enough of them for ~20x the sample, and more
    # when the pages drawn hold too few rows with text and a vector (at last the whole table).
    rows = counts.rows if counts.rows > SORT_LIMIT else 0
    wanted = 20 * sample
    while True:
        query = sql.SQL(
            "SELECT {text}, t.{v}::real[] FROM {source} WHERE t.{v} IS NOT NULL AND {text} <> ''"
            " ORDER BY random() LIMIT {n}"
        ).format(
            text=spec.text_expression("t"),
            v=sql.Identifier(vector_column),
            source=_source(spec, rows, wanted),
            n=sql.Literal(sample),
        )
        found = [(str(r[0]), list(r[1])) for r in conn.execute(query)]
        if len(found) >= sample or rows <= wanted:
            return found
        wanted *= 10


def _source(spec: AdoptedTable, rows: int, wanted: int) -> sql.Composable:
    """The table, or about `wanted` of its `rows` in whole pages at random (rows 0: the whole table)."""
    if rows <= wanted:
        return sql.SQL("{} t").format(spec.app)
    percent = max(0.001, round(100.0 * wanted / rows, 3))
    return sql.SQL("{} t TABLESAMPLE SYSTEM ({})").format(spec.app, sql.Literal(percent))


def _cosine(a: ArrayLike, b: ArrayLike) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / norms) if norms > 0 else 0.0
