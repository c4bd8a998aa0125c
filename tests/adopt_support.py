"""An "application" with its own pgvector table, written directly with psycopg as apps do, for the adoption
tests: it embeds its rows with the old model itself."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.adapters.pgvector.adopted_ddl import describe, install_tracking
from proxy.adapters.pgvector.adopted_table import TableConfig
from tests.contract.conftest import PGVECTOR_DSN

CATEGORIES = ("news", "sports", "science")


class App:
    """Owns `table` (bigint key, title, body, category, embedding) and embeds with `embedder` (the old model)."""

    def __init__(self, embedder: HashingEmbedder, dsn: str = PGVECTOR_DSN) -> None:
        self.table = f"items_{uuid.uuid4().hex[:12]}"
        self.dsn = dsn
        self.embedder = embedder
        self.conn = psycopg.connect(dsn, autocommit=True)
        register_vector(self.conn)
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {} (item_id bigint PRIMARY KEY, title text, body text, category text,"
                " updated_at timestamptz DEFAULT now(), embedding vector({}))"
            ).format(self.ident, sql.Literal(embedder.dim))
        )
        self.conn.execute(
            sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(self.ident)
        )

    def writer(self) -> App:
        """The same application on a connection of its own (for a writer thread)."""
        other = App.__new__(App)
        other.__dict__.update(self.__dict__)
        other.conn = psycopg.connect(self.dsn, autocommit=True)
        register_vector(other.conn)
        return other

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.table)

    def config(self) -> TableConfig:
        return TableConfig("public", self.table, "item_id", ("title", "body"), ("category",))

    def adopt_section(self, vector_column: str | None) -> dict[str, Any]:
        return {
            "table": self.table,
            "id_column": "item_id",
            "text_columns": ["title", "body"],
            "metadata_columns": ["category"],
            **({"vector_column": vector_column} if vector_column else {}),
        }

    @staticmethod
    def text(item_id: int, revision: int = 0) -> tuple[str, str]:
        return f"item {item_id} rev {revision}", f"body of {item_id} about topic {item_id % 17} r{revision}"

    def insert(self, ids: Sequence[int], revision: int = 0) -> None:
        rows = []
        for item_id in ids:
            title, body = self.text(item_id, revision)
            vector = self.embedder.embed([f"{title}\n{body}"])[0]
            rows.append((item_id, title, body, CATEGORIES[item_id % 3], np.asarray(vector)))
        with self.conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (item_id, title, body, category, embedding) VALUES (%s, %s, %s, %s, %s)"
                ).format(self.ident),
                rows,
            )

    def update_text(self, item_id: int, revision: int) -> None:
        title, body = self.text(item_id, revision)
        vector = np.asarray(self.embedder.embed([f"{title}\n{body}"])[0])
        self.conn.execute(
            sql.SQL("UPDATE {} SET title = %s, body = %s, embedding = %s WHERE item_id = %s").format(
                self.ident
            ),
            (title, body, vector, item_id),
        )

    def delete(self, item_id: int) -> None:
        self.conn.execute(sql.SQL("DELETE FROM {} WHERE item_id = %s").format(self.ident), (item_id,))

    def adopt(self) -> None:
        with psycopg.connect(self.dsn) as conn:
            spec, _ = describe(conn, "test", self.config(), "test", need_tracking=False)
            install_tracking(conn, spec)

    def nearest(self, vector: Sequence[float], k: int, category: str | None = None) -> list[str]:
        """What the application's own query returns: ids of the k nearest rows."""
        where = sql.SQL(" WHERE category = %(c)s") if category else sql.SQL("")
        rows = self.conn.execute(
            sql.SQL("SELECT item_id FROM {}{} ORDER BY embedding <=> %(q)s LIMIT %(k)s").format(
                self.ident, where
            ),
            {"q": np.asarray(vector, dtype=np.float32), "k": k, "c": category},
        ).fetchall()
        return [str(r[0]) for r in rows]

    def drop(self) -> None:
        for name in (self.table, f"switchyard_{self.table}_changes"):
            self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        self.conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"switchyard_{self.table}_idx_b"[:58]))
        )
        self.conn.execute(
            sql.SQL("DROP SEQUENCE IF EXISTS {}").format(
                sql.Identifier(f"switchyard_{self.table}_version_seq")
            )
        )
        self.conn.execute(
            sql.SQL("DROP FUNCTION IF EXISTS {}").format(sql.Identifier(f"switchyard_{self.table}_track"))
        )
        self.conn.close()
