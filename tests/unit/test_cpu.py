"""Cores available to the sidecar: CPU affinity capped by a cgroup v2 or v1 quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.app.cpu import available_cores, cgroup_cpu_quota


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


@pytest.mark.parametrize(
    ("files", "own_cgroup", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),
        # A systemd unit or a container without its own cgroup namespace: the limit sits on its own path.
        (
            {"cpu.max": "max 100000\n", "system.slice/app.service/cpu.max": "50000 100000\n"},
            "0::/system.slice/app.service\n",
            0.5,
        ),
        (
            {"kubepods/cpu.max": "400000 100000\n", "kubepods/pod1/c1/cpu.max": "200000 100000\n"},
            "0::/kubepods/pod1/c1\n",
            2.0,
        ),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "4:cpu,cpuacct:/\n", 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "4:cpu,cpuacct:/\n", None),
        ({}, "", None),
    ],
)
def test_the_tightest_cgroup_quota_on_the_process_s_path_counts(
    tmp_path: Path, files: dict[str, str], own_cgroup: str, quota: float | None
) -> None:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(own_cgroup)
    assert cgroup_cpu_quota(_write(tmp_path / "cgroup", files), proc) == quota


def test_a_quota_caps_the_cores_and_never_below_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/\n")
    assert available_cores(_write(tmp_path / "a", {"cpu.max": "150000 100000"}), proc) == 2
    assert available_cores(_write(tmp_path / "b", {"cpu.max": "10000 100000"}), proc) == 1
    assert available_cores(_write(tmp_path / "c", {"cpu.max": "max 100000"}), proc) == 8
