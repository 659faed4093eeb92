"""heartbeat.json: what the process holding the workspace is doing right now (the daemon, or `run --once`,
`baseline`, `report --final`), refreshed while a long phase runs."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.core.workspace import write_json

STALE_AFTER_S = 120.0
PROGRESS_EVERY_S = 1.0   # a benchmark pass reports every task; the file is rewritten at most this often for it


class Heartbeat:
    def __init__(self, path: Path, refresh_s: float = 15.0, command: str = "run"):
        self.path = path
        self.refresh_s = refresh_s
        self.state: dict[str, Any] = {"pid": os.getpid(), "command": command, "started": time.time(),
                                      "phase": "starting", "iteration": None, "since": time.time(), "progress": None}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = 0.0

    def start(self) -> Heartbeat:
        self._write()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def set(self, phase: str, iteration: int | None = None, **extra: Any) -> None:
        with self._lock:
            self.state.update(phase=phase, iteration=iteration, since=time.time(), progress=None, **extra)
        self._write()

    def phase(self, name: str, iteration: int | None) -> None:
        """The pipeline's phase observer. The final test scores the best commit: its iteration number says
        which code is scored, not how far the run got, so the iteration shown stays the last one run."""
        self.set(name, self.state.get("iteration") if name.startswith("final") else iteration)

    def progress(self, label: str, done: int, total: int) -> None:
        """A benchmark pass's count (`status` shows it): kept at once, written at most every second."""
        with self._lock:
            self.state["progress"] = {"label": label, "done": done, "total": total}
            due = done >= total or time.monotonic() - self._written >= PROGRESS_EVERY_S
        if due:
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
            self._written = time.monotonic()
            data = dict(self.state)
        write_json(self.path, data)


def unit(phase: str | None) -> str:
    """What a stop asked for during `phase` lets finish: this iteration, the baseline or the final test score."""
    phase = phase or ""
    return ("the baseline" if phase.startswith("baseline") else "the final test score" if phase.startswith("final")
            else "this iteration")


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


def is_running(hb: dict[str, Any]) -> bool:
    """The process that wrote `hb` is still at work: not stopped, its heartbeat fresh, its pid alive."""
    pid = hb.get("pid")
    if hb.get("phase") == "stopped" or is_stale(hb) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a process of that pid that is not ours to signal: alive
    return True
