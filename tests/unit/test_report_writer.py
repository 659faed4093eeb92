"""The daemon's report writer (orchestrator/daemon.py ReportWriter): requests return at once, draws happen in
one background thread and never overlap, requests made during a draw are coalesced, a failed draw is logged
and the next one still happens, and `finish` draws a last time in the caller's thread."""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.daemon import ReportWriter


class Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


class Records:
    """What the report is drawn from: a version the test bumps, and the draws, each with the version it saw
    and its thread. The first draw waits until the test lets it go, so requests can arrive during a draw."""

    def __init__(self, fail_first: bool = False) -> None:
        self.version = 0
        self.draws: list[tuple[int, str]] = []
        self.drawing = threading.Event()
        self.go = threading.Event()
        self.overlaps = 0
        self._busy = threading.Lock()
        self.fail_first = fail_first

    def draw(self) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            return
        try:
            seen = self.version
            self.drawing.set()
            self.go.wait(timeout=30)
            self.draws.append((seen, threading.current_thread().name))
            if self.fail_first and len(self.draws) == 1:
                raise RuntimeError("disk full")
        finally:
            self._busy.release()


def test_requests_return_while_a_draw_runs_and_are_coalesced() -> None:
    records = Records()
    writer = ReportWriter(records.draw, Log())
    writer.request()
    assert records.drawing.wait(timeout=30)  # the draw started, and blocks in its thread ...
    for _ in range(5):                        # ... while requests still return
        records.version += 1
        writer.request()
    assert records.draws == []
    records.go.set()
    writer.finish()
    threads = [name for _, name in records.draws]
    assert threads[0] == "report-writer" and threads[-1] == threading.current_thread().name
    # Five requests during the first draw make at most one more background draw, then the final one.
    assert len(records.draws) in (2, 3) and records.overlaps == 0
    assert records.draws[-1][0] == 5 and records.draws[0][0] == 0


def test_a_failed_draw_is_logged_and_the_next_one_happens() -> None:
    records, log = Records(fail_first=True), Log()
    records.go.set()
    writer = ReportWriter(records.draw, log)
    writer.request()
    assert records.drawing.wait(timeout=30)
    writer.finish()
    assert len(records.draws) == 2 and records.draws[0][1] == "report-writer"
    assert log.warnings == [("report_failed", {"error": "RuntimeError: disk full"})]


def test_finish_with_no_request_draws_once_and_the_writer_serves_again_after_it() -> None:
    records = Records()
    records.go.set()
    writer = ReportWriter(records.draw, Log())
    writer.finish()
    assert [name for _, name in records.draws] == [threading.current_thread().name]
    records.drawing.clear()
    writer.request()  # a scheduled daemon's next night: a new thread
    assert records.drawing.wait(timeout=30)
    writer.finish()
    assert [name for _, name in records.draws][1:] == ["report-writer", threading.current_thread().name]


def test_draws_are_paced_by_what_the_last_one_took() -> None:
    """With a pace too long to wait out, a request after a draw waits for `finish`, which draws it."""
    records = Records()
    records.go.set()
    writer = ReportWriter(records.draw, Log())
    writer.PACE = 1e6
    writer.request()
    assert records.drawing.wait(timeout=30)
    records.version += 1
    writer.request()
    writer.finish()
    assert records.draws == [(0, "report-writer"), (1, threading.current_thread().name)]
