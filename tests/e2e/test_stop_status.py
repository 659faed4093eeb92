"""Stopping with real signals and what `status` says meanwhile and after: the daemon, `run --once` and
`baseline` each get SIGINT as a terminal's Ctrl-C sends it, once (drain) or twice (cancel)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from tests.e2e.test_daemon import assert_consistent, beat, records, wait_for
from tests.toy import REPO, Toy, cli

pytestmark = pytest.mark.slow

DRAIN = "stopping after this iteration (up to 600 s); Ctrl-C again to cancel it now"


class Running:
    """`autoharness ARGS` on the toy, its stdout read line by line as it comes (to answer a line with a signal)."""

    def __init__(self, toy: Toy, *args: str, sleep: str = "1"):
        env = {**os.environ, "PYTHONPATH": str(REPO), "TOY_TASK_SLEEP": sleep}
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "--config", str(toy.config), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                        daemon=True)
        self._reader.start()

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, list[str], str]:
        try:
            err = self.proc.stderr.read()
            self.proc.wait(timeout=180)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(timeout=10)
        return self.proc.returncode, [ln.rstrip("\n") for ln in self.lines], err


def status(toy: Toy) -> tuple[str, dict]:
    return cli(toy, "status").stdout, json.loads(cli(toy, "status", "--json").stdout)


def test_ctrl_c_in_iteration_3_drains_it_and_status_says_iteration_3(queued):
    toy = queued
    run = Running(toy, "run")
    # The suite of iteration 3 runs tasks of 1 s: the signal lands inside its gate, before its decision.
    wait_for(lambda: beat(toy).get("phase") == "gate" and beat(toy).get("iteration") == 3, timeout=180,
             what="the gate of iteration 3")
    run.interrupt()
    code, out, err = run.finish()
    assert code == 0, err  # stopped cleanly: the iteration finished and was recorded
    assert err == ""
    # Said at once, before the iteration it lets finish is decided; no further iteration starts.
    assert out.index(DRAIN) < out.index("iteration 3: rejected (suite): suite 0/2 = 0% < 80%")
    assert out[-1] == "stopped: SIGINT; the test split was not scored (`autoharness report --final` scores it)"
    assert [r[4] for r in records(toy)] == ["baseline", "accepted", "rejected", "rejected"]
    text, data = status(toy)
    assert f"daemon: pid {run.proc.pid}, phase stopped, iteration 3, for " in text
    assert text.rstrip().endswith("; stopped: SIGINT")
    hb = data["heartbeat"]
    assert (hb["phase"], hb["iteration"], hb["stop_reason"], hb["running"]) == ("stopped", 3, "SIGINT", False)
    assert data["final_test"] is None  # a stop that was asked for does not score the test split
    assert_consistent(toy)


def test_second_ctrl_c_cancels_at_once_without_a_traceback(queued):
    toy = queued
    run = Running(toy, "run")
    wait_for(lambda: beat(toy).get("phase") == "gate" and beat(toy).get("iteration") == 1, timeout=180,
             what="the gate of iteration 1")
    run.interrupt()
    wait_for(lambda: run.said(DRAIN), what="the line saying what the first Ctrl-C does")
    run.interrupt()
    code, out, err = run.finish()
    assert code == 130  # 128 + SIGINT: the run was cancelled, not finished
    assert err == ""
    assert out[-2:] == ["cancelling iteration 1 now",
                        "stopped: SIGINT (iteration 1 cancelled: second SIGINT; it is redone next time)"]
    assert len(records(toy)) == 1  # the cancelled iteration left no row
    text, data = status(toy)
    assert "phase stopped, iteration 1, for " in text and "iteration 1 cancelled" in text
    assert data["heartbeat"]["iteration"] == 1
    assert_consistent(toy)
    # It is redone by the next start, from where the records are.
    res = Running(toy, "run", sleep="0").finish()
    assert res[0] == 0, res[2]
    assert [r[4] for r in records(toy)][:2] == ["baseline", "accepted"]


def test_status_during_the_baseline_says_it_runs_and_how_far(queued):
    toy = queued
    run = Running(toy, "run", sleep="3")  # the val pass lasts over 10 s: status is read well inside it
    try:
        wait_for(lambda: (beat(toy).get("progress") or {}).get("label", "").startswith("baseline val"), timeout=120,
                 what="a progress count of the baseline's val pass")
        text, data = status(toy)
        first, second = text.splitlines()[:2]
        assert first == "the baseline is running (no results yet)"
        assert second.startswith(f"daemon: pid {run.proc.pid}, phase baseline:val, baseline val (A/A, 2 runs) ")
        assert " tasks, for " in second
        assert data["baseline_running"] and data["heartbeat"]["running"] and data["rows"] == []
        progress = data["heartbeat"]["progress"]
        assert progress["total"] == 8 and 1 <= progress["done"] <= 8
    finally:
        run.proc.kill()
        run.finish()
    # Killed mid-baseline: nothing runs any more, and status says so at once (no two-minute wait).
    text, data = status(toy)
    assert text.splitlines()[0] == "no baseline yet: run `autoharness baseline`"
    assert "(not running: its heartbeat is stale or its process is gone; the next start resumes)" in " ".join(
        text.split())
    assert not data["baseline_running"] and not data["heartbeat"]["running"]


def test_ctrl_c_during_run_once_lets_its_iteration_finish(queued):
    toy = queued
    cli(toy, "baseline")
    run = Running(toy, "run", "--once")
    wait_for(lambda: beat(toy).get("command") == "run --once" and beat(toy).get("phase") == "gate", timeout=120,
             what="the gate of run --once")
    run.interrupt()
    code, out, err = run.finish()
    assert (code, err) == (0, "")
    assert out == [DRAIN, "iteration 1: accepted: val 0.2500 -> 0.7500"]
    assert [r[4] for r in records(toy)] == ["baseline", "accepted"]
    text, _ = status(toy)
    assert f"run --once: pid {run.proc.pid}, phase stopped, iteration 1, for " in text
    assert_consistent(toy)


def test_ctrl_c_twice_during_baseline_cancels_it_and_it_is_redone(queued):
    toy = queued
    run = Running(toy, "baseline")
    wait_for(lambda: beat(toy).get("phase") == "baseline:val", timeout=120, what="the baseline's val pass")
    run.interrupt()
    wait_for(lambda: run.said("stopping after the baseline"), what="the line saying what the first Ctrl-C does")
    run.interrupt()
    code, out, err = run.finish()
    assert (code, err) == (130, "")
    assert out == ["stopping after the baseline (up to 600 s); Ctrl-C again to cancel it now",
                   "cancelling the baseline now",
                   "stopped: SIGINT (the baseline cancelled: second SIGINT; it is redone next time)"]
    text, data = status(toy)
    assert text.startswith("no baseline yet")
    assert f"baseline: pid {run.proc.pid}, phase stopped, for " in text
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT COUNT(*) FROM iterations").fetchone()[0] == 0
    interrupted = db.execute("SELECT iteration, data FROM events WHERE kind='interrupted'").fetchall()
    assert [(n, json.loads(data)["phase"]) for n, data in interrupted] == [(0, "baseline:val")]
    assert_consistent(toy)
    again = cli(toy, "baseline")
    assert again.stdout.startswith("baseline: val 0.250, train 2/6, test 0.3333, commit ")


def test_status_after_a_night_that_ended_names_its_last_iteration(queued):
    toy = queued
    toy.config.write_text(toy.config.read_text() + "[loop]\nplateau = 2\n")
    code, out, err = Running(toy, "run", sleep="0").finish()
    assert code == 0, err
    assert out[-1] == "stopped: plateau (2 rejections in a row)"
    # The final test scored the best commit, iteration 1's; the night got as far as iteration 3.
    text, data = status(toy)
    assert (data["heartbeat"]["phase"], data["heartbeat"]["iteration"]) == ("stopped", 3)
    assert data["final_test"] is not None
    assert "phase stopped, iteration 3, for " in text
