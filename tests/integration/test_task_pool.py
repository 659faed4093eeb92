"""The one task pool under real task processes: a stand-in command benchmark appends a line to a log as each
task process starts and ends, so what ran, how many at once and in which order is read from the log (appends
are whole lines, in the order they happened), never from the clock.

A task passes when the agent's folder lists it in passes.txt; a task named slow-... waits until every other
task of the log has ended (or 60 s, when the pool is wrong and never runs them beside it). With POOL_PAIRS = n,
a task waits until another starts after it (or all n have started): the log then shows the slots used at once.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from benchmarks.command import CommandRunner
from orchestrator.core.cancel import Cancellation
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.errors import Cancelled
from orchestrator.core.proc import terminate_all
from orchestrator.evaluate import Evaluator, Outcome
from orchestrator.gate import val_stop
from orchestrator.pool import LocalExecutor, TaskPool
from orchestrator.store import Store

EVAL = r'''
import json, os, sys, time
from pathlib import Path

log = Path(os.environ["POOL_LOG"])
task = os.environ["AUTOHARNESS_TASK_IDS"]
passes = (Path(os.environ["AUTOHARNESS_AGENT_DIR"]) / "passes.txt").read_text().split()


def note(what):
    with log.open("a") as fh:
        fh.write(f"{what} {task} {os.getpid()}\n")


def others_ended():
    lines = [ln.split() for ln in log.read_text().splitlines()]
    started = {t for w, t, _ in lines if w == "S" and t != task}
    ended = {t for w, t, _ in lines if w == "E"}
    return started <= ended and len(ended) >= int(os.environ.get("POOL_OTHERS", "0"))


def partnered():
    starts = [pid for w, _, pid in (ln.split() for ln in log.read_text().splitlines()) if w == "S"]
    return starts.index(str(os.getpid())) < len(starts) - 1 or len(starts) >= int(os.environ["POOL_PAIRS"])


def wait_for(done):
    deadline = time.monotonic() + 60
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


note("S")
if task.startswith("slow-"):
    wait_for(others_ended)
if os.environ.get("POOL_PAIRS"):
    wait_for(partnered)
note("E")
print(json.dumps({"task_id": task, "reward": 1.0 if task in passes else 0.0}))
'''


class Bench:
    def __init__(self, root: Path, tasks: list[str], concurrency: int, per_task: bool = True, others: int = 0,
                 pairs: int = 0):
        self.root, self.log = root, root / "pool.log"
        (root / "bench").mkdir(parents=True)
        (root / "bench" / "eval.py").write_text(EVAL)
        (root / "ws").mkdir()
        env = {"POOL_LOG": str(self.log), "POOL_OTHERS": str(others), **({"POOL_PAIRS": str(pairs)} if pairs else {})}
        config = BenchmarkConfig(concurrency=concurrency, infra_retries=0,
                                 options={"cmd": [sys.executable, "bench/eval.py"], "tasks": tasks, "env": env})
        self.runner = CommandRunner(config, root)
        self.runner.per_task = per_task  # False: the batch path (tau2, harbor, bird-interact), same processes
        self.store = Store(root / "ws" / "state.db")
        self.pool = TaskPool(concurrency, LocalExecutor())
        self.cancel = Cancellation()
        self.landed: list[int] = []   # the progress count as results land
        self.evaluator = Evaluator(self.runner, self.store, root / "ws" / "traces", config,
                                   on_progress=lambda _label, done, _total: self.landed.append(done),
                                   cancel=self.cancel, pool=self.pool)

    def agent(self, name: str, passes: list[str]) -> Path:
        folder = self.root / "agents" / name
        folder.mkdir(parents=True)
        (folder / "passes.txt").write_text("\n".join(passes) + "\n")
        return folder

    def events(self) -> list[tuple[str, str]]:
        """(S or E, task) in the order they happened."""
        return [tuple(ln.split()[:2]) for ln in self.log.read_text().splitlines()] if self.log.exists() else []

    def started(self) -> list[str]:
        return [t for what, t in self.events() if what == "S"]

    def peak(self) -> int:
        now = peak = 0
        for what, _ in self.events():
            now += 1 if what == "S" else -1
            peak = max(peak, now)
        return peak


def in_threads(*calls) -> list:
    """Run each call in a thread of its own, all at once; their results (or the first error) in order."""
    got: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            got[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return got


def rewards(out: Outcome) -> dict[str, float | None]:
    return {t: r.reward for t, r in sorted(out.results.items())}


TASKS = [f"t{i}" for i in range(6)]


def test_three_candidates_share_the_slots_and_score_as_if_one_after_another(tmp_path):
    """Three calls at once on different code never run more than the pool's two processes at a time, and give
    what three calls one after the other give."""
    passing = {"a": TASKS[:2], "b": TASKS[2:5], "c": TASKS[::2]}
    together = Bench(tmp_path / "together", TASKS, concurrency=2, pairs=18)
    calls = [lambda n=n, p=p: together.evaluator.evaluate(together.agent(n, p), n * 64, TASKS, "val")
             for n, p in passing.items()]
    at_once = in_threads(*calls)
    assert together.peak() == 2 and sorted(together.started()) == sorted(TASKS * 3)

    apart = Bench(tmp_path / "apart", TASKS, concurrency=2)
    one_by_one = [apart.evaluator.evaluate(apart.agent(n, p), n * 64, TASKS, "val") for n, p in passing.items()]
    assert [rewards(o) for o in at_once] == [rewards(o) for o in one_by_one]
    assert rewards(at_once[1]) == {t: 1.0 if t in passing["b"] else 0.0 for t in TASKS}
    assert [(o.ran, o.cached, o.skipped) for o in at_once] == [(6, 0, 0)] * 3

    stats = together.pool.stats()
    assert stats["jobs"] == 18 and stats["running"] == 0
    assert 0 < stats["busy_slot_s"] <= 2 * stats["wall_s"] and 0 < stats["any_busy_s"] <= stats["wall_s"]


def test_two_calls_on_the_same_code_run_each_task_once(tmp_path):
    """The paired gate's incumbent, gated against by two candidates at once: the second waits for the first
    and finds its draws in the cache."""
    b = Bench(tmp_path, TASKS, concurrency=3)
    best = b.agent("best", TASKS[:3])
    first, second = in_threads(*[lambda: b.evaluator.evaluate(best, "f" * 64, TASKS, "val", draws=1)] * 2)
    assert sorted(b.started()) == sorted(TASKS)
    assert rewards(first) == rewards(second) == {t: 1.0 if t in TASKS[:3] else 0.0 for t in TASKS}
    assert sorted([(first.ran, first.cached), (second.ran, second.cached)]) == [(0, 6), (6, 0)]


def test_a_stop_cancels_the_queued_runs(tmp_path):
    """Every task fails; the rule stops at the first failure. It lands while one other task runs and the rest
    wait: those are never started, the running one finishes, and is cached without counting."""
    tasks = [f"t{i}" for i in range(8)]
    b = Bench(tmp_path, tasks, concurrency=2)
    out = b.evaluator.evaluate(b.agent("none", []), "n" * 64, tasks, "val",
                               stop=lambda o, todo: any(r.reward == 0.0 for r in o.results.values()))
    assert len(b.started()) == 2 and set(b.started()) == {"t0", "t1"}
    assert out.stopped_early and out.ran == 2 and out.skipped == 6 and len(out.results) == 1
    assert set(b.store.cached_results("n" * 64, tasks)) == {"t0", "t1"}


def test_at_one_slot_the_runs_are_those_of_a_check_between_tasks(tmp_path):
    """concurrency = 1: pass, fail, then val can no longer beat 0.75: two runs, two skipped, as before the pool."""
    tasks = ["t0", "t1", "t2", "t3"]
    b = Bench(tmp_path, tasks, concurrency=1)
    out = b.evaluator.evaluate(b.agent("half", ["t0", "t2"]), "h" * 64, tasks, "val", stop=val_stop(4, 0.75, 0.0))
    assert b.started() == ["t0", "t1"] and b.peak() == 1
    assert (out.ran, out.skipped, out.stopped_early, sorted(out.results)) == (2, 2, True, ["t0", "t1"])


def test_a_slow_task_does_not_hold_the_other_slots_idle(tmp_path):
    """Checked between chunks of `concurrency` tasks, the slow task's chunk held its other slot until it ended.
    Now every fast task starts (and ends) while the slow one runs: it ends last."""
    tasks = ["slow-0", *(f"t{i}" for i in range(1, 7))]
    b = Bench(tmp_path, tasks, concurrency=2, others=6)
    out = b.evaluator.evaluate(b.agent("all", tasks), "s" * 64, tasks, "train", stop=lambda o, todo: False)
    assert b.events()[-1] == ("E", "slow-0") and len(b.started()) == 7
    assert out.score == 1.0 and out.ran == 7


def test_a_batch_runner_gets_its_batches_as_before(tmp_path):
    """per_task = False: with a stop rule, one pool job of `concurrency` tasks at a time, checked between them."""
    tasks = [f"t{i}" for i in range(6)]
    b = Bench(tmp_path, tasks, concurrency=2, per_task=False)
    out = b.evaluator.evaluate(b.agent("none", []), "b" * 64, tasks, "val",
                               stop=lambda o, todo: any(r.reward == 0.0 for r in o.results.values()))
    assert sorted(b.started()) == ["t0", "t1"] and b.pool.stats()["jobs"] == 1
    assert (out.ran, out.skipped, len(out.results)) == (2, 4, 2)
    full = b.evaluator.evaluate(b.agent("all", tasks), "a" * 64, tasks, "val")
    assert full.score == 1.0 and b.pool.stats()["jobs"] == 2  # no stop rule: all six in one job


def test_a_cancel_keeps_what_landed_before_it_and_nothing_it_cut_short(tmp_path):
    """A forced stop (a cancel, then its processes killed) while the slow task runs: the two results that landed
    are kept, the killed run is not a result, and nothing is retried or started after it."""
    tasks = ["t1", "t2", "slow-0"]
    b = Bench(tmp_path, tasks, concurrency=3, others=99)  # the slow task waits until it is killed

    def cancel_once_two_landed() -> None:
        while len(b.landed) < 2 or ("S", "slow-0") not in b.events():
            threading.Event().wait(0.02)
        b.cancel.request("test")
        terminate_all()

    watcher = threading.Thread(target=cancel_once_two_landed)
    watcher.start()
    with pytest.raises(Cancelled):
        b.evaluator.evaluate(b.agent("all", tasks), "c" * 64, tasks, "val")
    watcher.join()
    assert set(b.store.cached_results("c" * 64, tasks)) == {"t1", "t2"}
    assert sorted(b.started()) == sorted(tasks) and b.pool.stats()["running"] == 0
