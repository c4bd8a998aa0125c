"""The backfill embeds on a low-priority thread; everything on the query path keeps normal priority."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.core.model import Vector
from proxy.migration.priority import LowPriorityRunner
from tests.migration_support import drain, in_process_app, load_corpus, migration_config


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class _NicenessRecorder:
    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.seen: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        self.seen.append(_niceness())
        return self._inner.embed(texts)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("embed_nice", [19, 0])
def test_backfill_batches_embed_at_the_configured_niceness(tmp_path: Path, embed_nice: int) -> None:
    app = in_process_app(migration_config(tmp_path / "data", embed_nice=embed_nice))
    try:
        assert app.controller is not None
        docs = load_corpus(app, 60)
        recorder = _NicenessRecorder(app.bindings["idx-b"].embedder)
        target = replace(app.bindings["idx-b"], embedder=recorder)  # type: ignore[arg-type]
        app.controller.new = app.controller.backfiller.target = target
        app.controller.start()
        drain(app)
        assert recorder.seen, "the backfill embedded nothing"
        assert set(recorder.seen) == {min(19, _niceness() + embed_nice)}

        recorder.seen.clear()
        app.service.upsert([replace(docs[0], text="a rewritten text")])  # dual write: on the caller's thread
        assert recorder.seen == [_niceness()]
    finally:
        app.close()


def test_the_runner_returns_results_and_raises_errors_of_the_call() -> None:
    runner = LowPriorityRunner(5)
    try:
        assert runner.run(_niceness) == min(19, _niceness() + 5)
        with pytest.raises(ZeroDivisionError):
            runner.run(lambda: 1 // 0)
    finally:
        runner.close()
