"""Runs `switchyard serve` as a child process: used by the demo, the benchmarks and end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from proxy.cli.client import SwitchyardClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SidecarProcess:
    """A sidecar started from a config dict; `stop()` sends SIGTERM (graceful), `kill()` SIGKILL."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        log_name: str = "sidecar.log",
        tls_ca: bytes | None = None,
    ) -> None:
        self.config = config
        self.tls_ca = tls_ca
        self.workdir = workdir
        self.config_path = workdir / "switchyard.yaml"
        self.log_path = workdir / log_name
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return str(self.config["server"]["listen"])

    def start(self, timeout_s: float = 30.0) -> SidecarProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"sidecar exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    client.wait_ready(timeout_s=0.5)
                    return
                except Exception:  # not listening yet
                    continue
        raise TimeoutError(f"sidecar not ready after {timeout_s}s:\n{self.log_tail()}")

    def client(self) -> SwitchyardClient:
        return SwitchyardClient(self.target, tls_ca=self.tls_ca)

    def stop(self, timeout_s: float = 30.0) -> int:
        return self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> int:
        return self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals, timeout_s: float) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout_s)
        self.process = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
