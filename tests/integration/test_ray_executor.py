"""The Ray executor against a real Ray head started here (`ray start --head` on the loopback address, one for
the module): the bundled example scored as the local pool scores it, traces for train only, the candidate's
files shipped rather than shared, a timeout, a crash, a lost worker, and the config errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from benchmarks.command import CommandRunner
from benchmarks.ray_executor import RayExecutor
from orchestrator.core import proc
from orchestrator.core.config import BenchmarkConfig, load_config
from orchestrator.core.contracts import BenchmarkRunner
from orchestrator.core.errors import ConfigError
from orchestrator.demo import make_demo
from orchestrator.evaluate import Evaluator
from orchestrator.pool import TaskPool
from orchestrator.store import Store
from tests.ray_cluster import free_port, local_head

pytest.importorskip("ray", reason="the ray package is not installed (make install brings it)")

# A benchmark of one task a process: its reward is the candidate's answer.txt, its traces name the agent folder.
BENCH = r'''
import json, os, sys, time
from pathlib import Path
task, agent = os.environ["AUTOHARNESS_TASK_IDS"], Path(os.environ["AUTOHARNESS_AGENT_DIR"])
traces = os.environ.get("AUTOHARNESS_TRACES_DIR")
if traces:
    Path(traces, task + ".json").write_text(json.dumps({"agent": str(agent)}))
if task == "slow":
    time.sleep(60)
elif task == "crash":
    print("half a line", file=sys.stderr); sys.exit(4)
else:
    print(json.dumps({"task_id": task, "reward": float((agent / "answer.txt").read_text())}))
'''


@pytest.fixture(scope="module")
def address():
    with local_head(num_cpus=2) as addr:
        yield addr


def on_ray(cfg: BenchmarkConfig, address: str) -> BenchmarkConfig:
    return cfg.model_copy(update={"executor": "ray", "address": address})


@pytest.fixture
def bench(tmp_path):
    """A runner of BENCH and a candidate whose answer is 1."""
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.py").write_text(BENCH)
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "answer.txt").write_text("1")

    def make(timeout: float = 20, **options) -> CommandRunner:
        cfg = BenchmarkConfig(kind="command", task_timeout_s=timeout, concurrency=2, options={
            "cmd": [sys.executable, str(tmp_path / "bench" / "bench.py")], "tasks": ["a", "b", "slow", "crash"],
            **options})
        return CommandRunner(cfg, tmp_path)
    return make


def private_folders() -> set[Path]:
    """The workers' private folders (they share this machine's temporary folder)."""
    tmp = Path(tempfile.gettempdir())
    return {*tmp.glob("autoharness-agent-*"), *tmp.glob("autoharness-traces-*")}


def test_the_example_scores_on_ray_as_on_the_local_pool(tmp_path, address):
    config = make_demo(tmp_path / "demo")
    cfg = load_config(config).benchmark
    agent = tmp_path / "demo" / "target"
    splits = {"train": cfg.split.train, "val": cfg.split.val, "test": cfg.split.test}
    scored, traces, before = {}, {}, private_folders()
    for how in ("local", "ray"):
        runner = CommandRunner(cfg, config.parent)
        ws = tmp_path / how
        ws.mkdir()
        pool = TaskPool(cfg.concurrency, RayExecutor.build(on_ray(cfg, address), runner)) if how == "ray" else None
        evaluator = Evaluator(runner, Store(ws / "state.db"), ws / "traces", cfg, pool=pool)
        scored[how] = {split: {t: (r.reward, r.error_class, r.error)
                               for t, r in evaluator.evaluate(agent, "c0de" * 16, ids, split).results.items()}
                       for split, ids in splits.items()}
        evaluator.pool.close()
        # Traces: train only, one a task; a traceback names the agent's folder, which differs.
        traces[how] = {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "traceback"}
                       for p in (ws / "traces").rglob("*") if p.is_file()}
    assert scored["ray"] == scored["local"]
    rewards = [r for split in scored["ray"].values() for r, _, _ in split.values()]
    assert 0 < sum(rewards) < len(rewards)   # a weak agent: passes and failures both compared
    assert traces["ray"] == traces["local"] and set(traces["ray"]) == {f"{t}.json" for t in cfg.split.train}
    assert private_folders() == before


def test_the_candidate_travels_with_each_run(tmp_path, address, bench):
    runner = bench()
    executor = RayExecutor.build(on_ray(runner.config, address), runner)
    agent, traces, before = tmp_path / "agent", tmp_path / "traces", private_folders()
    traces.mkdir()
    assert executor.run(runner, agent, ["a"], traces)["a"].reward == 1.0
    seen = json.loads((traces / "a.json").read_text())["agent"]
    assert seen != str(agent) and not Path(seen).exists()   # its own copy, gone with the run
    (agent / "answer.txt").write_text("0")   # a new state of the candidate is shipped anew
    assert executor.run(runner, agent, ["a"], None)["a"].reward == 0.0
    (agent / "escape").symlink_to("../../..")   # nothing of the candidate may land outside its folder on a node
    res = executor.run(runner, agent, ["b"], None)["b"]
    assert (res.reward, res.error_class) == (None, "infra") and "outside the destination" in res.error
    assert private_folders() == before


def test_a_timeout_and_a_crash_are_what_they_are_locally(tmp_path, address, bench):
    runner = bench(timeout=3)
    executor = RayExecutor.build(on_ray(runner.config, address), runner)
    agent = tmp_path / "agent"
    local = runner.run(agent, ["slow", "crash"], traces_dir=None)
    remote = executor.run(runner, agent, ["slow", "crash"], None)
    for got in (local, remote):
        assert (got["slow"].reward, got["slow"].error_class, got["slow"].error) == (0.0, "timeout", "timed out after 3s")
        assert (got["crash"].reward, got["crash"].error_class) == (None, "crash")
        assert got["crash"].error.startswith("exit 4: ") and "half a line" in got["crash"].error


def slow_run(tmp_path, address, bench) -> tuple[RayExecutor, dict, threading.Thread, set, int]:
    """The slow task running on Ray in a thread: the executor, the results to come, the thread, the private
    folders there were before it, and the pid of its task process."""
    runner = bench(timeout=120)
    executor = RayExecutor.build(on_ray(runner.config, address), runner)
    got: dict = {}
    before = private_folders()
    thread = threading.Thread(target=lambda: got.update(executor.run(runner, tmp_path / "agent", ["slow"], None)))
    thread.start()
    return executor, got, thread, before, wait_for(lambda: running(str(tmp_path / "bench")))


def test_a_lost_worker_is_an_infra_error_and_takes_its_task_along(tmp_path, address, bench):
    _, got, thread, before, task = slow_run(tmp_path, address, bench)
    worker = next(pid for pid in ancestors(task) if read_cmdline(pid).startswith("ray::"))
    os.kill(worker, signal.SIGKILL)
    thread.join(timeout=60)
    res = got["slow"]
    assert (res.reward, res.error_class) == (None, "infra") and res.error.startswith("Ray: ")
    wait_for(lambda: not running(str(tmp_path / "bench")) or None)
    for folder in private_folders() - before:   # a killed worker cannot clean up after itself
        shutil.rmtree(folder)


def test_terminate_ends_the_runs_in_flight(tmp_path, address, bench):
    """A cancel (proc.terminate_all, which the daemon calls) ends the runs on Ray as it kills the local pool's
    processes; once the executor is closed it no longer answers a cancel."""
    executor, got, thread, before, _ = slow_run(tmp_path, address, bench)
    proc.terminate_all()
    thread.join(timeout=60)
    executor.close()
    assert executor.terminate not in proc._terminators
    assert (got["slow"].reward, got["slow"].error_class) == (None, "infra") and "cancel" in got["slow"].error.lower()
    wait_for(lambda: not running(str(tmp_path / "bench")) or None)
    for folder in private_folders() - before:   # its worker was killed
        shutil.rmtree(folder)


DRIVER = """
import sys
from pathlib import Path
from benchmarks.command import CommandRunner
from benchmarks.ray_executor import RayExecutor
from orchestrator.core.config import BenchmarkConfig
root = Path(sys.argv[2])
cfg = BenchmarkConfig(kind="command", task_timeout_s=600, executor="ray", address=sys.argv[1], options={
    "cmd": [sys.executable, str(root / "bench" / "bench.py")], "tasks": ["slow"]})
runner = CommandRunner(cfg, root)
RayExecutor.build(cfg, runner).run(runner, root / "agent", ["slow"], None)
"""


def test_nothing_of_a_run_outlives_a_killed_orchestrator(tmp_path, address, bench):
    bench()
    before = private_folders()
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(tmp_path)],
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        wait_for(lambda: running(str(tmp_path / "bench")))
    finally:
        driver.kill()
        driver.wait()
    wait_for(lambda: not running(str(tmp_path / "bench")) or None)   # Ray ends a dead driver's workers
    for folder in private_folders() - before:
        shutil.rmtree(folder)


def test_a_benchmark_missing_on_the_node_is_an_infra_error(tmp_path, address, bench):
    (tmp_path / "not-installed").mkdir()
    runner = bench(cwd="not-installed")
    executor = RayExecutor.build(on_ray(runner.config, address), runner)
    (tmp_path / "not-installed").rmdir()   # here when the runner was built, not on the node that runs it
    res = executor.run(runner, tmp_path / "agent", ["a"], None)["a"]
    assert (res.reward, res.error_class) == (None, "infra")
    assert "not installed on Ray node" in res.error and "not-installed" in res.error


class Elsewhere(BenchmarkRunner):
    def tasks(self) -> list[str]:
        return ["t"]

    def run(self, agent_dir, task_ids, *, traces_dir):
        return {}


def test_config_errors_say_what_and_where(tmp_path, address, bench, monkeypatch):
    runner = bench()
    cfg = runner.config
    with pytest.raises(ConfigError, match='only the command runner can run on Ray, not kind = "harbor"'):
        RayExecutor.build(on_ray(cfg, address).model_copy(update={"kind": "harbor"}), Elsewhere(cfg, tmp_path))
    with pytest.raises(ConfigError, match=r"benchmark.address: say where the Ray cluster is"):
        RayExecutor.build(on_ray(cfg, ""), runner)
    with pytest.raises(ConfigError, match=r"benchmark.address: 'head' is not"):
        RayExecutor.build(on_ray(cfg, "head"), runner)
    line = RayExecutor.build(on_ray(cfg, address), runner).check()   # doctor's line for the pool
    assert line.ok and line.detail == f"Ray 2.40.0 cluster at {address}: 1 node, 2 CPUs for task runs"
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=rf"benchmark.address: cannot connect to {nobody}: Connection refused"):
        RayExecutor.build(on_ray(cfg, nobody), runner)
    monkeypatch.setitem(sys.modules, "ray", None)   # as where the package is not installed
    with pytest.raises(ConfigError, match='the ray package is not installed'):
        RayExecutor.build(on_ray(cfg, address), runner)


def running(marker: str) -> int | None:
    """A process (not a sandbox launcher) whose command line names `marker`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmdline = read_cmdline(int(entry.name))
            if marker in cmdline and "bwrap" not in cmdline.split(" ", 1)[0]:
                return int(entry.name)
    return None


def read_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


def wait_for(probe, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while (found := probe()) is None:
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.1)
    return found
