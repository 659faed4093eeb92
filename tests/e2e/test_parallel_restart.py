"""A daemon with three candidates in flight, SIGKILLed, restarted and run to the end, records what an
uninterrupted run of the same project records."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.test_daemon import assert_consistent, run_to_end, start, wait_for
from tests.parallel_bench import decided, events, make_parallel
from tests.toy import Toy

pytestmark = pytest.mark.slow

# Candidates finish in the order of their numbers, 1.5 s apart, whenever they start together (as 1-3 do, in
# either run, and again after the restart): so which best each is gated against, and its val score, are
# the scenario's. The guard's candidate (4) is refused whatever the best is.
QUEUE = ["refund", "track", "cancel", "guard"]
DELAYS = {1: 1.5, 2: 3.0, 3: 4.5, 4: 0.5}


def project(root: Path) -> Toy:
    return make_parallel(root, QUEUE, parallel=3, delays=DELAYS)


def outcome(toy: Toy) -> tuple[set[tuple], str]:
    """What the two runs must agree on: each decision, and the tree of the best commit."""
    rows = {(r["n"], r["decision"], r["stage"], r["val_score"]) for r in decided(toy).values()}
    return rows, toy.git("rev-parse", "autoharness^{tree}")


def three_in_flight(toy: Toy) -> bool:
    """Iterations 1-3 started and none decided (only the baseline is recorded)."""
    try:
        return len({e["iteration"] for e in events(toy, "started")}) >= 3 and set(decided(toy)) == {0}
    except sqlite3.OperationalError:  # no state.db yet, or not its tables
        return False


def test_sigkill_with_three_in_flight_then_restart_matches_an_uninterrupted_run(tmp_path):
    reference = project(tmp_path / "reference")
    res = run_to_end(reference)
    assert res.returncode == 0, res.stderr
    want = outcome(reference)
    assert {(n, d, s) for n, d, s, _ in want[0]} == {
        (0, "baseline", ""), (1, "accepted", ""), (2, "accepted", ""), (3, "accepted", ""), (4, "rejected", "guard")}

    toy = project(tmp_path / "killed")
    proc = start(toy)
    try:
        wait_for(lambda: three_in_flight(toy), timeout=120, what="three candidates in flight")
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert set(decided(toy)) == {0}  # nothing decided: the three are redone
    res = run_to_end(toy)
    assert res.returncode == 0, res.stderr
    assert outcome(toy) == want
    assert_consistent(toy)
    # Each of the three was started again at the restart, under its own number.
    redone = [e["iteration"] for e in events(toy, "started")]
    assert all(redone.count(n) == 2 for n in (1, 2, 3)) and redone.count(4) == 1
