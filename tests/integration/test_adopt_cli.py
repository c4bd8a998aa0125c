"""`switchyard adopt` against real PostgreSQL: a good run prints the plan and changes nothing without --apply,
adopts the table with it, and writes a config that serves and migrates the table; every bad input returns its
error and leaves the table exactly as it was (schema, Switchyard objects and a checksum of every row).

Needs PostgreSQL with pgvector at PGVECTOR_DSN (scripts/ensure-pgvector.sh).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.pgvector.adopted_index import AdoptedTableIndex
from proxy.adapters.pgvector.side_index import SideVectorIndex
from proxy.app import adoption, adoption_checks
from proxy.app.assembly import build_app
from proxy.app.config import load_config, parse_config
from proxy.cli.main import main
from proxy.core.service import QueryInput
from tests.adopt_support import App as Application
from tests.migration_support import drain

ROWS = 60
MODELS = {
    "hash-a": {"kind": "hashing", "dim": 32, "seed": 1},
    "hash-b": {"kind": "hashing", "dim": 32, "seed": 2},
    "hash-16": {"kind": "hashing", "dim": 16, "seed": 1},
    "changes": {"kind": "hashing", "dim": 32, "seed": 3},
}


@pytest.fixture
def application() -> Iterator[Application]:
    app = Application(HashingEmbedder("hash-a", 32, 1))
    app.insert(range(1, ROWS + 1))
    yield app
    for model in MODELS:
        side = f"switchyard_{app.table}_{model.replace('-', '_')}"
        app.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(side)))
    app.drop()


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump({"models": MODELS}))
    return path


@pytest.fixture
def role(application: Application) -> Iterator[Callable[..., str]]:
    """Makes login roles with the given privileges; returns a DSN per role; drops them all at the end."""
    made: list[str] = []

    def make(*grants: str) -> str:
        name = f"sy_adopt_{uuid.uuid4().hex[:8]}"
        made.append(name)
        application.conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        for grant in grants:
            application.conn.execute(
                sql.SQL(grant).format(table=application.ident, role=sql.Identifier(name))
            )
        return make_conninfo(application.dsn, user=name)

    yield make
    for name in made:
        application.conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        application.conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _args(application: Application, tmp_path: Path, models_file: Path, **changed: str) -> list[str]:
    options = {
        "dsn": application.dsn,
        "table": application.table,
        "id-column": "item_id",
        "vector-column": "embedding",
        "text-columns": "title,body",
        "metadata-columns": "category",
        "config": str(models_file),
        "old-model": "hash-a",
        "new-model": "hash-b",
        "data-dir": str(tmp_path / "data"),
        "out": str(tmp_path / "adopted.yaml"),
        **changed,
    }
    return ["adopt", *(part for key, value in options.items() for part in (f"--{key}", value))]


def _snapshot(application: Application) -> dict[str, Any]:
    """What adoption could change: the table's columns, indexes and triggers, Switchyard's objects beside it,
    and every row."""
    conn, table = application.conn, application.table

    def rows(query: str, *params: Any) -> list[tuple[Any, ...]]:
        return conn.execute(query, params).fetchall()

    checksum = conn.execute(
        sql.SQL("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY item_id)) FROM {} t").format(
            application.ident
        )
    ).fetchone()
    return {
        "columns": rows(
            "SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns"
            " WHERE table_name = %s ORDER BY ordinal_position",
            table,
        ),
        "indexes": rows("SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY 1", table),
        "triggers": rows(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal ORDER BY 1",
            table,
        ),
        "switchyard": rows(
            "SELECT relname, relkind FROM pg_class WHERE relname LIKE %s"
            " UNION ALL SELECT proname, 'f' FROM pg_proc WHERE proname LIKE %s ORDER BY 1",
            f"switchyard_{table}%",
            f"switchyard_{table}%",
        ),
        "rows": checksum,
    }


def test_without_apply_prints_the_plan_writes_the_config_and_changes_nothing(
    application: Application, tmp_path: Path, models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(application)
    assert main(_args(application, tmp_path, models_file)) == 0
    printed = capsys.readouterr().out
    for expected in (
        f"Table public.{application.table}",
        f"rows            {ROWS} (exact count)",
        "primary key     item_id (bigint)",
        "embedding vector(32)",
        "vector index    ",
        "USING hnsw (embedding vector_cosine_ops)",
        "cosine similarity to the stored vectors median 1.0000",
        f"side table public.switchyard_{application.table}_hash_b",
        "CREATE OR REPLACE TRIGGER switchyard_track_writes",
        "SHARE ROW EXCLUSIVE",
        "Dry run: nothing was changed",
    ):
        assert expected in printed
    assert _snapshot(application) == before
    config = load_config(tmp_path / "adopted.yaml")
    assert config.serving_index == "hash-a"
    assert config.migration is not None and config.migration.new_index == "hash-b"


def test_apply_adopts_the_table_and_the_written_config_serves_and_migrates_it(
    application: Application, tmp_path: Path, models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_args(application, tmp_path, models_file), "--apply"]) == 0
    printed = capsys.readouterr().out
    assert "Committed: the table is adopted." in printed
    assert " ms\n" in printed and "switchyard migrate start" in printed
    after = _snapshot(application)
    assert [t[0] for t in after["triggers"]] == ["switchyard_track_text", "switchyard_track_writes"]
    assert (f"switchyard_{application.table}_hash_b", "r") in after["switchyard"]
    assert (f"switchyard_{application.table}_changes", "r") in after["switchyard"]

    raw = yaml.safe_load((tmp_path / "adopted.yaml").read_text())
    raw["telemetry"] = {"metrics_listen": None}
    app = build_app(parse_config(raw))
    try:
        assert isinstance(app.bindings["hash-a"].index, AdoptedTableIndex)
        assert isinstance(app.bindings["hash-b"].index, SideVectorIndex)
        title, body = application.text(7)
        assert app.service.query(QueryInput(k=1, text=f"{title}\n{body}")).hits[0].id == "7"
        assert app.controller is not None
        app.controller.start()
        drain(app)
        side = sql.Identifier(f"switchyard_{application.table}_hash_b")
        count = application.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(side)).fetchone()
        assert count == (ROWS,)
    finally:
        app.close()

    assert main([*_args(application, tmp_path, models_file), "--apply"]) == 0
    assert "already adopted" in capsys.readouterr().out


def test_roles_that_write_the_table_need_no_grants_on_switchyards_objects(
    application: Application, tmp_path: Path, models_file: Path, role: Callable[..., str]
) -> None:
    assert main([*_args(application, tmp_path, models_file), "--apply"]) == 0
    # A role granted the table after adoption: the trigger function runs as its owner (SECURITY DEFINER).
    writer = role("GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
    with psycopg.connect(writer, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (item_id, title) VALUES (5000, 'new')").format(application.ident)
        )
        conn.execute(sql.SQL("UPDATE {} SET title = 'changed' WHERE item_id = 1").format(application.ident))
        conn.execute(sql.SQL("DELETE FROM {} WHERE item_id = 2").format(application.ident))
    changes = sql.Identifier(f"switchyard_{application.table}_changes")
    rows = application.conn.execute(sql.SQL("SELECT id, deleted FROM {} ORDER BY id").format(changes))
    assert rows.fetchall() == [(1, False), (2, True), (5000, False)]


def _drop_key(application: Application) -> None:
    application.conn.execute(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            application.ident, sql.Identifier(f"{application.table}_pkey")
        )
    )


def _empty_bodies(application: Application) -> None:
    application.conn.execute(
        sql.SQL(
            "UPDATE {} SET body = CASE WHEN item_id % 2 = 0 THEN NULL ELSE '' END WHERE item_id % 5 <> 0"
        ).format(application.ident)
    )


def _composite_key(application: Application) -> None:
    _drop_key(application)
    application.conn.execute(
        sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (item_id, category)").format(application.ident)
    )


def _numeric_key(application: Application) -> None:
    application.conn.execute(sql.SQL("ALTER TABLE {} ALTER item_id TYPE numeric").format(application.ident))


def _stale_side_table(application: Application) -> None:
    """A side table an earlier adoption filled (the application's table was dropped and made again since)."""
    side = sql.Identifier(f"switchyard_{application.table}_hash_b")
    application.conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, version bigint NOT NULL, deleted boolean NOT NULL"
            " DEFAULT false, embedding vector(32))"
        ).format(side)
    )
    application.conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 7, false, NULL)").format(side))


BAD_INPUTS: dict[str, tuple[dict[str, str], Callable[[Application], None] | None, str]] = {
    "missing table": ({"table": "no_such_items"}, None, "no table public.no_such_items"),
    "missing column": ({"text-columns": "title,summary"}, None, "has no column summary"),
    "missing vector column": ({"vector-column": "vec"}, None, "has no column vec"),
    "no primary key": ({}, _drop_key, "has no primary key"),
    "composite primary key": ({}, _composite_key, "has a composite primary key (item_id, category)"),
    "unsupported key type": ({}, _numeric_key, "id column item_id is numeric; supported: bigint"),
    "id column is not the key": ({"id-column": "category"}, None, "is not the primary key"),
    "not a vector column": ({"vector-column": "updated_at"}, None, "is of type timestamp with time zone"),
    "wrong dimension": ({"old-model": "hash-16"}, None, "is vector(32) but the old model hash-16 gives 16"),
    "mostly empty text": ({}, _empty_bodies, "text column body is NULL or empty in 80% of the rows"),
    "wrong model": ({"old-model": "hash-b", "new-model": "hash-a"}, None, "sample check failed"),
    "wrong text columns": ({"text-columns": "title"}, None, "sample check failed"),
    "side table name taken": ({"new-model": "changes"}, None, "name the model otherwise"),
    "unknown model": ({"old-model": "hash-z"}, None, "no model 'hash-z'"),
    "side table from an earlier adoption": ({}, _stale_side_table, "already holds vectors from an earlier"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_returns_its_error_and_leaves_the_table_unchanged(
    case: str,
    application: Application,
    tmp_path: Path,
    models_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changed, prepare, message = BAD_INPUTS[case]
    if prepare is not None:
        prepare(application)
    before = _snapshot(application)
    assert main([*_args(application, tmp_path, models_file, **changed), "--apply"]) == 1
    errors = capsys.readouterr().err
    assert message in errors
    assert "Nothing was changed." in errors
    assert _snapshot(application) == before
    assert not (tmp_path / "adopted.yaml").exists()


def test_sample_check_names_its_numbers_and_the_likely_causes(
    application: Application, tmp_path: Path, models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(_args(application, tmp_path, models_file, **{"old-model": "hash-b", "new-model": "hash-a"})) == 1
    )
    errors = capsys.readouterr().err
    assert "cosine similarity median" in errors and "min" in errors
    assert '"passage: "' in errors and "--text-columns" in errors


def test_insufficient_privileges_are_refused_before_any_statement(
    application: Application,
    tmp_path: Path,
    models_file: Path,
    role: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn = role("GRANT SELECT ON {table} TO {role}")
    before = _snapshot(application)
    assert main([*_args(application, tmp_path, models_file, dsn=dsn), "--apply"]) == 1
    errors = capsys.readouterr().err
    assert "insufficient privileges" in errors and "GRANT TRIGGER ON" in errors
    assert _snapshot(application) == before


def test_a_statement_refused_for_privileges_rolls_back_every_statement(
    application: Application,
    tmp_path: Path,
    models_file: Path,
    role: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The role may create Switchyard's tables but not the trigger: the tables made before it go too."""
    dsn = role("GRANT SELECT ON {table} TO {role}", "GRANT CREATE ON SCHEMA public TO {role}")
    monkeypatch.setattr(adoption, "check_privileges", lambda conn, facts: None)
    before = _snapshot(application)
    assert main([*_args(application, tmp_path, models_file, dsn=dsn), "--apply"]) == 1
    printed = capsys.readouterr()
    assert "CREATE TABLE IF NOT EXISTS" in printed.out
    assert "insufficient privileges" in printed.err and "everything was rolled back" in printed.err
    assert _snapshot(application) == before


def test_a_big_table_is_estimated_and_sampled_by_pages(
    application: Application,
    tmp_path: Path,
    models_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over the limits the row count is pg_class's estimate and the checks read TABLESAMPLE pages."""
    monkeypatch.setattr(adoption_checks, "EXACT_COUNT_LIMIT", 10)
    monkeypatch.setattr(adoption_checks, "COUNT_SAMPLE_ROWS", 30)
    monkeypatch.setattr(adoption_checks, "SORT_LIMIT", 10)
    application.conn.execute(sql.SQL("ANALYZE {}").format(application.ident))
    assert main([*_args(application, tmp_path, models_file), "--sample", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 rows re-embedded" in printed
    assert f"~{ROWS} (estimate, pg_class.reltuples)" in printed
    assert "in a sample of" in printed


def test_dsn_env_names_the_variable_in_the_written_config(
    application: Application, tmp_path: Path, models_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADOPT_TEST_DSN", application.dsn)
    args = _args(application, tmp_path, models_file)
    at = args.index("--dsn")
    args[at : at + 2] = ["--dsn-env", "ADOPT_TEST_DSN"]
    assert main(args) == 0
    written = yaml.safe_load((tmp_path / "adopted.yaml").read_text())
    for index in written["indexes"].values():
        assert index["pgvector"]["dsn_env"] == "ADOPT_TEST_DSN" and "dsn" not in index["pgvector"]
