"""The bird-interact runner against a stand-in BIRD-Interact-ADK checkout (tests/fixtures/bird_interact/adk):
the real module layout, HTTP endpoints and data and result fields, served by the real shim with uvicorn.
It runs with the tau2 env's interpreter, which has FastAPI, uvicorn and httpx (the ADK's service stack)."""

from __future__ import annotations

import json
import tempfile
import tomllib
from pathlib import Path

import pytest

from benchmarks.bird_interact import BirdInteractRunner
from orchestrator.core.config import BenchmarkConfig
from tests.fixtures.tau2.script import tau2_python
from tests.helpers import FIXTURES_DIR, cli, dump_toml, git, mentions

ADK = FIXTURES_DIR / "bird_interact" / "adk"
DATA = ADK / "bird-interact-lite" / "bird_interact_data.jsonl"
MARKER = "Ask the user before you submit."
AGENT = '''
INSTRUCTION = """You write PostgreSQL for the user's question.{extra}"""


class Agent:
    def __init__(self, instruction):
        self.instruction = instruction


def build_agent(mode="a-interact"):
    return Agent(INSTRUCTION)
'''


@pytest.fixture(scope="module")
def python() -> Path:
    return tau2_python()


def agent_dir(tmp_path: Path, careful: bool = True, source: str | None = None) -> Path:
    root = tmp_path / "target"
    (root / "agent").mkdir(parents=True, exist_ok=True)
    (root / "agent" / "__init__.py").write_text("")
    text = source if source is not None else AGENT.format(extra=f"\n{MARKER}" if careful else "")
    (root / "agent" / "bird_agent.py").write_text(text)
    return root


def runner(python: Path, tmp_path: Path, **over) -> BirdInteractRunner:
    options = {"python": str(python), "adk_dir": str(ADK), **over.pop("options", {})}
    return BirdInteractRunner(BenchmarkConfig(**{"kind": "bird-interact", "concurrency": 3, "task_timeout_s": 30,
                                                 "options": options, **over}), tmp_path)


def test_rewards_partial_failure_infra_timeout_and_malformed(python, tmp_path):
    tasks = ["alien_1", "alien_2", "archeology_1", "cross_db_1", "crypto_1", "cybermarket_1"]
    r = runner(python, tmp_path, task_timeout_s=10)  # the quick tasks finish in time even loaded; crypto_1 hangs
    assert r.tasks()[:3] == ["alien_1", "alien_2", "archeology_1"] and len(r.tasks()) == 7
    got = r.run(agent_dir(tmp_path), tasks, traces_dir=None)
    assert got["alien_1"].reward == 1.0 and got["alien_1"].error_class == ""
    assert got["alien_2"].reward == pytest.approx(0.7)                      # no follow-up: phase 1 only
    assert got["archeology_1"].reward == pytest.approx(0.7) and got["archeology_1"].error_class == "failed"
    # The failed phase is the error text: the digest tells a missed first question from a missed follow-up.
    assert got["archeology_1"].error.splitlines()[0] == "phase 2 failed: the follow-up question was not solved"
    assert got["alien_2"].error.startswith("phase 1 passed; the task has no follow-up question")
    assert got["cross_db_1"].reward is None and got["cross_db_1"].error_class == "infra"
    assert "500" in got["cross_db_1"].error
    assert got["crypto_1"].reward == 0.0 and got["crypto_1"].error_class == "timeout"
    assert got["cybermarket_1"].reward is None and got["cybermarket_1"].error_class == "bad_output"
    assert all(g.cost_usd is None for g in got.values())                   # the ADK reports no cost: unknown


def test_a_worse_agent_scores_lower_and_train_results_become_traces(python, tmp_path):
    r = runner(python, tmp_path)
    traces = tmp_path / "traces"
    got = r.run(agent_dir(tmp_path, careful=False), ["alien_1", "alien_2"], traces_dir=traces)
    assert {t: (g.reward, g.error_class) for t, g in got.items()} == {"alien_1": (0.0, "failed"),
                                                                       "alien_2": (0.0, "failed")}
    assert got["alien_1"].error.splitlines() == ["phase 1 failed: the first question was not solved",
                                                 "budget: used 0 of 14 bird-coins"]
    saved = json.loads((traces / "alien_1.json").read_text())
    assert saved["total_reward"] == 0.0 and saved["tool_trajectory"][0]["sql"] == "SELECT 1"


def test_val_test_run_leaves_nothing(python, tmp_path, monkeypatch):
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    target = agent_dir(tmp_path)
    before = set(target.rglob("*"))
    adk_before = {p: p.stat().st_mtime for p in ADK.rglob("*")}
    got = runner(python, tmp_path).run(target, ["alien_1"], traces_dir=None)
    assert got["alien_1"].reward == 1.0
    assert list(tmp_root.iterdir()) == [] and set(target.rglob("*")) == before
    assert {p: p.stat().st_mtime for p in ADK.rglob("*")} == adk_before   # nothing written into the checkout
    gold = json.loads(DATA.read_text().splitlines()[0])["sol_sql"][0]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and gold in p.read_text(errors="replace")]


def test_crashed_run_and_broken_agent(python, tmp_path):
    got = runner(python, tmp_path, concurrency=1).run(agent_dir(tmp_path), ["alien_1", "disaster_1", "alien_2"],
                                                      traces_dir=None)
    assert got["alien_1"].reward == 1.0
    for task in ("disaster_1", "alien_2"):
        assert got[task].reward is None and got[task].error_class == "crash" and "exited 3" in got[task].error
    broken = agent_dir(tmp_path / "b", source="import no_such_module\n")
    got = runner(python, tmp_path).run(broken, ["alien_1"], traces_dir=None)
    assert got["alien_1"].reward == 0.0 and got["alien_1"].error_class == "agent_error"
    assert "no_such_module" in got["alien_1"].error


def test_doctor_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PG_PORT", "1")   # nothing listens there
    checks = {c.name: c for c in runner(Path("no/python"), tmp_path).check()}
    assert not checks["bird-interact python"].ok and "no/python not found" in checks["bird-interact python"].detail
    assert checks["bird-interact ADK checkout"].ok and checks["bird-interact data"].ok
    assert checks["bird-interact gold"].ok and "7/7" in checks["bird-interact gold"].detail
    assert not checks["bird-interact postgresql"].ok and "docker compose up" in checks["bird-interact postgresql"].detail
    # The public dataset without the mailed gold file.
    public = tmp_path / "public.jsonl"
    public.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k not in ("sol_sql", "test_cases")})
                              + "\n" for line in DATA.read_text().splitlines()))
    checks = {c.name: c for c in runner(Path("no/python"), tmp_path, options={"data": str(public)}).check()}
    assert not checks["bird-interact gold"].ok and "request the GT file" in checks["bird-interact gold"].detail
    # No ADK checkout: that FAILs, and the dataset given by `data`, the agent and the services are still checked.
    checks = {c.name: c for c in runner(Path("no/python"), tmp_path, options={
        "data": str(public), "adk_dir": str(tmp_path / "no-adk"), "agent": "agent.bird_agent:Agent"}).check()}
    assert not checks["bird-interact ADK checkout"].ok and checks["bird-interact data"].ok
    assert not checks["bird-interact gold"].ok and not checks["bird-interact postgresql"].ok
    assert "is not `package.module` (no `:Class`)" in checks["bird-interact agent"].detail
    assert runner(Path("no/python"), tmp_path).agent_files() == ["agent/bird_agent.py"]


def test_loop_end_to_end_with_the_stand_in(python, tmp_path):
    """init --benchmark bird-interact, baseline, one replayed proposal through the gate; no val/test result left."""
    target, patches, scratch_tmp = tmp_path / "target", tmp_path / "patches", tmp_path / "tmp"
    for d in (target, patches, scratch_tmp):
        d.mkdir()
    git(target, "init", "-q", "-b", "main")
    git(target, "commit", "-q", "--allow-empty", "-m", "initial")
    env = {"TMPDIR": str(scratch_tmp)}
    cli(tmp_path, "init", "--target", "target", "--benchmark", "bird-interact", "--backend", "replay", env=env)
    # The stand-in ADK has no google-adk: the user's agent here is the stand-in-compatible one.
    (target / "agent" / "bird_agent.py").write_text(AGENT.format(extra=""))
    git(target, "add", "-A")
    git(target, "commit", "-qm", "agent")
    data = tomllib.loads((tmp_path / "autoharness.toml").read_text())
    data["benchmark"]["options"].update(python=str(python), adk_dir=str(ADK))
    # The test split scores one task (a split that scores nothing at all is refused at baseline).
    data["benchmark"].update(task_timeout_s=30, split={"train": ["alien_2"], "val": ["alien_1"],
                                                       "test": ["archeology_1", "cybermarket_1"]})
    data["loop"] = {"max_iterations": 1}
    (tmp_path / "autoharness.toml").write_text(dump_toml(data) + "\n")
    git(target, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), "main")
    (tmp_path / "wt" / "agent" / "bird_agent.py").write_text(AGENT.format(extra=f"\n{MARKER}"))
    (patches / "0001-ask.patch").write_text(git(tmp_path / "wt", "diff"))
    git(target, "worktree", "remove", "--force", str(tmp_path / "wt"))

    cli(tmp_path, "baseline", env=env)
    assert "accepted" in cli(tmp_path, "run", "--once", env=env).stdout
    rows = (tmp_path / "workspace" / "results.tsv").read_text().splitlines()[1:]
    assert [(r.split("\t")[1], r.split("\t")[6]) for r in rows] == [("0.0000", "baseline"), ("1.0000", "accepted")]
    gold = {json.loads(line)["instance_id"]: json.loads(line)["sol_sql"][0] for line in DATA.read_text().splitlines()}
    assert mentions(tmp_path / "workspace", gold["alien_2"])          # a train result is a trace
    for task in ("alien_1", "archeology_1", "cybermarket_1"):
        assert mentions(tmp_path, gold[task]) == [], task
    assert [p for p in scratch_tmp.rglob("*") if p.is_file() or p.name.startswith("autoharness-bird-")] == []
