"""How many cores this process may use: the CPUs it may run on, capped by its cgroup's CPU limit."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    # A Kubernetes CPU limit is a cgroup quota: on a 64-core node a sidecar limited to 2 CPUs has 2.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time per period the process may use, or None when unlimited.

    cgroup v2: the tightest `cpu.max` from the process's own cgroup up to the root (a container with its own
    cgroup namespace sees its limit at the root; a systemd unit's CPUQuota sits on its own path). Else v1.
    """
    quotas = [quota for quota in map(_v2_quota, _v2_dirs(root, proc_cgroup)) if quota is not None]
    return min(quotas) if quotas else _v1_quota(root)


def _v2_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    own = next((line[3:] for line in lines if line.startswith("0::")), "/")
    parts = [part for part in own.split("/") if part and part != ".."]
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_quota(root: Path) -> float | None:
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
