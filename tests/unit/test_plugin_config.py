"""Each plugin checks its own options where it is built: an unknown or bad key is a ConfigError naming it;
the starters every benchmark kind writes; what a benchmark's runner finds without running anything.
(Moved here from the plugins' integration tests: none of these starts a process.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.openai_api import OpenAIAgent
from benchmarks.bird_interact import BirdInteractRunner
from benchmarks.command import CommandRunner
from benchmarks.harbor import HarborRunner
from benchmarks.tau2 import Tau2Runner
from orchestrator.core import registry
from orchestrator.core.config import BackendConfig, BenchmarkConfig
from orchestrator.core.errors import ConfigError
from tests.helpers import FIXTURES_DIR

STANDIN = FIXTURES_DIR / "harbor" / "harbor"


def test_command_runner_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="benchmark.options.cmd"):
        CommandRunner(BenchmarkConfig(options={"cmd": []}), tmp_path)
    with pytest.raises(ConfigError, match="benchmark.options.comand: unknown key"):
        CommandRunner(BenchmarkConfig(options={"cmd": ["x"], "comand": 1}), tmp_path)


def test_openai_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="backend.options.max_turn: unknown key"):
        OpenAIAgent(BackendConfig(kind="openai", options={"max_turn": 3}), Path("."))
    with pytest.raises(ConfigError, match="backend.options.api"):
        OpenAIAgent(BackendConfig(kind="openai", options={"api": "completions"}), Path("."))


def test_tau2_bad_config_and_missing_env(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="benchmark.options.bogus: unknown key"):
        Tau2Runner(BenchmarkConfig(kind="tau2", options={"bogus": 1}), tmp_path)
    with pytest.raises(ConfigError, match="benchmark.options.domain"):
        Tau2Runner(BenchmarkConfig(kind="tau2", options={"domain": "banking"}), tmp_path)
    r = Tau2Runner(BenchmarkConfig(kind="tau2", options={"python": "nowhere/python"}), tmp_path)
    monkeypatch.setattr("benchmarks.tau2.containment.check", lambda: None)   # probes bwrap: a process
    checks = r.check()   # the missing env FAILs, and the checks that do not need it still follow
    assert not checks[0].ok and "nowhere/python not found" in checks[0].detail and checks[0].config
    assert [c.name for c in checks[1:3]] == ["tau2 agent", "tau2 agent model"]


def test_bird_interact_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a BIRD-Interact-ADK checkout"):
        BirdInteractRunner(BenchmarkConfig(kind="bird-interact", options={"adk_dir": str(tmp_path)}), tmp_path).tasks()
    with pytest.raises(ConfigError, match="benchmark.options.mode: unknown key"):
        BirdInteractRunner(BenchmarkConfig(kind="bird-interact", options={"mode": "c-interact"}), tmp_path)


def test_starters_for_every_kind():
    for kind, agent_file, entry in (("tau2", "agent/tau2_agent.py", "class Agent(LLMAgent)"),
                                    ("harbor", "agent/harbor_agent.py", "class Agent(Terminus2)"),
                                    ("bird-interact", "agent/bird_agent.py", "def build_agent(")):
        starter = registry.load("benchmark", kind).starter
        files = starter.file_texts()
        assert files["agent/__init__.py"] == "" and entry in files[agent_file]
        assert starter.benchmark["kind"] == kind and starter.editable == ["agent/**"]
        module = starter.benchmark["options"]["agent"].partition(":")[0]
        assert f"{module.replace('.', '/')}.py" in files
    assert registry.load("benchmark", "command").starter.files == {}
    with pytest.raises(ConfigError, match="unknown kind 'nope'"):
        registry.load("benchmark", "nope")


def test_harbor_tasks_from_a_downloaded_dataset_and_config_errors(tmp_path):
    ds = tmp_path / "data" / "terminal-bench"
    for name in ("b-task", "a-task"):
        (ds / name).mkdir(parents=True)
        (ds / name / "task.toml").write_text("")
    (ds / "not-a-task").mkdir()
    r = HarborRunner(BenchmarkConfig(kind="harbor", options={"harbor": str(STANDIN), "path": "data/terminal-bench"}),
                     tmp_path)
    assert r.tasks() == ["a-task", "b-task"]
    assert "--path" in r.argv(["a-task"], tmp_path) and "--dataset" not in r.argv(["a-task"], tmp_path)
    with pytest.raises(ConfigError, match="give `tasks`"):
        HarborRunner(BenchmarkConfig(kind="harbor", options={"harbor": str(STANDIN)}), tmp_path).tasks()
    with pytest.raises(ConfigError, match="benchmark.options.envs: unknown key"):
        HarborRunner(BenchmarkConfig(kind="harbor", options={"envs": {}}), tmp_path)
