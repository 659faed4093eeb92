"""tau2 through the whole loop, by the real CLI: `init --benchmark tau2`, `doctor`, `baseline`, `run --once`
with the replay backend, against real tau2-bench and the scripted model server. Then nothing of a val or
test simulation may be anywhere on disk."""

from __future__ import annotations

import tomllib

import pytest

from agents.scripted_server import ScriptedServer
from tests.fixtures.tau2.script import SOLVE_MARKER, Tau2Script, load_tasks, tau2_python
from tests.helpers import cli, dump_toml, git, mentions

SPLIT = {"train": ["2", "0"], "val": ["3", "7"], "test": ["1", "5"]}


@pytest.mark.slow
def test_tau2_init_doctor_baseline_and_one_gated_proposal(tmp_path):
    python = tau2_python()
    tasks = load_tasks(python)
    target, patches, scratch_tmp = tmp_path / "target", tmp_path / "patches", tmp_path / "tmp"
    for d in (target, patches, scratch_tmp):
        d.mkdir()
    git(target, "init", "-q", "-b", "main")
    (target / "README.md").write_text("my support agent\n")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "initial")
    env = {"TMPDIR": str(scratch_tmp)}   # every temp file of every process lands where we can look

    cli(tmp_path, "init", "--target", "target", "--benchmark", "tau2", "--backend", "replay",
        "--output", "autoharness.toml", env=env)
    assert (target / "agent" / "tau2_agent.py").is_file()
    git(target, "add", "-A")
    git(target, "commit", "-qm", "starter agent from autoharness init")

    # The user's edits: their model endpoint, a small explicit split, one iteration.
    config = tmp_path / "autoharness.toml"
    data = tomllib.loads(config.read_text())
    assert data["benchmark"]["kind"] == "tau2" and data["target"]["editable"] == ["agent/**"]
    # doctor on the config as written: it names what is missing for a real run, and does not crash.
    doctor = cli(tmp_path, "doctor", env={**env, "OPENAI_API_KEY": ""}, check=False)
    assert doctor.returncode == 1 and "OPENAI_API_KEY is not set" in doctor.stdout, doctor.stdout + doctor.stderr

    with ScriptedServer(responder=Tau2Script(tasks, canary=True)) as srv:
        data["benchmark"].update(concurrency=2, task_timeout_s=120, split={"seed": 1, **SPLIT})
        data["benchmark"]["options"].update(
            python=str(python), agent_llm="openai/scripted-model", user_llm="openai/scripted-model", max_retries=0,
            max_steps=30, env={"OPENAI_API_BASE": srv.openai_base_url, "OPENAI_API_KEY": "sk-scripted-000000"})
        data["loop"] = {"max_iterations": 1}
        config.write_text(dump_toml(data) + "\n")

        # The one proposal: the instruction that makes the scripted model solve tasks.
        git(target, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), "main")
        agent_file = tmp_path / "wt" / "agent" / "tau2_agent.py"
        agent_file.write_text(agent_file.read_text().replace("Try to be helpful", f"{SOLVE_MARKER}\nTry to be helpful"))
        (patches / "0001-resolve-with-tools.patch").write_text(git(tmp_path / "wt", "diff"))
        git(target, "worktree", "remove", "--force", str(tmp_path / "wt"))

        doctor = cli(tmp_path, "doctor", env=env, check=False)
        assert "tau2 data: 50 tasks in airline" in doctor.stdout, doctor.stdout + doctor.stderr
        cli(tmp_path, "baseline", env=env)
        run = cli(tmp_path, "run", "--once", env=env)
    assert "accepted" in run.stdout, run.stdout

    rows = [ln.split("\t") for ln in (tmp_path / "workspace" / "results.tsv").read_text().splitlines()]
    head, body = rows[0], [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]
    assert head[:2] == ["iteration", "val_score"]
    assert [r["decision"] for r in body] == ["baseline", "accepted"]
    assert float(body[0]["val_score"]) == 0.0 and float(body[1]["val_score"]) == 1.0
    assert SOLVE_MARKER in git(target, "show", "autoharness:agent/tau2_agent.py")
    assert SOLVE_MARKER not in (target / "agent" / "tau2_agent.py").read_text()   # the user's tree is untouched

    # Train simulations are traces; no val or test simulation is anywhere: workspace, target, temp, config dir.
    assert mentions(tmp_path / "workspace", "canary-2-zq")
    for task in SPLIT["val"] + SPLIT["test"]:
        assert mentions(tmp_path, f"canary-{task}-zq") == [], task
    assert [p for p in scratch_tmp.rglob("*") if p.is_file() or p.name.startswith("autoharness-tau2-")] == []
