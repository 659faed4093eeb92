"""A benchmark that cannot judge (it crashes, prints garbage, or prints rewards that are not in [0, 1]) makes no
baseline, so a night on it never pays a backend; through the command runner and the real CLI."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from benchmarks.command import CommandRunner
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.contracts import BenchmarkRunner, TaskResult
from orchestrator.evaluate import Evaluator
from orchestrator.store import Store
from tests.toy import SPLIT, STAND_IN, TASKS, Toy, cli, make_toy

# The toy's tasks, each done as MODES says for its split (by the id's prefix): "crash" (a Python traceback),
# "garbage" (no result line), "ok" (reward 1), or any other value printed as the reward.
BROKEN = STAND_IN + r'''MODES = {modes!r}


def lookup_order(orders, order_id):
    return orders[order_id]


mode = MODES.get(task[:3], "ok")
print("loading the model ... done")
if mode == "crash":
    lookup_order({{}}, task)
elif mode != "garbage":
    print(json.dumps({{"task_id": task, "reward": 1.0 if mode == "ok" else mode, "token": token}}))
'''


class RecordingAgent:
    """A backend that only notes that it was called (in the file `options.called`), as a paid one would be."""

    def __init__(self, config, config_dir):
        self.called = Path(config.options["called"])

    def propose(self, request):
        from orchestrator.core.contracts import Proposal, ProposalStatus
        self.called.write_text("called\n")
        return Proposal(ProposalStatus.OK, summary="nothing")

    def check(self):
        return []


def broken_toy(root: Path, **modes: object) -> Toy:
    """The toy project on a benchmark that does, for the tasks of each split (tr, va, te), what `modes` say."""
    called = root / "backend-called"
    toy = make_toy(root, TASKS, SPLIT, backend=f'kind = "tests.integration.test_broken_benchmark:RecordingAgent"\n'
                                               f'[backend.options]\ncalled = {json.dumps(str(called))}')
    set_modes(toy, **modes)
    return toy


def set_modes(toy: Toy, **modes: object) -> None:
    (toy.bench / "eval.py").write_text(BROKEN.format(modes={k[:2] + "-": v for k, v in modes.items()}))


def refusal(toy: Toy, *args: str) -> str:
    """The paragraph a refused command prints: one line on stderr, exit code 1, no baseline recorded, the
    backend never called."""
    res = cli(toy, *args, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[-1].startswith("error: baseline refused: "), res.stderr
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT COUNT(*) FROM iterations").fetchone()[0] == 0
    assert not (toy.root / "backend-called").exists()
    return lines[-1]


@pytest.mark.parametrize(("mode", "kind", "first"), [
    ("crash", "crash", "crash: KeyError: 'tr-alpha-0' (in eval.py:lookup_order)"),
    ("garbage", "bad_output", "bad_output: no result line for the task: loading the model ... done"),
    ("yes", "bad_output", 'bad_output: reward "yes" is not a number in [0, 1]'),
    (5, "bad_output", "bad_output: reward 5 is not a number in [0, 1]"),
])
def test_a_benchmark_that_judges_no_train_task_makes_no_baseline(tmp_path, mode, kind, first):
    toy = broken_toy(tmp_path, train=mode)
    line = refusal(toy, "baseline")
    assert line.startswith(f"error: baseline refused: the benchmark could not score any of the 6 train tasks "
                           f"({kind}: 6), so no change could be judged; nothing was recorded"), line
    assert f"First error, tr-alpha-0: {first}." in line
    assert "`autoharness doctor` runs one train task" in line
    assert not (toy.workspace / "results.tsv").exists() or len((toy.workspace / "results.tsv").read_text().splitlines()) <= 1


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_split_scored_not_at_all_makes_no_baseline(tmp_path, split):
    toy = broken_toy(tmp_path, **{split: "crash"})
    n = len(SPLIT[split])
    line = refusal(toy, "baseline")
    assert f"could not score any of the {n} {split} tasks (crash: {n})" in line
    assert f"First: {SPLIT[split][0]}, crash (the error texts of {split} tasks are not kept" in line
    assert "Traceback" not in line and "KeyError" not in line    # nothing of a held-out task's error


def test_some_unscorable_tasks_still_make_a_baseline(tmp_path):
    toy = broken_toy(tmp_path)
    (toy.bench / "eval.py").write_text((toy.bench / "eval.py").read_text().replace(
        'mode = MODES.get(task[:3], "ok")', 'mode = "crash" if task.endswith("-0") else "ok"'))
    res = cli(toy, "baseline")
    assert res.stdout.startswith("baseline: val 0.750, train 5/6"), res.stdout


def test_run_after_a_refused_baseline_refuses_and_never_calls_the_backend(tmp_path):
    toy = broken_toy(tmp_path, train="crash")
    first = refusal(toy, "baseline")
    assert refusal(toy, "run", "--once") == first
    assert refusal(toy, "run") == first        # the daemon's session, started now (no schedule)
    set_modes(toy)                               # the benchmark fixed: it is run again, not answered from the cache
    assert cli(toy, "baseline").stdout.startswith("baseline: val 1.000, train 6/6")
    cli(toy, "run", "--once")
    assert (toy.root / "backend-called").exists()


@pytest.mark.parametrize(("printed", "says"), [
    ('"yes"', 'reward "yes" is not a number in [0, 1]'),
    ("5", "reward 5 is not a number in [0, 1]"),
    ("-0.5", "reward -0.5 is not a number in [0, 1]"),
    ("true", "reward true is not a number in [0, 1]"),
    ('"0.5"', 'reward "0.5" is not a number in [0, 1]'),
])
def test_a_bad_reward_is_unscorable_and_says_what_was_printed(tmp_path, printed, says):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "eval.py").write_text(
        f'import os\nprint(\'{{"task_id": "t1", "reward": {printed}}}\')\n')
    config = BenchmarkConfig(options={"cmd": [sys.executable, "bench/eval.py"], "tasks": ["t1"]})
    got = CommandRunner(config, tmp_path).run(tmp_path, ["t1"], traces_dir=None)["t1"]
    assert (got.reward, got.error_class, got.error, got.unscorable) == (None, "bad_output", says, True)


class OddRewards(BenchmarkRunner):
    """A runner of one's own (`pkg.module:Class`) with a bug: rewards outside [0, 1], NaN among them."""

    def __init__(self, folder: Path):
        super().__init__(BenchmarkConfig(kind="command", options={"cmd": ["x"]}), folder)

    def tasks(self) -> list[str]:
        return ["big", "nan", "fine"]

    def run(self, agent_dir, task_ids, *, traces_dir):
        rewards = {"big": 5.0, "nan": float("nan"), "fine": 0.5}
        return {t: TaskResult(rewards[t], error="" if t == "big" else "half right") for t in task_ids}


def test_a_runner_s_reward_outside_0_1_is_unscorable_and_says_so(tmp_path):
    (tmp_path / "ws").mkdir()
    runner = OddRewards(tmp_path)
    evaluator = Evaluator(runner, Store(tmp_path / "ws" / "state.db"), tmp_path / "ws" / "traces", runner.config)
    got = evaluator.evaluate(tmp_path, "h" * 64, ["big", "nan", "fine"], "train").results
    assert [(got[t].reward, got[t].error_class, got[t].error) for t in ("big", "nan", "fine")] == [
        (0.0, "bad_reward", "reward 5.0 is not a number in [0, 1]"),
        (0.0, "bad_reward", "reward nan is not a number in [0, 1]: half right"),
        (0.5, "failed", "half right"),
    ]


def test_a_benchmark_changed_by_a_run_is_told_in_words(tmp_path):
    from orchestrator.core.errors import BenchmarkChanged
    from tests.unit.test_benchmark_integrity import Tamperer, bench
    (tmp_path / "ws").mkdir()
    runner = Tamperer(bench(tmp_path), True)
    evaluator = Evaluator(runner, Store(tmp_path / "ws" / "state.db"), tmp_path / "ws" / "traces", runner.config)
    with pytest.raises(BenchmarkChanged, match=r"during a val run of 1 task: "):
        evaluator.evaluate(tmp_path, "h" * 64, ["t1"], "val")
