"""Cores available to the sidecar: CPU affinity capped by a cgroup v2 or v1 quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cpu import available_cores, cgroup_cpu_quota


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_quota_is_read_from_v2_then_v1(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    assert cgroup_cpu_quota(_write(tmp_path, files)) == quota


def test_a_quota_caps_the_cores_and_never_below_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert available_cores(_write(tmp_path / "a", {"cpu.max": "150000 100000"})) == 2
    assert available_cores(_write(tmp_path / "b", {"cpu.max": "10000 100000"})) == 1
    assert available_cores(_write(tmp_path / "c", {"cpu.max": "max 100000"})) == 8
