"""Fixtures the integration tests against PostgreSQL share: fresh table names, in-process sidecars."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from proxy.app.assembly import App
from tests.contract.conftest import PGVECTOR_DSN
from tests.migration_support import AppFactory, in_process_app


@pytest.fixture
def tables() -> Iterator[Callable[[], str]]:
    """Hands out fresh table names and drops those tables after the test."""
    made: list[str] = []

    def fresh() -> str:
        made.append(f"test_{uuid.uuid4().hex[:20]}")
        return made[-1]

    yield fresh
    with psycopg.connect(PGVECTOR_DSN, autocommit=True) as conn:
        for table in made:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


@pytest.fixture
def start_app() -> Iterator[AppFactory]:
    """Builds in-process sidecars from configs and closes them after the test."""
    started: list[App] = []

    def start(config: dict[str, Any]) -> App:
        started.append(in_process_app(config))
        return started[-1]

    yield start
    for app in started:
        app.close()
