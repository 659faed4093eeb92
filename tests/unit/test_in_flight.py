"""Several iterations in flight at once: each worker thread's own Phases (`fork`), and the heartbeat's
`in_flight`, one entry per iteration with its phase, base, focus group and progress, fed from those threads."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog

from orchestrator import heartbeat
from orchestrator.heartbeat import Heartbeat
from orchestrator.logs import LOG_FILE, LOGGER, Phases, configure_logging
from orchestrator.pool import LocalExecutor, TaskPool

GROUPS = {5: "[crash] KeyError in eval.py:lookup", 6: "[wrong answer] off by one", 7: "[timeout] slow tool"}


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    std = logging.getLogger(LOGGER)
    for h in list(std.handlers):
        std.removeHandler(h)
        h.close()
    std.propagate = True
    structlog.reset_defaults()


def events(logs_dir: Path) -> list[tuple[str, str, int | None]]:
    got = [json.loads(ln) for ln in (logs_dir / LOG_FILE).read_text().splitlines()]
    return [(g["event"], g["phase"], g.get("iteration")) for g in got]


def test_a_fork_has_its_own_phase_and_the_same_logger_and_observers(tmp_path):
    heard: list[tuple[Any, ...]] = []
    root = Phases(configure_logging(tmp_path, secrets=[], console_level="off"),
                  [lambda name, n, **fields: heard.append((name, n, fields))])
    a, b = root.fork(), root.fork()
    a.enter("propose", iteration=5, base=4, group=GROUPS[5])
    b.enter("propose", iteration=6, base=4)
    a.enter("gate", iteration=5)    # ends a's propose only: b's is still open
    b.finish(6)
    a.end()
    b.end()                         # nothing open: no second end
    assert events(tmp_path) == [("phase_start", "propose", 5), ("phase_start", "propose", 6),
                                ("phase_end", "propose", 5), ("phase_start", "gate", 5),
                                ("phase_end", "propose", 6), ("phase_end", "gate", 5)]
    assert heard == [("propose", 5, {"base": 4, "group": GROUPS[5]}), ("propose", 6, {"base": 4}),
                     ("gate", 5, {}), ("done", 6, {})]
    assert root.observers == a.observers and a.observers is not root.observers


def test_three_threads_in_flight_and_one_finished(tmp_path):
    beat = Heartbeat(tmp_path / "heartbeat.json", refresh_s=3600).start()
    root = Phases(configure_logging(tmp_path / "logs", secrets=[], console_level="off"), [beat.phase])
    entered, progressed, finished = (threading.Barrier(3) for _ in range(3))

    def worker(n: int) -> None:
        phases = root.fork()
        phases.enter("propose", iteration=n, base=4, group=GROUPS[n])
        entered.wait()
        phases.enter("gate", iteration=n)
        beat.progress("val", n, 10)      # the count of this thread's iteration, by label as today
        progressed.wait()
        if n == 6:
            phases.finish(6)
        finished.wait()

    threads = [threading.Thread(target=worker, args=(n,)) for n in (5, 6, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hb = heartbeat.read(beat.path)
    assert hb is not None and hb["phase"] == "gate" and hb["iteration"] in (5, 6, 7)
    assert hb["progress"] == {"label": "val", "done": hb["iteration"], "total": 10}  # the top level's own
    flight = hb["in_flight"]
    assert [e["iteration"] for e in flight] == [5, 7] == heartbeat.in_flight_iterations(hb)
    for e in flight:
        n = e["iteration"]
        assert (e["phase"], e["base"], e["group"]) == ("gate", 4, GROUPS[n])
        assert e["progress"] == {"label": "val", "done": n, "total": 10}
        assert e["started"] <= e["since"] <= hb["updated"]
    assert heartbeat.cancelled(hb) == "iterations 5, 7"
    beat.stop("SIGTERM")
    hb = heartbeat.read(beat.path)
    assert hb is not None and (hb["phase"], hb["in_flight"]) == ("stopped", [])


def test_one_at_a_time_keeps_todays_keys_and_leaves_baseline_and_final_out(tmp_path):
    beat = Heartbeat(tmp_path / "heartbeat.json", refresh_s=3600).start()
    today = {"pid", "command", "started", "phase", "iteration", "since", "progress", "updated"}
    beat.phase("baseline:val", 0)
    beat.progress("val", 4, 4)      # the pass's last count is written at once
    hb = heartbeat.read(beat.path)
    assert hb is not None and set(hb) == today | {"in_flight"} and hb["in_flight"] == []
    assert hb["progress"] == {"label": "val", "done": 4, "total": 4}
    beat.phase("propose", 1, base=0, group="[crash] x")
    beat.phase("gate", 1)
    beat.progress("suite", 2, 2)
    (entry,) = heartbeat.read(beat.path)["in_flight"]  # type: ignore[index]
    assert (entry["iteration"], entry["phase"], entry["group"], entry["progress"]["done"]) == (1, "gate", "[crash] x", 2)
    assert heartbeat.cancelled(beat.state) == "iteration 1"
    beat.phase("done", 1)
    beat.phase("final:test", 1)           # scores the best commit: not a candidate, and the iteration shown stays
    hb = heartbeat.read(beat.path)
    assert hb is not None and (hb["phase"], hb["iteration"], hb["in_flight"]) == ("final:test", 1, [])
    assert heartbeat.cancelled(hb) == "the final test score"


def test_progress_from_another_thread_goes_to_the_named_or_the_only_iteration(tmp_path):
    beat = Heartbeat(tmp_path / "heartbeat.json", refresh_s=3600)
    beat.phase("gate", 3)

    def elsewhere(*args: Any, **kw: Any) -> None:
        t = threading.Thread(target=beat.progress, args=args, kwargs=kw)
        t.start()
        t.join()

    elsewhere("val", 1, 5)     # a pool thread's tick: the only iteration in flight
    assert beat.state["in_flight"][0]["progress"]["done"] == 1
    beat.phase("propose", 4)
    elsewhere("val", 2, 5)     # two in flight and no name: the top level only
    assert [e["progress"] for e in beat.state["in_flight"]] == [{"label": "val", "done": 1, "total": 5}, None]
    elsewhere("val", 3, 5, iteration=4)
    assert beat.state["in_flight"][1]["progress"]["done"] == 3 and beat.state["progress"]["done"] == 3
    elsewhere("val", 4, 5, iteration=3)    # not the top level's iteration (4): its count stays
    assert beat.state["in_flight"][0]["progress"]["done"] == 4 and beat.state["progress"]["done"] == 3


def test_an_older_heartbeat_names_its_one_iteration():
    assert heartbeat.in_flight_iterations({"phase": "gate", "iteration": 3}) == [3]
    assert heartbeat.in_flight_iterations({"phase": "waiting", "iteration": None}) == []
    assert heartbeat.cancelled({"phase": "gate", "iteration": 3, "in_flight": []}) == "iteration 3"
    assert heartbeat.cancelled({"phase": "baseline:val", "iteration": 0}) == "the baseline"


def test_a_task_pool_job_counts_for_the_iteration_that_queued_it(tmp_path):
    """The task pool runs each job in a thread of its own: its progress still goes to its caller's iteration."""
    beat = Heartbeat(tmp_path / "heartbeat.json", refresh_s=3600)
    pool = TaskPool(2, LocalExecutor())
    queued = threading.Barrier(2)   # both in flight before either counts: neither is the only one

    def worker(n: int) -> None:
        beat.phase("gate", n)
        queued.wait()
        pool.submit(lambda: beat.progress("val", n, 9)).result()

    threads = [threading.Thread(target=worker, args=(n,)) for n in (8, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()
    assert [(e["iteration"], e["progress"]["done"]) for e in beat.state["in_flight"]] == [(8, 8), (9, 9)]
