"""The tau2 runner against real tau2-bench (its own Python 3.12 env) and the scripted model server.
(With a stand-in interpreter acting out failures: tests/integration/test_tau2_runner.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from agents.scripted_server import ScriptedServer
from benchmarks.shims import SHIMS
from benchmarks.tau2 import Tau2Runner, to_task_result
from orchestrator.core.config import BenchmarkConfig
from tests.fixtures.tau2.script import SOLVE_MARKER, Tau2Script, load_tasks, tau2_python
from tests.helpers import REPO

STARTER = (REPO / "benchmarks" / "starters" / "tau2_agent.py").read_text()


@pytest.fixture(scope="module")
def python() -> Path:
    return tau2_python()


@pytest.fixture(scope="module")
def airline(python) -> dict[str, dict]:
    return load_tasks(python)


def agent_dir(tmp_path: Path, solve: bool = False, source: str | None = None) -> Path:
    root = tmp_path / "target"
    (root / "agent").mkdir(parents=True)
    (root / "agent" / "__init__.py").write_text("")
    text = source if source is not None else STARTER
    if solve:
        text = text.replace("Try to be helpful", f"{SOLVE_MARKER}\nTry to be helpful")
    (root / "agent" / "tau2_agent.py").write_text(text)
    return root


def runner(srv: ScriptedServer | None, python: Path, tmp_path: Path, **over) -> Tau2Runner:
    options = {"python": str(python), "domain": "airline", "agent_llm": "openai/scripted-model",
               "user_llm": "openai/scripted-model", "max_retries": 0, "max_steps": 30}
    if srv is not None:
        options["env"] = {"OPENAI_API_BASE": srv.openai_base_url, "OPENAI_API_KEY": "sk-scripted-000000"}
    options.update(over.pop("options", {}))
    cfg = BenchmarkConfig(**{"kind": "tau2", "concurrency": 4, "task_timeout_s": 60, "options": options, **over})
    return Tau2Runner(cfg, tmp_path)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def mentions(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_text(errors="replace")]


@pytest.mark.slow
def test_rewards_costs_and_train_traces(python, airline, tmp_path):
    """0 passes by doing nothing, 2 and 3 fail; with the marker the agent solves 2 and 3 for real."""
    with ScriptedServer(responder=Tau2Script(airline)) as srv:
        r = runner(srv, python, tmp_path)
        seen: list[str] = []
        r.on_result = lambda task_id, res: seen.append(task_id)
        traces = tmp_path / "traces"
        got = r.run(agent_dir(tmp_path), ["0", "2", "3"], traces_dir=traces)
    assert {t: g.reward for t, g in got.items()} == {"0": 1.0, "2": 0.0, "3": 0.0}
    assert got["2"].error_class == "failed" and got["0"].error_class == ""
    assert all(g.cost_usd is None for g in got.values())     # an unpriced model: unknown, not 0
    assert sorted(seen) == ["0", "2", "3"]
    assert sorted(p.relative_to(traces).as_posix() for p in traces.rglob("*.json")) == [
        "0/trial-0.json", "2/trial-0.json", "3/trial-0.json"]
    assert '"reward_info"' in (traces / "2" / "trial-0.json").read_text()

    with ScriptedServer(responder=Tau2Script(airline), model="gpt-4.1") as srv:
        r = runner(srv, python, tmp_path / "b", options={"agent_llm": "openai/gpt-4.1", "user_llm": "openai/gpt-4.1"})
        got = r.run(agent_dir(tmp_path / "b", solve=True), ["2", "3"], traces_dir=None)
        calls = len(srv.completions())
    assert {t: g.reward for t, g in got.items()} == {"2": 1.0, "3": 1.0}
    # gpt-4.1 at $2 / $8 per million tokens; every scripted call reports 100 input and 20 output tokens.
    total = sum(g.cost_usd for g in got.values())
    assert total == pytest.approx(calls * (100 * 2 + 20 * 8) / 1e6)


@pytest.mark.slow
def test_val_test_run_leaves_nothing_on_disk(python, airline, tmp_path, monkeypatch):
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    marker = "ZEBRA-CANARY-4711"
    target = agent_dir(tmp_path)
    before = files_under(target)
    with ScriptedServer(responder=Tau2Script(airline, marker=marker)) as srv:
        r = runner(srv, python, tmp_path)
        got = r.run(target, ["0", "2"], traces_dir=None)
        assert {t: g.reward for t, g in got.items()} == {"0": 1.0, "2": 0.0}
        assert files_under(tmp_root) == set()          # the private scratch folder is gone
        assert files_under(target) == before           # not even __pycache__ in the worktree
        assert mentions(tmp_path, marker) == []
        # The canary is findable: a train run writes it into its traces.
        r.run(target, ["0"], traces_dir=tmp_path / "traces")
    assert [p.name for p in mentions(tmp_path, marker)] == ["trial-0.json"]


@pytest.mark.slow
def test_infra_error_timeout_and_partial_failure(python, airline, tmp_path):
    # Task 4's model never answers in time (the server releases it when it stops); the others must finish
    # well inside the timeout even on a loaded machine (2-4 s each unloaded, four at once), hence 30 s.
    faults = {"1": {"fault": "500"}, "4": {"delay_s": 600}}
    with ScriptedServer(responder=Tau2Script(airline, faults=faults)) as srv:
        r = runner(srv, python, tmp_path, task_timeout_s=30, trials=1)
        got = r.run(agent_dir(tmp_path), ["0", "1", "4", "7"], traces_dir=None)
    assert got["0"].reward == 1.0
    assert got["7"].reward == 0.0 and got["7"].error_class == "failed"
    assert got["1"].reward is None and got["1"].error_class == "infra"
    assert "InternalServerError" in got["1"].error or "500" in got["1"].error
    assert got["4"].reward == 0.0 and got["4"].error_class == "timeout"


@pytest.mark.slow
def test_trials_are_averaged(python, airline, tmp_path):
    with ScriptedServer(responder=Tau2Script(airline)) as srv:
        r = runner(srv, python, tmp_path, trials=2)
        got = r.run(agent_dir(tmp_path), ["0", "2"], traces_dir=tmp_path / "tr")
    assert {t: g.reward for t, g in got.items()} == {"0": 1.0, "2": 0.0}
    assert sorted(p.name for p in (tmp_path / "tr" / "0").iterdir()) == ["trial-0.json", "trial-1.json"]


@pytest.mark.slow
def test_broken_agent_scores_zero_not_infra(python, airline, tmp_path):
    with ScriptedServer(responder=Tau2Script(airline)) as srv:
        r = runner(srv, python, tmp_path)
        got = r.run(agent_dir(tmp_path, source="raise RuntimeError('syntax of a bad edit')\n"), ["0", "2"],
                    traces_dir=None)
        assert {g.reward for g in got.values()} == {0.0}
        assert all(g.error_class == "agent_error" and "bad edit" in g.error for g in got.values())
        # An agent that loads but raises mid-conversation: the task fails; it is not retried as infra.
        crashing = STARTER + (
            "\n\nclass Crashing(Agent):\n"
            "    def generate_next_message(self, message, state):\n"
            "        raise ValueError('agent bug')\n")
        r2 = runner(srv, python, tmp_path, options={"agent": "agent.tau2_agent:Crashing"})
        got = r2.run(agent_dir(tmp_path / "c", source=crashing), ["0"], traces_dir=None)
    assert got["0"].reward == 0.0 and got["0"].error_class == "agent_error" and "agent bug" in got["0"].error


@pytest.mark.slow
def test_tasks_official_split_and_doctor(python, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    r = runner(None, python, tmp_path, options={"agent_llm": "gpt-4.1", "user_llm": "gpt-4.1"})
    tasks = r.tasks()
    split = r.default_split()
    assert len(tasks) == 50 and len(split["train"]) == 30 and len(split["test"]) == 20
    assert not set(split["train"]) & set(split["test"])
    checks = {c.name: c for c in r.check()}
    assert checks["tau2 python"].ok and checks["tau2 data"].ok
    assert checks["tau2 package"].ok and "26.3" in checks["tau2 package"].detail
    agent_model = checks["tau2 agent model"]
    assert not agent_model.ok and "OPENAI_API_KEY is not set" in agent_model.detail


def test_the_shim_reports_tau2s_verdict_of_a_real_simulation(python):
    """The shim's result line for a SimulationRun graded by tau2 (tests/fixtures/tau2) carries reward_info, and
    the runner words the failure from it."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tau2_shim import summarize\n"
            "from tau2.data_model.simulation import SimulationRun\n"
            "sim = SimulationRun.model_validate_json(open(sys.argv[2]).read())\n"
            "print(json.dumps(summarize(sim, 0, False, None)))")
    fixture = REPO / "tests" / "fixtures" / "tau2" / "sim-missed_exchange.json"
    out = subprocess.run([str(python), "-c", code, str(SHIMS), str(fixture)], capture_output=True, text=True,
                         check=True, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    event = json.loads(out.stdout.strip().splitlines()[-1])
    got = to_task_result(event)
    assert got.reward == 0.0 and got.error_class == "failed"
    assert got.error.splitlines()[0] == "db mismatch; actions not taken: exchange_delivered_order_items"
