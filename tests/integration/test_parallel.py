"""Parallel candidates (`loop.parallel`) through the real CLI: real git, real benchmark subprocesses, real
SQLite. The scripted backend (tests/slow_replay.py) waits a set time per iteration, so the order in which
candidates finish is the scenario's, not the machine's; every assertion reads what the run recorded."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.config import load_config
from orchestrator.demo import make_demo
from orchestrator.driver import Driver
from tests.parallel_bench import ERRORS, decided, events, make_parallel, tip_file
from tests.toy import cli, tsv


def gate_json(toy, n: int) -> dict:
    return json.loads((toy.workspace / "iterations" / str(n) / "gate.json").read_text())


def started(toy) -> dict[int, dict]:
    """Each iteration's "started" event data (the first one: these runs are never interrupted)."""
    out: dict[int, dict] = {}
    for e in events(toy, "started"):
        out.setdefault(e["iteration"], e["data"])
    return out


def test_three_candidates_in_flight_on_distinct_groups(tmp_path):
    # All three start on the baseline. 1 is accepted; 3 (a change outside editable) is refused by the guard
    # with no replay, before or after 1 (the guard takes no time, 1's gate does); 2 returns last, is replayed
    # onto 1 and accepted.
    toy = make_parallel(tmp_path, ["refund", "track", "guard"], parallel=3, delays={1: 2.0, 2: 4.0, 3: 2.5})
    cli(toy, "run")
    rows = decided(toy)
    base = rows[0]
    assert sorted(rows) == [0, 1, 2, 3]  # later starts found the queue empty
    starts = started(toy)
    assert all(starts[n]["base"] == 0 and starts[n]["base_commit"] == base["commit_sha"] for n in (1, 2, 3))
    # Distinct groups, largest first (refund 3 train tasks, track 2, cancel 1), each named in its prompt.
    for n, skill in ((1, "refund"), (2, "track"), (3, "cancel")):
        assert ERRORS[skill] in starts[n]["group"], (n, starts[n])
        prompt = (toy.workspace / "iterations" / str(n) / "prompt.md").read_text()
        aim = next(line for line in prompt.splitlines() if "Make ONE focused change" in line)
        assert f"failure group {n} below" in aim and ERRORS[skill] in aim, aim
    # All three in flight at once: every one started before any was decided.
    assert max(rows[n]["started_at"] for n in (1, 2, 3)) < min(rows[n]["decided_at"] for n in (1, 2, 3))
    assert [(rows[n]["decision"], rows[n]["stage"]) for n in (1, 2, 3)] == [
        ("accepted", ""), ("accepted", ""), ("rejected", "guard")]
    # One row per proposal, in the order decided.
    in_order = sorted(rows.values(), key=lambda r: r["decided_at"])
    assert [r["iteration"] for r in tsv(toy)] == [str(r["n"]) for r in in_order]
    assert in_order[-1]["n"] == 2
    assert "replayed" not in gate_json(toy, 3)  # a guard rejection is decided without replay
    assert gate_json(toy, 2)["replayed"] == {"from": 0, "onto": 1}


def test_a_candidate_in_flight_is_replayed_onto_the_new_best(tmp_path):
    toy = make_parallel(tmp_path, ["refund", "track"], parallel=2, delays={1: 0.5, 2: 3.0})
    cli(toy, "run")
    rows = decided(toy)
    first, second = rows[1], rows[2]
    assert first["decision"] == "accepted"
    assert started(toy)[2]["base"] == 0
    assert second["started_at"] < first["decided_at"] < second["decided_at"]  # in flight when 1 was accepted
    gate = gate_json(toy, 2)
    assert gate["replayed"] == {"from": 0, "onto": 1}
    assert gate["best_commit"] == first["commit_sha"]  # gated against the new best, not its base
    assert second["decision"] == "accepted" and second["best_before"] == first["val_score"]
    assert second["val_score"] == 0.75  # both fixes: the refund and track val tasks pass
    assert toy.git("rev-parse", "autoharness") == second["commit_sha"]
    assert toy.git("rev-parse", "autoharness~1") == first["commit_sha"]
    assert tip_file(toy, "agent/refund.py") == "ENABLED = True"
    assert tip_file(toy, "agent/track.py") == "ENABLED = True"


def test_a_conflicting_candidate_is_recorded_as_conflict(tmp_path):
    # 2 rewrites the line 1 rewrote; 1 is accepted while 2 is in flight, so 2 cannot be replayed.
    toy = make_parallel(tmp_path, ["refund", "refund-other"], parallel=2, delays={1: 0.5, 2: 3.0})
    cli(toy, "run")
    rows = decided(toy)
    assert rows[1]["decision"] == "accepted"
    conflict = rows[2]
    assert (conflict["decision"], conflict["stage"]) == ("rejected", "conflict")
    assert "does not apply to iteration 1" in conflict["reason"]
    assert conflict["commit_sha"] == ""
    diff = (toy.workspace / "iterations" / "2" / "diff.patch").read_text()
    assert "+ENABLED = not False" in diff  # kept for the learnings
    row = tsv(toy)[2]
    assert row["decision"] == "rejected" and row["reason"].startswith("conflict: ")  # the stage, then its reason
    assert tip_file(toy, "agent/refund.py") == "ENABLED = True"  # the best is 1's, untouched
    assert toy.git("rev-parse", "autoharness") == rows[1]["commit_sha"]


def test_budget_rule_with_candidates_in_flight(tmp_path):
    # $10 for the night, $4 a proposal, K = 3: a third may not start while two are in flight (10 - 8 < 4).
    budget, cap = 10.0, 4.0
    toy = make_parallel(tmp_path, ["refund", "track", "cancel", "notes"], parallel=3, delays={1: 1.5, 2: 2.0},
                        cost_usd=4.0, max_cost_usd=cap, extra_loop=f"budget_usd = {budget}\n")
    cli(toy, "run")
    spent, in_flight, most = 0.0, {}, 0
    order = events(toy, "started", "proposal")
    for e in order:
        n = e["iteration"]
        if e["kind"] == "started":
            left = budget - spent - sum(in_flight.values())
            assert left >= cap if in_flight else e["data"]["cap_usd"] == min(cap, budget - spent), (e, spent, in_flight)
            in_flight[n] = e["data"]["cap_usd"]
            assert spent + sum(in_flight.values()) <= budget
            most = max(most, len(in_flight))
        else:
            spent += e["data"]["cost_usd"]
            del in_flight[n]
    assert most == 2
    # 1 and 2 start (in either order: each writes its event when its proposal begins), the third only once
    # both have returned, and nothing after it: the budget is spent.
    kinds = [(e["kind"], e["iteration"]) for e in order]
    assert set(kinds[:2]) == {("started", 1), ("started", 2)} and set(kinds[2:4]) == {("proposal", 1), ("proposal", 2)}
    assert kinds[4:] == [("started", 3), ("proposal", 3)]
    assert started(toy)[3]["cap_usd"] == 2.0  # none in flight: the cap is what is left
    status = json.loads(cli(toy, "status", "--json").stdout)
    assert status["spend_usd"] == 10.0
    stop = events(toy, "stop")[-1]["message"]
    assert stop.startswith("budget_usd")


# The demo's example (orchestrator/demo.py) run before parallel candidates existed: per iteration, decision,
# stage, val score, task runs, runs answered from the cache, runs saved by early stops.
# The demo's records before parallel candidates and the continuous pool (main at 88c4068): (n, decision,
# stage, val, tasks run, cached, skipped), at the demo's 4 slots and at 1.
DEMO_BEFORE = {4: [
    (0, "baseline", "", 0.375, 38, 0, 0),
    (1, "accepted", "", 0.625, 22, 20, 0),
    (2, "rejected", "guard", None, 0, 14, 0),
    (3, "rejected", "suite", None, 4, 14, 2),
    (4, "rejected", "val", 0.625, 14, 14, 0),
    (5, "accepted", "", 0.75, 22, 20, 0),
    (6, "accepted", "", 0.875, 22, 21, 0),
], 1: [
    (0, "baseline", "", 0.375, 38, 0, 0),
    (1, "accepted", "", 0.625, 22, 20, 0),
    (2, "rejected", "guard", None, 0, 14, 0),
    (3, "rejected", "suite", None, 2, 14, 4),
    (4, "rejected", "val", 0.625, 14, 14, 0),
    (5, "accepted", "", 0.75, 22, 20, 0),
    (6, "accepted", "", 0.875, 22, 21, 0),
]}
DEMO_SAMPLES_BEFORE = {4: 130, 1: 128}  # every task run the store holds, the final test's included


@pytest.mark.parametrize("slots", [1, 4])
def test_parallel_one_decides_and_counts_as_before(tmp_path, slots):
    """Every decision is today's. With one slot every count is too. With 4, an early stop is now decided as
    each result lands instead of after each chunk of 4, so the runs already started when it is decided (fewer
    than the slots) are what may differ: the tasks considered (run + skipped) are the same."""
    config = make_demo(tmp_path / "demo")
    text = config.read_text().replace("concurrency = 4", f"concurrency = {slots}")
    config.write_text(text + "parallel = 1\n")  # [loop] is the config's last table
    cfg = load_config(config)
    assert cfg.loop.parallel == 1 and cfg.benchmark.concurrency == slots
    with Driver(cfg) as driver:
        assert driver.session() == "nothing left to propose"
        rows = driver.ctx.store.iterations()
        samples = driver.ctx.store.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    got = [(r.n, r.decision, r.stage, r.val_score, r.tasks_run, r.tasks_cached, r.tasks_skipped) for r in rows]
    if slots == 1:
        assert got == DEMO_BEFORE[1]
        assert samples == DEMO_SAMPLES_BEFORE[1]
        return
    assert [g[:4] for g in got] == [b[:4] for b in DEMO_BEFORE[4]]
    for now, before in zip(got, DEMO_BEFORE[4], strict=True):
        n, ran, cached, skipped = now[0], now[4], now[5], now[6]
        if before[6] == 0:
            assert now == before, n
        else:
            assert (ran + skipped, cached) == (before[4] + before[6], before[5]), n
            assert 0 <= ran - before[4] < slots, n
