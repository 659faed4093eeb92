"""The command runner on its own: trials, timeouts, crashes, bad output, and the environment it passes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.command import CommandRunner
from orchestrator.core.config import BenchmarkConfig

BENCH = r'''
import json, os, sys, time
from pathlib import Path
task = os.environ["AUTOHARNESS_TASK_IDS"]
counter = Path(os.environ["COUNTER_DIR"]) / task
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
traces = os.environ.get("AUTOHARNESS_TRACES_DIR")
if traces:
    Path(traces, task + ".json").write_text(json.dumps({"agent": os.environ["AUTOHARNESS_AGENT_DIR"]}))
if task == "alternate":
    print(json.dumps({"task_id": task, "reward": float(n % 2), "cost_usd": 0.5}))
elif task == "slow":
    time.sleep(30)
elif task == "crash":
    print("half a line", file=sys.stderr); sys.exit(4)
elif task == "garbage":
    print("not json at all")
elif task == "out-of-range":
    print(json.dumps({"task_id": task, "reward": 7}))
else:
    print("some log line"); print(json.dumps({"task_id": task, "reward": 1.0}))
'''


@pytest.fixture
def runner(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()   # the benchmark's own folder: read-only in held-out runs
    (tmp_path / "bench" / "bench.py").write_text(BENCH)
    (tmp_path / "counts").mkdir()
    monkeypatch.setenv("COUNTER_DIR", str(tmp_path / "counts"))

    def make(**kw) -> CommandRunner:
        cfg = BenchmarkConfig(kind="command", task_timeout_s=kw.pop("timeout", 5), **kw,
                              options={"cmd": [sys.executable, "bench/bench.py"],
                                       "tasks": ["ok", "alternate", "slow", "crash", "garbage", "out-of-range"]})
        return CommandRunner(cfg, tmp_path)
    return make


def test_trials_average_and_costs_add_up(runner, tmp_path):
    res = runner(trials=4, concurrency=1).run(tmp_path / "agent", ["alternate", "ok"], traces_dir=None)  # serial: a shared counter
    assert res["alternate"].reward == pytest.approx(0.5) and res["alternate"].cost_usd == pytest.approx(2.0)
    assert res["ok"].reward == 1.0 and res["ok"].cost_usd is None  # unknown stays unknown
    assert (tmp_path / "counts" / "alternate").read_text() == "4"


def test_failures_are_classified(runner, tmp_path):
    # 5 s: the quick tasks (a Python start each) finish in time on a loaded machine; "slow" sleeps 30 s.
    res = runner(timeout=5).run(tmp_path / "agent", ["slow", "crash", "garbage", "out-of-range"], traces_dir=None)
    assert (res["slow"].reward, res["slow"].error_class) == (0.0, "timeout")
    assert res["crash"].reward is None and res["crash"].error_class == "crash" and "half a line" in res["crash"].error
    assert res["garbage"].reward is None and res["garbage"].error_class == "bad_output"
    assert res["out-of-range"].reward is None and res["out-of-range"].error_class == "bad_output"


def test_traces_only_when_given(runner, tmp_path):
    traces = tmp_path / "traces"
    traces.mkdir()
    runner().run(tmp_path / "agent", ["ok"], traces_dir=traces)
    assert json.loads((traces / "ok.json").read_text())["agent"] == str(tmp_path / "agent")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    runner().run(tmp_path / "agent", ["ok"], traces_dir=None)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_listing_tasks_from_the_command(tmp_path):
    (tmp_path / "list.py").write_text("import json\nfor t in ['a', 'b']: print(json.dumps({'task_id': t}))\n")
    runner = CommandRunner(BenchmarkConfig(options={"cmd": [sys.executable, str(Path(tmp_path, "list.py"))]}), tmp_path)
    assert runner.tasks() == ["a", "b"]
