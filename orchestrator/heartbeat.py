"""heartbeat.json: what the process holding the workspace is doing right now (the daemon, or `run --once`,
`baseline`, `report --final`), refreshed while a long phase runs.

The top-level `phase`, `iteration` and `progress` are the latest any iteration reported; `in_flight` has one
entry per iteration in flight (several with `loop.parallel` > 1), each with its own phase and progress."""

from __future__ import annotations

import json
import os
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from orchestrator.core.workspace import write_json

STALE_AFTER_S = 120.0
# The iteration whose phase this thread entered last; the task pool runs its jobs in their submitter's context,
# so a job's progress is counted for the iteration that asked for it.
_RUNNING: ContextVar[int | None] = ContextVar("autoharness_iteration", default=None)
PROGRESS_EVERY_S = 1.0   # a benchmark pass reports every task; the file is rewritten at most this often for it


class Heartbeat:
    def __init__(self, path: Path, refresh_s: float = 15.0, command: str = "run"):
        self.path = path
        self.refresh_s = refresh_s
        self.state: dict[str, Any] = {"pid": os.getpid(), "command": command, "started": time.time(),
                                      "phase": "starting", "iteration": None, "since": time.time(), "progress": None,
                                      "in_flight": []}
        self._flight: dict[int, dict[str, Any]] = {}   # iteration -> its entry of `in_flight`
        self._lock = threading.Lock()
        self._writing = threading.Lock()
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

    def phase(self, name: str, iteration: int | None, **fields: Any) -> None:
        """The pipeline's phase observer, called from the thread that runs `iteration`; `fields` (the best it
        started from, its focus group) are kept with its entry, and "done" ends the entry. The final test scores
        the best commit: its iteration number says which code is scored, not how far the run got, so the
        iteration shown stays the last one run; neither it nor the baseline is a candidate in flight."""
        now = time.time()
        with self._lock:
            if name == "done":
                self._leave(iteration)
            else:
                final = name.startswith("final")
                self.state.update(phase=name, iteration=self.state.get("iteration") if final else iteration,
                                  since=now, progress=None)
                if iteration is not None and not final and not name.startswith("baseline"):
                    entry = self._flight.setdefault(iteration, {"iteration": iteration, "started": now})
                    entry.update(fields, phase=name, since=now, progress=None)
                    _RUNNING.set(iteration)
            self._publish()
        self._write()

    def progress(self, label: str, done: int, total: int, iteration: int | None = None) -> None:
        """A benchmark pass's count (`status` shows it): kept at once, written at most every second. It belongs
        to `iteration`, else to the one this thread (or the task pool job's submitter) runs, else to the only
        one in flight."""
        report = {"label": label, "done": done, "total": total}
        with self._lock:
            n = iteration if iteration is not None else _RUNNING.get()
            entry = self._flight.get(n) if n is not None else None
            if entry is None and len(self._flight) == 1:
                entry = next(iter(self._flight.values()))
            if entry is not None:
                entry["progress"] = report
                self._publish()
            if entry is None or entry["iteration"] == self.state.get("iteration"):
                self.state["progress"] = report  # the top level's phase, iteration and count go together
            due = done >= total or time.monotonic() - self._written >= PROGRESS_EVERY_S
        if due:
            self._write()

    def stop(self, reason: str) -> None:
        self._done.set()
        with self._lock:
            self._flight.clear()  # what was cut short is no longer in flight: the next start redoes it
            self._publish()
        self.set("stopped", self.state.get("iteration"), stop_reason=reason)

    def _beat(self) -> None:
        while not self._done.wait(self.refresh_s):
            self._write()

    def _leave(self, iteration: int | None) -> None:
        if iteration is not None:
            self._flight.pop(iteration, None)
        if _RUNNING.get() == iteration:
            _RUNNING.set(None)

    def _publish(self) -> None:
        """`in_flight` from the entries, oldest iteration first (under the lock; the writer copies it whole)."""
        self.state["in_flight"] = [dict(entry) for _, entry in sorted(self._flight.items())]

    def _write(self) -> None:
        # One writer at a time, each copying the state as it starts: the last to write holds the newest state.
        with self._writing:
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


def in_flight_iterations(state: dict[str, Any]) -> list[int]:
    """The iterations a heartbeat has in flight, oldest first; one written before `in_flight` existed has at
    most its top-level iteration."""
    if "in_flight" in state:
        return [entry["iteration"] for entry in state["in_flight"]]
    return [] if state.get("iteration") is None else [state["iteration"]]


def cancelled(state: dict[str, Any]) -> str:
    """What a second signal cancels at once: the baseline, the final test score, or the iterations in flight
    (`iteration 5`, `iterations 5, 6, 7`)."""
    what = unit(state.get("phase"))
    if what != "this iteration":
        return what
    ns = in_flight_iterations(state) or [state.get("iteration")]
    return f"iteration{'s' if len(ns) > 1 else ''} {', '.join(map(str, ns))}"


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
