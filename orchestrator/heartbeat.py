"""heartbeat.json: what the daemon is doing right now, refreshed while a long phase runs."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.core.workspace import write_json

STALE_AFTER_S = 120.0


class Heartbeat:
    def __init__(self, path: Path, refresh_s: float = 15.0):
        self.path = path
        self.refresh_s = refresh_s
        self.state: dict[str, Any] = {"pid": os.getpid(), "started": time.time(), "phase": "starting",
                                      "iteration": None, "since": time.time()}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._write()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def set(self, phase: str, iteration: int | None = None, **extra: Any) -> None:
        with self._lock:
            self.state.update(phase=phase, iteration=iteration, since=time.time(), **extra)
        self._write()

    def stop(self, reason: str) -> None:
        self._done.set()
        self.set("stopped", self.state.get("iteration"), stop_reason=reason)

    def _beat(self) -> None:
        while not self._done.wait(self.refresh_s):
            self._write()

    def _write(self) -> None:
        with self._lock:
            self.state["updated"] = time.time()
            data = dict(self.state)
        write_json(self.path, data)


def read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_stale(hb: dict[str, Any], now: float | None = None) -> bool:
    """A heartbeat of a live daemon is refreshed every few seconds; one that is not is stale."""
    if hb.get("phase") == "stopped":
        return False
    return (now or time.time()) - hb.get("updated", 0) > STALE_AFTER_S
