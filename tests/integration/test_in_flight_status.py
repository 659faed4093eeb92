"""`autoharness status` beside a process with several candidates in flight: a table of them, from the
heartbeat it writes; nothing more when one runs alone with `loop.parallel = 1`, or once the process stopped."""

from __future__ import annotations

import json
import re

from orchestrator.heartbeat import Heartbeat
from tests.toy import Toy, cli

WIDE = {"COLUMNS": "160"}


def in_flight(toy: Toy, *iterations: int) -> Heartbeat:
    """A live heartbeat (this test's process) of candidates in the gate, based on iteration 4."""
    beat = Heartbeat(toy.workspace / "heartbeat.json", refresh_s=3600, command="run").start()
    for n in iterations:
        beat.phase("propose", n, base=4, group=f"[crash] KeyError in eval.py:lookup{n} " + "x" * 60)
        beat.phase("gate", n)
        beat.progress("val", n, 10, iteration=n)
    beat.progress("val", 10, 10, iteration=iterations[-1])   # the pass's last count: written at once
    return beat


def rows(text: str) -> list[list[str]]:
    """The in-flight table's body rows, cells stripped."""
    table = text.split("in flight", 1)[1] if "in flight" in text else ""
    return [[c.strip() for c in ln.split("│")[1:-1]] for ln in table.splitlines()
            if re.match(r"│\s+\d+\s+│", ln)]


def test_status_shows_every_candidate_in_flight(queued):
    toy = queued
    toy.workspace.mkdir()
    beat = in_flight(toy, 5, 6, 7)
    beat.phase("done", 6)
    out = cli(toy, "status", env=WIDE).stdout
    assert "no baseline yet" in out and "phase gate, iteration 7" in out
    got = rows(out)
    assert [(r[0], r[1], r[3]) for r in got] == [("5", "gate", "4"), ("7", "gate", "4")]
    assert all(re.fullmatch(r"\d+s", r[2]) for r in got)  # how long each has been in its phase
    assert [r[-1] for r in got] == ["val 5/10", "val 10/10"]
    assert got[0][4].startswith("[crash] KeyError in eval.py:lookup5 x") and got[0][4].endswith("…")
    data = json.loads(cli(toy, "status", "--json").stdout)
    assert [e["iteration"] for e in data["heartbeat"]["in_flight"]] == [5, 7]
    beat.stop("SIGTERM")
    assert "in flight" not in cli(toy, "status", env=WIDE).stdout


def test_one_candidate_alone_is_the_line_unless_parallel(queued):
    toy = queued
    toy.workspace.mkdir()
    in_flight(toy, 3)
    out = cli(toy, "status", env=WIDE).stdout
    assert "phase gate, iteration 3, val 10/10 tasks" in out and "in flight" not in out
    toy.config.write_text(toy.config.read_text() + "\n[loop]\nparallel = 3\n")
    assert [r[0] for r in rows(cli(toy, "status", env=WIDE).stdout)] == ["3"]
