"""Fixtures of the reliability suite; its figures go to a results file (support.results_path), which
scripts/reliability-report.py formats and the end of the run prints."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL
from tests.reliability.support import require_redis, results_path

REPORT_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability-report.py"
_ran: list[bool] = []


@pytest.fixture(scope="session", autouse=True)
def _fresh_results() -> None:
    """The figures of one run only: a partial run must not mix with an older one."""
    results_path().unlink(missing_ok=True)
    _ran.append(True)


@pytest.fixture
def shared_redis() -> str:
    """The suite's Redis URL; the test fails, never skips, when Redis does not answer."""
    require_redis(REDIS_URL)
    return REDIS_URL


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    path = results_path()
    if not _ran or not path.exists():
        return
    format_report = runpy.run_path(str(REPORT_SCRIPT))["format_report"]
    terminalreporter.section("reliability figures")
    terminalreporter.write_line(format_report(json.loads(path.read_text())))
    terminalreporter.write_line(f"(from {path}; scripts/reliability-report.py prints it again)")
