"""Several collections in one in-process app: separate state, one latency budget for every backfill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.app.assembly import App, build_app
from proxy.app.config import parse_config
from proxy.app.reload import apply_reload
from proxy.core.model import DocumentInput
from proxy.core.service import QueryInput


def _config(data_dir: Path, budgets: dict[str, float | None]) -> dict[str, Any]:
    indexes = {f"{name}-{v}": {"model": f"hash-{v}"} for name in budgets for v in ("a", "b")}
    collections = {
        name: {
            "serving_index": f"{name}-a",
            "migration": {
                "old_index": f"{name}-a",
                "new_index": f"{name}-b",
                "backfill": {"latency_budget_ms": budget} if budget else {},
            },
        }
        for name, budget in budgets.items()
    }
    return {
        "data_dir": str(data_dir),
        "models": {
            "hash-a": {"kind": "hashing", "dim": 16, "seed": 1},
            "hash-b": {"kind": "hashing", "dim": 16, "seed": 2},
        },
        "indexes": indexes,
        "collections": collections,
        "state": {"backend": "local"},
        "telemetry": {"metrics_listen": None},
    }


def _budgets_s(app: App) -> dict[str, float | None]:
    return {c.old.name: c.throttle.latency_budget_s for c in app.controllers()}


def test_every_backfill_keeps_the_tightest_latency_budget_any_collection_sets(tmp_path: Path) -> None:
    app = build_app(parse_config(_config(tmp_path, {"docs": 80.0, "tickets": 50.0, "users": None})))
    try:
        assert _budgets_s(app) == {"docs-a": 0.05, "tickets-a": 0.05, "users-a": 0.05}
    finally:
        app.close()


def test_reloading_one_collections_budget_moves_every_backfill(tmp_path: Path) -> None:
    before = parse_config(_config(tmp_path, {"docs": 80.0, "tickets": 50.0}))
    app = build_app(before)
    try:
        apply_reload(app, before, parse_config(_config(tmp_path, {"docs": 80.0, "tickets": 120.0})))
        assert _budgets_s(app) == {"docs-a": 0.08, "tickets-a": 0.08}
        apply_reload(app, before, parse_config(_config(tmp_path, {"docs": None, "tickets": None})))
        assert _budgets_s(app) == {"docs-a": None, "tickets-a": None}
    finally:
        app.close()


def test_collections_keep_their_own_documents_and_migration_state(tmp_path: Path) -> None:
    app = build_app(parse_config(_config(tmp_path, {"docs": None, "tickets": None})))
    try:
        docs, tickets = app.collections.get("docs"), app.collections.get("tickets")
        docs.service.upsert([DocumentInput("same-id", "garlic bread", {})])
        tickets.service.upsert([DocumentInput("same-id", "printer on fire", {})])
        assert docs.controller is not None and tickets.controller is not None
        docs.controller.start()
        assert tickets.controller.status().state.phase.value == "planned"
        assert docs.controller.status().state.phase.value == "backfilling"
        [hit] = tickets.service.query(QueryInput(k=1, text="garlic", include_text=True)).hits
        assert hit.text == "printer on fire" and hit.index == "tickets-a"
    finally:
        app.close()
