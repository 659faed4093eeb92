"""The bundled example: a real git repo made from target/, the patch queue applied with `git apply` in
the designed order (rejected patches left out), and bench/eval.py run as a subprocess on each split. The
decisions are the real loop's: `make demo`'s session on the example, read back from what it records
(state.db, results.tsv, iterations/N/gate.json)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from benchmarks.example import (
    EDITABLE,
    EVAL_SCRIPT,
    EXPECTED_FILE,
    PATCHES_DIR,
    SPLIT_FILE,
    TARGET_DIR,
    TASKS_FILE,
)
from orchestrator.core.config import Config, load_config
from orchestrator.core.scrub import id_pattern
from orchestrator.demo import make_demo
from orchestrator.driver import Driver
from orchestrator.guard import is_editable
from orchestrator.logs import LOGGER, configure_logging
from orchestrator.store import IterationRecord, Store

SPLIT = json.loads(SPLIT_FILE.read_text())
TASKS = {t["id"]: t for t in json.loads(TASKS_FILE.read_text())["tasks"]}
EXPECTED = json.loads(EXPECTED_FILE.read_text())
STEPS = ["baseline"] + [it["patch"] for it in EXPECTED["iterations"]]


def git(cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def run_eval(agent_dir: Path, ids: list[str] | None, traces: Path | None = None, cwd: Path | None = None,
             extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # Without PYTHONDONTWRITEBYTECODE: keeping bytecode out of the agent repo is eval.py's own job.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AUTOHARNESS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["AUTOHARNESS_AGENT_DIR"] = str(agent_dir)
    if ids is not None:
        env["AUTOHARNESS_TASK_IDS"] = ",".join(ids)
    if traces is not None:
        env["AUTOHARNESS_TRACES_DIR"] = str(traces)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, str(EVAL_SCRIPT)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def results(agent_dir: Path, ids: list[str] | None, **kwargs) -> dict[str, dict]:
    proc = run_eval(agent_dir, ids, **kwargs)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(set(r) == {"task_id", "reward", "error"} for r in rows)
    return {r["task_id"]: r for r in rows}


def passing(rows: dict[str, dict]) -> set[str]:
    return {t for t, r in rows.items() if r["reward"] == 1.0}


def mean(rows: dict[str, dict]) -> float:
    return sum(r["reward"] for r in rows.values()) / len(rows)


def new_repo(path: Path) -> Path:
    shutil.copytree(TARGET_DIR, path, ignore=shutil.ignore_patterns("__pycache__"))
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "baseline")
    return path


@dataclass
class Step:
    tree: Path
    changed: list[str]            # paths the patch touched, as the guard sees them (staged, new files too)
    diff: str
    scores: dict[str, dict[str, dict]]  # split -> task id -> result line


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict[str, Step]:
    """Baseline, then each patch applied to a fresh worktree of the best commit; accepted ones committed."""
    root = tmp_path_factory.mktemp("example")
    repo = new_repo(root / "repo")
    steps = {"baseline": Step(repo, [], "", {s: results(repo, ids) for s, ids in SPLIT.items()})}
    best = git(repo, "rev-parse", "HEAD").strip()
    for it in EXPECTED["iterations"]:
        tree = root / it["patch"].removesuffix(".patch")
        git(repo, "worktree", "add", "-q", "--detach", str(tree), best)
        git(tree, "apply", str(PATCHES_DIR / it["patch"]))
        git(tree, "add", "-A")
        changed = git(tree, "diff", "--cached", "--name-only").split()
        diff = git(tree, "diff", "--cached")
        steps[it["patch"]] = Step(tree, changed, diff, {s: results(tree, ids) for s, ids in SPLIT.items()})
        if it["decision"] == "accepted":
            git(tree, "commit", "-qm", it["patch"])
            best = git(tree, "rev-parse", "HEAD").strip()
    return steps


def test_accepted_patches_stack_and_rejected_ones_leave_no_trace(history):
    final = history[STEPS[-1]].tree
    log = git(final, "log", "--format=%s").split()
    assert log == ["0006-shipping-answers.patch", "0005-check-order-before-changing.patch",
                   "0001-tracking-details.patch", "baseline"]
    assert git(final, "diff", "--name-only", "main", "HEAD").split() == ["support_agent/agent.py"]
    agent = (final / "support_agent" / "agent.py").read_text()
    assert "re.IGNORECASE" not in agent and "Just to confirm" not in agent   # 0004 and 0003 left out


def test_split_is_a_partition_with_every_category_in_every_part():
    assert {k: len(v) for k, v in SPLIT.items()} == {"train": 14, "val": 8, "test": 8}
    ids = [t for part in SPLIT.values() for t in part]
    assert len(ids) == len(set(ids)) and set(ids) == set(TASKS)
    categories = {t["category"] for t in TASKS.values()}
    for part, part_ids in SPLIT.items():
        assert {TASKS[t]["category"] for t in part_ids} == categories, part


def test_eval_lists_its_tasks_for_the_command_runner(tmp_path):
    proc = run_eval(tmp_path, None, extra_env={"AUTOHARNESS_LIST_TASKS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == list(TASKS)


def test_the_queue_is_the_designed_one():
    assert sorted(p.name for p in PATCHES_DIR.glob("*.patch")) == STEPS[1:]
    decisions = [(it["decision"], it["stage"]) for it in EXPECTED["iterations"]]
    assert decisions == [("accepted", ""), ("rejected", "guard"), ("rejected", "suite"), ("rejected", "val"),
                         ("accepted", ""), ("accepted", "")]


@pytest.mark.parametrize("step", STEPS)
def test_scores_after_each_step_are_the_documented_ones(history, step):
    want = EXPECTED["baseline"] if step == "baseline" else next(
        it["passing"] for it in EXPECTED["iterations"] if it["patch"] == step)
    for part, rows in history[step].scores.items():
        assert set(rows) == set(SPLIT[part])
        assert passing(rows) == set(want[part]), (step, part)
        for task_id, row in rows.items():
            assert row["reward"] in (0.0, 1.0)
            assert bool(row["error"]) == (row["reward"] == 0.0), (task_id, row)


def test_baseline_is_weak_and_the_final_agent_good_but_not_perfect(history):
    base, final = history["baseline"].scores, history[STEPS[-1]].scores
    assert all(0.3 <= mean(base[part]) <= 0.45 for part in SPLIT)
    assert all(0.8 <= mean(final[part]) < 1.0 for part in ("val", "test"))


def test_the_readme_table_states_these_numbers(history):
    readme = (PATCHES_DIR / "README.md").read_text()
    for n, step in enumerate(STEPS):
        it = next((i for i in EXPECTED["iterations"] if i["patch"] == step), None)
        decision = "baseline" if it is None else it["decision"] + (f": {it['stage']}" if it["stage"] else "")
        cells = [f"{mean(r):.3f} ({len(passing(r))}/{len(r)})" for r in history[step].scores.values()]
        row = f"| {n} | {step.removesuffix('.patch')} | {decision} | {' | '.join(cells)} |"
        assert row in readme


def test_only_0002_touches_files_outside_the_editable_globs(history):
    for step in STEPS[1:]:
        outside = [p for p in history[step].changed if not is_editable(p, EDITABLE)]
        want = next(it.get("outside_editable", []) for it in EXPECTED["iterations"] if it["patch"] == step)
        assert outside == want, step
        assert any(is_editable(p, EDITABLE) for p in history[step].changed), step


def test_no_patch_names_a_held_out_task(history):
    held_out = SPLIT["val"] + SPLIT["test"]
    for step in STEPS[1:]:
        lines = [ln[1:] for ln in history[step].diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
        assert not [t for t in held_out if any(id_pattern(t).search(line) for line in lines)], step


@dataclass
class Night:
    """What the orchestrator recorded for a whole session on the example."""

    cfg: Config
    reason: str
    rows: list[IterationRecord]                   # state.db, iteration 0 (the baseline) first
    tsv: list[dict[str, str]]                     # results.tsv
    gates: dict[int, dict]                        # iterations/N/gate.json
    patches: dict[int, str]                       # iterations/N/transcript.jsonl: the patch replayed
    results: dict[str, dict[str, dict[str, float | None]]]  # code hash -> split -> task id -> reward
    tests: dict[str, float]                       # baseline_test, final_test
    branch: list[str]                             # the autoharness branch's commits, newest first


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Night:
    """The real loop on the example, as `make demo` runs it: baseline, every patch through the gate, the
    final test score. Once per module."""
    cfg = load_config(make_demo(tmp_path_factory.mktemp("night") / "demo"))
    try:
        with Driver(cfg, log=configure_logging(cfg.workspace / "logs", console_level="off")) as driver:
            reason = driver.session()
    finally:  # the loop configured logging in this process: leave it as the next test expects it
        for name in (LOGGER, "apscheduler"):
            std = logging.getLogger(name)
            for handler in list(std.handlers):
                std.removeHandler(handler)
                handler.close()
            std.propagate = True
        structlog.reset_defaults()
    ws = cfg.workspace
    store = Store(ws / "state.db", readonly=True)
    try:
        rows = store.iterations()
        tests = {k: json.loads(store.get(k) or "{}").get("score") for k in ("baseline_test", "final_test")}
    finally:
        store.close()
    db = sqlite3.connect(ws / "state.db")
    results: dict[str, dict[str, dict[str, float | None]]] = {}
    for code_hash, split, task_id, reward in db.execute("SELECT code_hash, split, task_id, reward FROM results"):
        results.setdefault(code_hash, {}).setdefault(split, {})[task_id] = reward
    db.close()
    lines = (ws / "results.tsv").read_text().splitlines()
    tsv = [dict(zip(lines[0].split("\t"), ln.split("\t"), strict=True)) for ln in lines[1:]]
    gates, patches = {}, {}
    for r in rows[1:]:
        folder = ws / "iterations" / str(r.n)
        gates[r.n] = json.loads((folder / "gate.json").read_text())
        replayed = [json.loads(ln) for ln in (folder / "transcript.jsonl").read_text().splitlines()]
        (patches[r.n],) = [e["patch"] for e in replayed if "patch" in e]   # the replay backend names its patch
    branch = git(cfg.target.repo, "log", "--format=%H", cfg.target.branch).split()
    return Night(cfg, reason, rows, tsv, gates, patches, results, tests, branch)


def score(passing_ids: list[str], part: str) -> float:
    return len(passing_ids) / len(SPLIT[part])


def test_the_loop_records_the_designed_decisions(night):
    """Each patch, replayed in order by the real loop, gets the decision and stage expected.json designs."""
    gate = night.cfg.gate
    assert (gate.suite_threshold, gate.min_improvement, gate.promote_after) == (0.8, 0.0, 2)  # expected.json's gate
    assert night.reason == "nothing left to propose"
    assert [r.n for r in night.rows] == list(range(len(STEPS)))
    assert [row["iteration"] for row in night.tsv] == [str(n) for n in range(len(STEPS))]
    assert night.rows[0].decision == night.tsv[0]["decision"] == "baseline"
    for n, it in enumerate(EXPECTED["iterations"], start=1):
        rec, row, verdict = night.rows[n], night.tsv[n], night.gates[n]
        assert night.patches[n] == it["patch"], n
        assert (rec.decision, rec.stage) == (it["decision"], it["stage"]), it["patch"]
        assert row["decision"] == it["decision"], it["patch"]
        assert (verdict["decision"], verdict["stage"], verdict["iteration"]) == (it["decision"], it["stage"], n)
        stages = verdict["stages"]
        if it["decision"] == "accepted":
            assert stages and all(s["passed"] for s in stages), (it["patch"], stages)
            assert rec.commit_sha and verdict["commit"] == rec.commit_sha
        else:
            assert stages[-1]["stage"] == it["stage"] and not stages[-1]["passed"], (it["patch"], stages)
            assert all(s["passed"] for s in stages[:-1]), (it["patch"], stages)
            assert rec.commit_sha == "" and verdict["commit"] == ""
            assert row["reason"].startswith(f"{it['stage']}: "), row   # the stage, as the console shows it
    # Exactly the accepted commits are on the branch, in order, on top of the base.
    accepted = [r.commit_sha for r in night.rows if r.decision == "accepted"]
    assert night.branch[:-1] == accepted[::-1] and len(night.branch) == len(accepted) + 1
    assert "outside editable" in night.tsv[2]["reason"] and "README.md" in night.tsv[2]["reason"]


def test_the_recorded_scores_are_the_designed_ones(night):
    """The val score of every scored candidate, the best it had to beat, each task's recorded reward, and the
    test score of the baseline and of the best commit: all as expected.json says."""
    wants = {0: EXPECTED["baseline"]} | {n: it["passing"] for n, it in enumerate(EXPECTED["iterations"], start=1)}
    best = score(EXPECTED["baseline"]["val"], "val")
    assert night.rows[0].val_score == best
    for n, it in enumerate(EXPECTED["iterations"], start=1):
        rec, row = night.rows[n], night.tsv[n]
        assert rec.best_before == best, it["patch"]
        if it["stage"] in ("guard", "suite"):   # stopped before val ran
            assert rec.val_score is None and row["val_score"] == "", it["patch"]
        else:
            assert rec.val_score == score(it["passing"]["val"], "val"), it["patch"]
            assert row["val_score"] == f"{rec.val_score:.4f}"
        if it["decision"] == "accepted":
            best = rec.val_score
    assert best == 7 / 8 and night.gates[6]["best_val"] == 0.75
    # Every reward the loop recorded for a candidate's code is the designed one: complete splits for the
    # baseline and the accepted commits, whatever ran before an early stop for the others.
    for n, rec in enumerate(night.rows):
        if not rec.code_hash:
            assert n == 2 and rec.stage == "guard"   # the guard stops it before anything runs
            continue
        recorded = night.results[rec.code_hash]
        for part, rewards in recorded.items():
            assert set(rewards) <= set(SPLIT[part]), (n, part)
            assert {t for t, r in rewards.items() if r == 1.0} == set(wants[n][part]) & set(rewards), (n, part)
            assert all(r in (0.0, 1.0) for r in rewards.values()), (n, part)
        if rec.decision in ("baseline", "accepted"):
            assert {part: len(recorded[part]) for part in ("train", "val")} == {"train": 14, "val": 8}, n
    # The held-out test split is scored twice: on the base and, at the end, on the best commit.
    scored_test = [n for n, rec in enumerate(night.rows) if "test" in night.results.get(rec.code_hash, {})]
    assert scored_test == [0, 6]
    assert night.tests == {"baseline_test": score(EXPECTED["baseline"]["test"], "test"),
                           "final_test": score(EXPECTED["iterations"][-1]["passing"]["test"], "test")}
    assert night.tests["final_test"] == 7 / 8


def test_0003_breaks_the_suite_well_below_the_threshold(history):
    step = history["0003-confirm-before-acting.patch"]
    base_ok = passing(history["baseline"].scores["train"])
    after_0001 = passing(history["0001-tracking-details.patch"].scores["train"])
    train = step.scores["train"]
    # Whatever promotion has happened by then, the suite falls well below 0.8.
    for suite in (base_ok, after_0001):
        assert sum(train[t]["reward"] for t in suite) / len(suite) <= 0.5
    assert passing(train) - after_0001 == {"cancel-03"}     # it does improve a category
    assert train["cancel-01"]["error"].startswith(
        "expected cancel_order(A1003); agent did: lookup_order(A1003);")


def test_0004_does_not_raise_val(history):
    before = history["0001-tracking-details.patch"].scores
    after = history["0004-lowercase-order-ids.patch"].scores
    assert mean(after["val"]) == mean(before["val"])
    assert passing(after["train"]) - passing(before["train"]) == {"track-02"}
    assert passing(after["train"]) >= passing(history["baseline"].scores["train"])


def test_failures_say_what_was_expected_and_what_the_agent_did(history):
    val = history["baseline"].scores["val"]
    assert val["cancel-05"]["error"].startswith(
        "expected no change to the order; agent did: lookup_order(A1002), cancel_order(A1002);")
    assert 'reply lacks "June 7"' in val["track-05"]["error"]


def test_each_task_starts_from_a_fresh_database(history):
    final = history[STEPS[-1]].tree
    # cancel-04 cancels A1001; address-05 then needs A1001 still processing.
    proc = run_eval(final, ["cancel-04", "address-05", "cancel-04"])
    assert [json.loads(line)["reward"] for line in proc.stdout.splitlines()] == [1.0, 1.0, 1.0]


def test_traces_are_written_only_when_asked(tmp_path):
    repo = new_repo(tmp_path / "agent")
    traces = tmp_path / "traces"
    results(repo, SPLIT["train"], traces=traces, cwd=tmp_path)
    assert sorted(p.name for p in traces.iterdir()) == sorted(f"{t}.json" for t in SPLIT["train"])
    trace = json.loads((traces / "cancel-03.json").read_text())
    assert trace["message"] == TASKS["cancel-03"]["message"]
    assert trace["expected"] == TASKS["cancel-03"]["expect"]
    assert trace["actions"] == ["lookup_order(A1004)", "cancel_order(A1004)"]
    assert trace["reply"] and trace["reward"] == 0.0 and trace["error"]

    shutil.rmtree(traces)
    bench_before = sorted(EVAL_SCRIPT.parent.rglob("*"))
    rows = results(repo, SPLIT["val"] + SPLIT["test"], cwd=tmp_path)
    assert len(rows) == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent"]
    assert git(repo, "status", "--porcelain", "--ignored") == ""   # not even __pycache__
    assert sorted(EVAL_SCRIPT.parent.rglob("*")) == bench_before


def test_an_unknown_task_id_is_an_infra_error(tmp_path):
    repo = new_repo(tmp_path / "agent")
    rows = results(repo, ["no-such-task", "policy-01"], traces=tmp_path / "traces")
    assert rows["no-such-task"]["reward"] is None
    assert "unknown task id" in rows["no-such-task"]["error"]
    assert rows["policy-01"]["reward"] == 1.0
    assert [p.name for p in (tmp_path / "traces").iterdir()] == ["policy-01.json"]


def break_agent(repo: Path, old: str, new: str) -> None:
    agent = repo / "support_agent" / "agent.py"
    text = agent.read_text()
    assert old in text
    agent.write_text(text.replace(old, new, 1))


def test_an_agent_that_raises_scores_zero_with_the_exception(tmp_path):
    repo = new_repo(tmp_path / "agent")
    handle = "    def handle(self, message: str) -> Reply:\n"
    break_agent(repo, handle, handle + "        raise RuntimeError('order database is down')\n")
    rows = results(repo, ["track-01", "policy-01"], traces=tmp_path / "traces")
    for row in rows.values():
        assert row["reward"] == 0.0
        assert row["error"].startswith(
            "agent raised RuntimeError: order database is down (support_agent/agent.py:")
    trace = json.loads((tmp_path / "traces" / "track-01.json").read_text())
    assert "Traceback" in trace["traceback"]


def test_an_agent_that_does_not_import_scores_zero(tmp_path):
    repo = new_repo(tmp_path / "agent")
    break_agent(repo, "def detect_intent(", "def detect_intent(:")
    rows = results(repo, ["track-01", "no-such-task"])
    assert rows["track-01"]["reward"] == 0.0
    assert rows["track-01"]["error"].startswith("could not import the agent: SyntaxError")
    assert rows["no-such-task"]["reward"] is None


def test_prints_from_the_agent_do_not_reach_the_result_stream(tmp_path):
    repo = new_repo(tmp_path / "agent")
    handle = "    def handle(self, message: str) -> Reply:\n"
    break_agent(repo, handle, handle + "        print('debug:', message)\n")
    proc = run_eval(repo, ["policy-01"])
    assert [json.loads(line)["reward"] for line in proc.stdout.splitlines()] == [1.0]
    assert "debug:" in proc.stderr


def test_a_missing_agent_dir_is_a_usage_error(tmp_path):
    proc = run_eval(tmp_path / "nowhere", ["track-01"])
    assert proc.returncode == 2 and proc.stdout == ""
    assert "AUTOHARNESS_AGENT_DIR" in proc.stderr


def test_the_command_runner_scores_the_example(tmp_path):
    from benchmarks.command import CommandRunner
    from orchestrator.core.config import BenchmarkConfig

    repo = new_repo(tmp_path / "agent")
    config = BenchmarkConfig(kind="command", options={"cmd": [sys.executable, str(EVAL_SCRIPT)]})
    runner = CommandRunner(config, tmp_path)
    assert runner.tasks() == list(TASKS)
    got = runner.run(repo, SPLIT["val"], traces_dir=None)
    assert {t for t, r in got.items() if r.reward == 1.0} == set(EXPECTED["baseline"]["val"])
    assert got["cancel-05"].error_class == "failed" and got["cancel-05"].error
