"""Hot reload: watch the config file (a mounted ConfigMap too) and apply the settings that may change live."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from proxy.app.config import SwitchyardConfig, load_config
from proxy.core.errors import ConfigError

log = logging.getLogger(__name__)

ReloadHandler = Callable[[SwitchyardConfig, SwitchyardConfig], None]


class ConfigWatcher:
    """Polls the file's content (not its mtime: a ConfigMap update swaps a symlink) every `interval_s`.

    An invalid new version is logged and ignored: the sidecar keeps running on the last good config.
    """

    def __init__(
        self, path: Path, current: SwitchyardConfig, on_change: ReloadHandler, interval_s: float = 1.0
    ):
        self._path = path
        self._current = current
        self._on_change = on_change
        self._interval_s = interval_s
        self._digest = self._read_digest()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="switchyard-config-watch", daemon=True)

    def start(self) -> ConfigWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> bool:
        """Reloads if the file changed; returns True when a new config was applied."""
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        try:
            updated = load_config(self._path)
        except ConfigError as exc:
            log.error("config reload rejected, keeping the running config: %s", exc)
            return False
        previous, self._current = self._current, updated
        self._on_change(previous, updated)
        return True

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self._path.read_bytes()).hexdigest()
        except OSError:
            return None  # mid-swap or briefly missing: try again next round

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.check()
            except Exception:
                log.exception("applying the reloaded config failed")
