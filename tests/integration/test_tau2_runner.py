"""The tau2 runner with a stand-in interpreter that acts out tau2's failures (a crash, partial output, malformed
output, a hang), and its config errors. Real tau2-bench: tests/e2e/test_tau2.py."""

from __future__ import annotations

import json
from pathlib import Path

import benchmarks.tau2 as tau2_mod
from benchmarks.tau2 import Tau2Runner
from orchestrator.analyze import group_failures
from orchestrator.core.config import BenchmarkConfig
from orchestrator.store import StoredResult
from tests.helpers import FIXTURES_DIR, REPO

STARTER = (REPO / "benchmarks" / "starters" / "tau2_agent.py").read_text()


def agent_dir(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    (root / "agent").mkdir(parents=True)
    (root / "agent" / "__init__.py").write_text("")
    (root / "agent" / "tau2_agent.py").write_text(STARTER)
    return root


def runner(python: Path, tmp_path: Path, **over) -> Tau2Runner:
    options = {"python": str(python), "domain": "airline", "agent_llm": "openai/scripted-model",
               "user_llm": "openai/scripted-model", "max_retries": 0, "max_steps": 30}
    cfg = BenchmarkConfig(**{"kind": "tau2", "concurrency": 4, "task_timeout_s": 60, "options": options, **over})
    return Tau2Runner(cfg, tmp_path)


# Like the real shim, the stand-in stamps its JSON lines with the request's token (else they are ignored), and
# it lists no tasks (the runner asks for tau2's data folder before a run).
FAKE = r"""#!/bin/bash
set -o pipefail
REQUEST=$(head -n1)
TOKEN=$(echo "$REQUEST" | sed -n 's/.*"token": "\([0-9a-f]*\)".*/\1/p')
{
case "$REQUEST" in
  *'"op": "info"'*) echo '{"event": "info", "ids": [], "splits": {}, "data_dir": null}' ;;
  *)
%s
  ;;
esac
} | sed -u "s/^{/{\"token\": \"$TOKEN\", /"
"""


def fake_python(tmp_path: Path, body: str) -> Path:
    """A stand-in interpreter: a shell script that ignores the shim and acts out a failure in a run."""
    path = tmp_path / "fakepy"
    path.write_text(FAKE % body)
    path.chmod(0o755)
    return path


def test_crashed_run_is_an_infra_error(tmp_path):
    py = fake_python(tmp_path, 'echo "Traceback: tau2 exploded" >&2\nexit 3\n')
    got = runner(py, tmp_path).run(agent_dir(tmp_path), ["0", "1"], traces_dir=None)
    assert {g.reward for g in got.values()} == {None}
    assert all(g.error_class == "crash" and "tau2 exploded" in g.error and "exited 3" in g.error
               for g in got.values())


def test_partial_output_then_crash_keeps_what_was_reported(tmp_path):
    py = fake_python(tmp_path, (
        "cat >/dev/null\n"
        'echo \'{"event": "result", "task_id": "0", "trial": 0, "reward": 1.0, "priced": false}\'\n'
        'echo "Segmentation fault" >&2\nexit 139\n'))
    got = runner(py, tmp_path).run(agent_dir(tmp_path), ["0", "1"], traces_dir=None)
    assert got["0"].reward == 1.0
    assert got["1"].reward is None and got["1"].error_class == "crash" and "Segmentation fault" in got["1"].error


def test_malformed_output_is_not_a_score(tmp_path):
    py = fake_python(tmp_path, (
        "cat >/dev/null\n"
        "echo 'reward: 1.0 for everything'\n"
        'echo \'{"event": "result", "task_id": "0", "trial": 0, "reward": 7, "priced": false}\'\n'
        'echo \'{"event": "result", "task_id": "1", "trial": 0, "reward": "yes"}\'\n'
        'echo \'{"event": "done"}\'\n'))
    got = runner(py, tmp_path).run(agent_dir(tmp_path), ["0", "1", "2"], traces_dir=None)
    assert got["0"].reward is None and got["0"].error_class == "bad_output"
    assert got["1"].reward is None and got["1"].error_class == "bad_output"
    assert got["2"].reward is None and got["2"].error_class == "crash"


def test_hung_shim_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(tau2_mod, "STARTUP_S", 1.0)
    py = fake_python(tmp_path, "sleep 600\n")
    got = runner(py, tmp_path, task_timeout_s=0.5).run(agent_dir(tmp_path), ["0"], traces_dir=None)
    assert got["0"].reward is None and got["0"].error_class == "infra" and "killed" in got["0"].error


def test_doctor_reports_every_failing_check_not_only_the_first(tmp_path, monkeypatch):
    """No tau2 environment, a malformed agent option and no model key: each is its own FAIL saying what to do."""
    monkeypatch.setenv("AUTOHARNESS_HOME", str(tmp_path / "home"))     # nothing installed there
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = BenchmarkConfig(kind="tau2", options={"agent": "agent/tau2_agent.py", "agent_llm": "gpt-4.1",
                                                "user_llm": "openai/gpt-4.1"})
    checks = {c.name: c for c in Tau2Runner(cfg, tmp_path).check()}
    failed = [name for name, c in checks.items() if not c.ok]
    assert failed == ["tau2 python", "tau2 agent", "tau2 agent model", "tau2 user simulator model"]
    assert "run `autoharness install tau2`" in checks["tau2 python"].detail
    assert checks["tau2 agent"].detail == ("benchmark.options.agent: 'agent/tau2_agent.py' is not "
                                           "`package.module:Class`")
    assert checks["tau2 user simulator model"].detail.startswith("openai/gpt-4.1: OPENAI_API_KEY is not set")
    # An interpreter that cannot run tau2: the package FAILs, and the rest is still checked.
    py = tmp_path / "broken-python"
    py.write_text("#!/bin/sh\necho 'No module named tau2' >&2\nexit 1\n")
    py.chmod(0o755)
    cfg = BenchmarkConfig(kind="tau2", options={"python": str(py), "agent_llm": "gpt-4.1", "user_llm": "gpt-4.1"})
    checks = {c.name: c for c in Tau2Runner(cfg, tmp_path).check()}
    assert checks["tau2 python"].ok and not checks["tau2 package"].ok
    assert "autoharness install tau2" in checks["tau2 package"].detail
    assert checks["tau2 agent"].ok and not checks["tau2 agent model"].ok


def test_agent_files_name_the_module_the_shim_imports(tmp_path):
    def files(agent: str) -> list[str]:
        return Tau2Runner(BenchmarkConfig(kind="tau2", options={"agent": agent}), tmp_path).agent_files()
    assert files("agent.tau2_agent:Agent") == ["agent/tau2_agent.py"]
    assert files("support.bots.airline:Bot") == ["support/bots/airline.py"]


def shim_event(task_id: str, scenario: str) -> dict:
    """The result line the shim sends for a simulation of tests/fixtures/tau2 (graded by tau2's own evaluator)."""
    sim = json.loads((FIXTURES_DIR / "tau2" / f"sim-{scenario}.json").read_text())
    reward = sim["reward_info"]["reward"]
    return {"event": "result", "task_id": task_id, "trial": 0, "reward": reward,
            "termination_reason": sim["termination_reason"], "agent_cost": None, "user_cost": None, "priced": False,
            "duration_s": sim["duration"], "error": "", "error_class": "" if reward >= 1 else "failed",
            "trace": None, "reward_info": sim["reward_info"]}


def test_failed_tasks_carry_tau2s_verdict_and_land_in_different_groups(tmp_path):
    plan = {"r": "missed_return", "x": "missed_exchange", "c": "not_communicated", "p": "passed", "r2": "missed_return"}
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(shim_event(t, s)) + "\n" for t, s in plan.items()) + '{"event": "done"}\n')
    got = runner(fake_python(tmp_path, f"cat >/dev/null\ncat {events}\n"), tmp_path).run(
        agent_dir(tmp_path), list(plan), traces_dir=None)
    assert got["p"].reward == 1.0 and got["p"].error == ""
    r = got["r"].error.splitlines()
    assert r[0] == "db mismatch; actions not taken: return_delivered_order_items"
    assert r[1].startswith('not taken: return_delivered_order_items(order_id="#W')
    assert got["x"].error.splitlines()[0] == "db mismatch; actions not taken: exchange_delivered_order_items"
    assert got["c"].error.splitlines() == ["did not communicate", 'did not communicate: "54.04"',
                                           'did not communicate: "41.64"']
    # The digest groups by the first line: a missed return, a missed exchange and a missed fact are three groups.
    stored = {t: StoredResult(t, "train", g.reward, g.error_class, g.error, g.duration_s, g.cost_usd)
              for t, g in got.items()}
    groups = {g.signature: sorted(t.task_id for t in g.tasks) for g in group_failures(stored, 1.0)}
    assert groups == {"[failed] db mismatch; actions not taken: return_delivered_order_items": ["r", "r2"],
                      "[failed] db mismatch; actions not taken: exchange_delivered_order_items": ["x"],
                      "[failed] did not communicate": ["c"]}


def test_verdict_without_checks_says_what_tau2_noted():
    assert tau2_mod.verdict({"reward": 0.0, "reward_basis": None,
                             "info": {"note": "Simulation terminated prematurely. Termination reason: max_steps"}}
                            ) == "Simulation terminated prematurely. Termination reason: max_steps"
    assert tau2_mod.verdict(None) == ""
