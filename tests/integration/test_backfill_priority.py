"""A local new model gets its own instance for the backfill, embedding at lower priority; the rest do not."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from proxy.adapters.embedders.local_models import E5SmallEmbedder
from proxy.core.model import Vector
from proxy.migration.priority import LowPriorityRunner
from tests.migration_support import drain, in_process_app, load_corpus, migration_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness per thread is Linux's")


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _config(tmp_path: Path, new_kind: str, embed_nice: int) -> dict[str, Any]:
    config = migration_config(tmp_path / "data", embed_nice=embed_nice)
    if new_kind == "e5-small":
        config["models"]["e5"] = {"kind": "e5-small"}
        config["indexes"]["idx-b"] = {"model": "e5"}
    return config


@pytest.fixture
def niceness_of_embeds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(id of the embedder instance, niceness of the calling thread) of every document embed."""
    seen: list[tuple[int, int]] = []
    original = E5SmallEmbedder.embed

    def embed(self: E5SmallEmbedder, texts: Sequence[str]) -> list[Vector]:
        seen.append((id(self), _niceness()))
        return original(self, texts)

    monkeypatch.setattr(E5SmallEmbedder, "embed", embed)
    return seen


@pytest.mark.parametrize("embed_nice", [19, 0])
def test_a_local_model_backfills_on_its_own_instance_at_the_configured_niceness(
    tmp_path: Path, embed_nice: int, niceness_of_embeds: list[tuple[int, int]]
) -> None:
    base = _niceness()
    app = in_process_app(_config(tmp_path, "e5-small", embed_nice))
    try:
        assert app.controller is not None
        docs = load_corpus(app, 40)
        serving = id(app.bindings["idx-b"].embedder)
        app.controller.start()
        drain(app)
        backfill = {instance for instance, _ in niceness_of_embeds}
        assert backfill and serving not in backfill, "queries never wait on the backfill's model lock"
        assert {nice for _, nice in niceness_of_embeds} == {min(19, base + embed_nice)}
        niceness_of_embeds.clear()
        app.service.upsert([replace(docs[0], text="a rewritten text")])
        assert niceness_of_embeds == [(serving, base)], "a dual write embeds on the caller's thread"
    finally:
        app.close()


def test_a_python_model_backfills_at_normal_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # At low priority it would hold the GIL while descheduled, stalling every thread of the sidecar.
    seen: list[int] = []
    app = in_process_app(_config(tmp_path, "hashing", 19))
    try:
        assert app.controller is not None
        load_corpus(app, 40)
        embedder = app.controller.backfiller.target.embedder
        original = embedder.embed
        monkeypatch.setattr(embedder, "embed", lambda texts: seen.append(_niceness()) or original(texts))
        app.controller.start()
        drain(app)
        assert seen and set(seen) == {_niceness()}
        assert embedder is app.bindings["idx-b"].embedder
    finally:
        app.close()


def test_the_runner_returns_results_and_raises_errors_of_the_call() -> None:
    base = _niceness()
    runner = LowPriorityRunner(5)
    try:
        assert runner.run(_niceness) == min(19, base + 5)
        with pytest.raises(ZeroDivisionError):
            runner.run(lambda: 1 // 0)
    finally:
        runner.close()
