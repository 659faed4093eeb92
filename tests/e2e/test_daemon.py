"""The daemon with real processes: SIGKILL at every phase then restart, drain on SIGTERM, one daemon per
workspace, and each stop condition with its recorded reason."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.toy import REPO, SPLIT, TASKS, Toy, cli, make_toy

pytestmark = pytest.mark.slow


def start(toy: Toy, *args: str, env: dict[str, str] | None = None, kill_at: str = "") -> subprocess.Popen[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    entry = ["-m", "tests.kill_at", kill_at] if kill_at else ["-m", "orchestrator"]
    return subprocess.Popen([sys.executable, *entry, "--config", str(toy.config), "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)


def wait_for(pred, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def beat(toy: Toy) -> dict:
    try:
        return json.loads((toy.workspace / "heartbeat.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def records(toy: Toy) -> list[tuple]:
    """What an uninterrupted run and a killed-and-restarted one must agree on. With more than one slot, how far
    a rejected candidate's suite or val got before its early stop depends on which of the pool's runs landed
    first (its score, counts and wording), so a rejection by those stages is compared by its stage alone."""
    lines = (toy.workspace / "results.tsv").read_text().splitlines()[1:]
    rows = []
    for ln in lines:
        c = ln.split("\t")
        if c[6] == "rejected" and c[7].startswith(("suite:", "val:")):
            rows.append((c[0], "", "", "", c[6], c[7].split(":", 1)[0], c[8], c[9]))
        else:
            rows.append((c[0], c[1], c[3], c[4], c[6], c[7], c[8], c[9]))
    return rows


def branch_log(toy: Toy) -> list[str]:
    return toy.git("log", "--format=%s", "autoharness").splitlines()


def assert_consistent(toy: Toy) -> None:
    assert toy.git("status", "--porcelain") == ""
    assert len(toy.git("worktree", "list").splitlines()) == 1
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Exactly one commit on the branch per accepted row, and the tip is the recorded best.
    accepted = db.execute("SELECT commit_sha FROM iterations WHERE decision='accepted' ORDER BY n").fetchall()
    assert len(branch_log(toy)) == len(accepted) + 1
    if accepted:
        assert toy.git("rev-parse", "autoharness") == accepted[-1][0]


def run_to_end(toy: Toy, env: dict[str, str] | None = None, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    proc = start(toy, env=env, kill_at=kill_at)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def reference(queued, tmp_path_factory):
    """The records of an uninterrupted run of the queued toy."""
    res = run_to_end(queued)
    assert res.returncode == 0, res.stderr
    return records(queued), branch_log(queued)


KILL_POINTS = ["baseline:train:0", "baseline:val:0", "baseline:test:0", "train:1", "analyze:1", "propose:1", "gate:1",
               "commit:1", "record:1", "propose:2", "gate:3", "gate:5", "record:6"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_each_phase_then_restart(queued, point, tmp_path):
    toy = queued
    killed = run_to_end(toy, kill_at=point)
    assert killed.returncode == -signal.SIGKILL
    res = run_to_end(toy)
    assert res.returncode == 0, res.stderr
    assert_consistent(toy)
    got = records(toy)
    assert [r[4] for r in got] == ["baseline", "accepted", "rejected", "rejected", "rejected", "rejected", "accepted"]
    assert got[1][1] == "0.7500" and got[6][1] == "1.0000"
    assert branch_log(toy)[0].startswith("autoharness: iteration 6")
    db = sqlite3.connect(toy.workspace / "state.db")
    n_interrupted = db.execute("SELECT COUNT(*) FROM events WHERE kind='interrupted'").fetchone()[0]
    assert n_interrupted == 1


def test_random_kills_end_like_an_uninterrupted_run(queued, reference, tmp_path):
    ref_rows, ref_log = reference
    # A fresh copy of the same project, killed at random moments while tasks take a little time.
    toy = make_toy(tmp_path / "again", TASKS, SPLIT)
    for patch in sorted(queued.patches.glob("*.patch")):
        (toy.patches / patch.name).write_text(patch.read_text())
    rng = random.Random(7)
    env = {"TOY_TASK_SLEEP": "0.05"}
    for _ in range(4):
        proc = start(toy, env=env)
        time.sleep(rng.uniform(0.8, 3.0))
        proc.kill()
        proc.wait()
    res = run_to_end(toy, env=env)
    assert res.returncode == 0, res.stderr
    assert records(toy) == ref_rows
    assert branch_log(toy) == ref_log
    assert_consistent(toy)


def test_second_daemon_is_refused(queued):
    toy = queued
    first = start(toy, env={"TOY_TASK_SLEEP": "2"})  # slow enough to be running still when the second one asks
    try:
        wait_for(lambda: beat(toy).get("pid") == first.pid, what="first daemon's heartbeat")
        second = run_to_end(toy)
        assert second.returncode == 2 and "in use" in second.stderr
        once = cli(toy, "run", "--once", check=False)
        assert once.returncode == 2 and "in use" in once.stderr
    finally:
        first.kill()
        first.wait()
    # A stale lock from the killed process does not block a restart.
    res = run_to_end(toy)
    assert res.returncode == 0, res.stderr


def test_sigterm_drains_the_current_iteration(queued):
    toy = queued
    # Tasks of 1 s: iteration 1's gate lasts seconds, so the SIGTERM lands inside it even on a loaded machine.
    proc = start(toy, env={"TOY_TASK_SLEEP": "1"})
    wait_for(lambda: beat(toy).get("phase") == "gate" and beat(toy).get("iteration") == 1, what="gate of iteration 1")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rows = records(toy)
    assert len(rows) == 2 and rows[1][4] == "accepted"  # the iteration finished, no further one started
    assert "SIGTERM" in out
    assert beat(toy)["phase"] == "stopped"
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT stop_reason FROM runs").fetchone()[0] == "SIGTERM"
    assert_consistent(toy)


def test_sigterm_past_grace_cancels_and_kills_children(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT, backend='kind = "tests.toy:SleepyAgent"',
                   extra_config="[schedule]\ngrace_s = 1\n")
    proc = start(toy)
    wait_for(lambda: beat(toy).get("phase") == "propose", what="propose phase")

    def sleeping() -> list[str]:
        # Children of this daemon only: another `sleep 300` on the machine is none of its business.
        return subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "sleep 300"], capture_output=True,
                              text=True).stdout.split()

    wait_for(lambda: bool(sleeping()), what="the backend's child process")  # started, however loaded the machine
    sleepers = sleeping()
    assert sleepers
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # 128 + SIGTERM: the iteration was cancelled, not finished
    assert "cancelled" in out

    def gone(pid: str) -> bool:
        try:
            return open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    # Killed as the daemon cancelled; a loaded machine may take a moment to deliver the SIGKILL.
    wait_for(lambda: all(gone(pid) for pid in sleepers), timeout=10, what="the backend's child to die")
    for pid in sleepers:
        assert gone(pid)
    assert len(records(toy)) == 1  # only the baseline: the cancelled iteration is redone next time
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT COUNT(*) FROM events WHERE kind='interrupted' AND iteration=1").fetchone()[0] == 1
    assert_consistent(toy)


def test_budget_stops_with_warnings(queued):
    toy = queued
    toy.config.write_text(toy.config.read_text().replace('kind = "replay"', 'kind = "tests.toy:PricedReplay"')
                          + "[loop]\nbudget_usd = 2.5\n")
    res = run_to_end(toy)
    assert res.returncode == 0, res.stderr
    db = sqlite3.connect(toy.workspace / "state.db")
    reason = db.execute("SELECT stop_reason FROM runs").fetchone()[0]
    assert reason.startswith("budget_usd")
    assert len(records(toy)) == 4  # 3 proposals of $1: the third crosses 2.5, no fourth starts
    warnings = [r[0] for r in db.execute("SELECT message FROM events WHERE kind='budget_warning'")]
    assert len(warnings) == 2
    status = json.loads(cli(toy, "status", "--json").stdout)
    assert status["spend_usd"] == 3.0 and status["budget_usd"] == 2.5


def test_plateau_stops(queued):
    toy = queued
    toy.config.write_text(toy.config.read_text() + "[loop]\nplateau = 2\n")
    res = run_to_end(toy)
    assert res.returncode == 0, res.stderr
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT stop_reason FROM runs").fetchone()[0].startswith("plateau")
    assert [r[4] for r in records(toy)] == ["baseline", "accepted", "rejected", "rejected"]


def test_stop_file_stops_and_is_consumed(queued):
    toy = queued
    toy.workspace.mkdir()
    (toy.workspace / "STOP").write_text("")
    res = run_to_end(toy)
    assert res.returncode == 0, res.stderr
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT stop_reason FROM runs").fetchone()[0] == "STOP file"
    assert len(records(toy)) == 1
    assert not (toy.workspace / "STOP").exists()


def test_stop_command_drains_a_running_daemon(queued):
    toy = queued
    # Tasks of 1 s: the first gate lasts seconds, so `stop` (a Python start) lands inside it even loaded.
    proc = start(toy, env={"TOY_TASK_SLEEP": "1"})
    wait_for(lambda: beat(toy).get("phase") == "gate", what="gate phase")
    out = cli(toy, "stop").stdout
    assert "asked the daemon" in out
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert len(records(toy)) == 2


def test_window_end_stops_the_night_and_waits(queued):
    toy = queued
    # The window ends 10 s from now (a daemon starts and scores its baseline inside it even on a loaded
    # machine), within this minute; with tasks of 1 s the queue cannot run out in it.
    now = datetime.now(UTC)
    if now.second > 45:
        time.sleep(61 - now.second)
        now = datetime.now(UTC)
    fire = now.replace(second=0, microsecond=0)
    window_s = (now - fire).total_seconds() + 10.0
    toy.config.write_text(toy.config.read_text() + (
        f'[schedule]\nstart = "{fire.minute} {fire.hour} * * *"\nhours = {window_s / 3600:.6f}\ntimezone = "UTC"\n'
        "grace_s = 30\n"))
    proc = start(toy, env={"TOY_TASK_SLEEP": "1"})
    wait_for(lambda: beat(toy).get("phase") == "waiting", timeout=120, what="waiting for the next window")
    hb = beat(toy)
    assert datetime.fromisoformat(hb["next_window"]) > now + timedelta(hours=23)
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT stop_reason FROM runs").fetchone()[0] == "window end"
    rows = len(records(toy))
    assert 1 <= rows < 7  # stopped before the queue ran out
    status = cli(toy, "status").stdout
    assert "waiting" in status and "next window" in status
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert_consistent(toy)


class _Hook:
    """A local webhook receiver; `fail=True` answers 500 to everything."""

    def __init__(self, fail: bool = False):
        import http.server
        import threading
        self.bodies: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.bodies.append(json.loads(body))
                self.send_response(500 if fail else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.mark.parametrize("fail", [False, True])
def test_webhook_and_logs(queued, fail):
    toy = queued
    hook = _Hook(fail=fail)
    try:
        toy.config.write_text(toy.config.read_text() + f'[notify]\nwebhook = "{hook.url}"\n')
        res = run_to_end(toy)
    finally:
        hook.close()
    assert res.returncode == 0, res.stderr
    assert [r[4] for r in records(toy)][-1] == "accepted"  # a failing webhook never stops the loop
    events = [b["autoharness"]["event"] for b in hook.bodies]
    if not fail:
        assert events == ["accepted", "accepted", "summary"]
        assert "nothing left to propose" in hook.bodies[-1]["text"]
    else:
        assert len(events) > 3 and set(events) == {"accepted", "summary"}  # each message was retried
    lines = [json.loads(ln) for ln in (toy.workspace / "logs" / "autoharness.jsonl").read_text().splitlines()]
    gate = [ln for ln in lines if ln.get("phase") == "gate"]
    assert {"phase_start", "phase_end"} <= {ln["event"] for ln in gate}
    assert all("duration_s" in ln for ln in gate if ln["event"] == "phase_end")
    assert (toy.workspace / "report.html").exists()
