"""The daemon draws the report off the loop's thread after each iteration, and a last time, in its own
thread, after the final test: the morning report is complete when the session returns."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from orchestrator.core.config import load_config
from orchestrator.daemon import Daemon
from orchestrator.store import Store
from tests.toy import SPLIT, TASKS, make_toy, skills_file


def test_the_session_draws_in_the_background_and_last_after_the_final_test(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    for k, skills in enumerate([("alpha", "beta"), ("alpha", "delta")], 1):
        toy.add_patch(f"000{k}.patch", {"agent/skills.py": skills_file(*skills)})
    daemon = Daemon(load_config(toy.config), Console(file=io.StringIO()))
    draws: list[tuple[str, bool]] = []
    draw = daemon.report._write

    def spied() -> None:
        draw()
        page = (toy.workspace / "report.html").read_text()
        draws.append((threading.current_thread().name, "final not scored" in page))

    daemon.report._write = spied
    reason = daemon.session(None)
    assert reason == "nothing left to propose"
    store = Store(toy.workspace / "state.db", readonly=True)
    decided, final = len(store.iterations()), store.get("final_test")
    store.close()
    assert final is not None and decided == 3
    *background, last = draws
    assert background and {name for name, _ in background} == {"report-writer"}
    assert last == (threading.current_thread().name, False)  # drawn here, with the final test's score
