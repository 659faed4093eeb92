"""The harbor runner against the real harbor 0.24.0 (its own Python 3.12 env, `.ci/install-benchmarks.sh`):
the stand-in's fixtures match it, and a real run without a sandbox is an infra error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import benchmarks.harbor as harbor_mod
from benchmarks.harbor import HarborRunner
from benchmarks.shims import default_venv
from orchestrator.core.config import BenchmarkConfig
from tests.helpers import FIXTURES_DIR, starter_agent

FIXTURES = FIXTURES_DIR / "harbor"


def agent_dir(tmp_path: Path) -> Path:
    return starter_agent(tmp_path, "harbor")


@pytest.fixture(scope="module")
def real_harbor() -> Path:
    path = default_venv("harbor") / "bin" / "harbor"
    if not path.is_file():
        msg = f"{path} missing: run .ci/install-benchmarks.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def test_fixtures_match_the_installed_harbor(real_harbor):
    """The stand-in's help, version and result files are what the pinned harbor produces and accepts."""
    env = {**os.environ, **harbor_mod.HELP_ENV}
    out = subprocess.run([str(real_harbor), "run", "--help"], capture_output=True, text=True, env=env, check=True)
    assert harbor_mod._FLAG.findall(out.stdout) == harbor_mod._FLAG.findall((FIXTURES / "run-help.txt").read_text())
    code = ("import sys, pathlib; from harbor.models.trial.result import TrialResult; "
            "from harbor.models.job.result import JobResult; d = pathlib.Path(sys.argv[1]); "
            "[TrialResult.model_validate_json(p.read_text()) for p in d.glob('trial-*.json')]; "
            "JobResult.model_validate_json((d / 'job.json').read_text()); print('ok')")
    res = subprocess.run([str(real_harbor.parent / "python"), "-c", code, str(FIXTURES)], capture_output=True, text=True)
    assert res.stdout.strip() == "ok", res.stderr[-2000:]


@pytest.mark.slow
def test_real_harbor_run_without_a_sandbox_is_an_infra_error(real_harbor, tmp_path):
    """Real harbor on a real local task: no usable docker here, so every task is an infra error, not a 0."""
    ds = tmp_path / "ds"
    for name in ("hello-one", "hello-two"):
        subprocess.run([str(real_harbor), "init", "--task", f"demo/{name}", "--no-package", "--no-pytest", "-o", str(ds)],
                       check=True, capture_output=True)
    r = HarborRunner(BenchmarkConfig(kind="harbor", concurrency=2, task_timeout_s=120,
                                     options={"harbor": str(real_harbor), "path": str(ds)}), tmp_path)
    assert r.tasks() == ["hello-one", "hello-two"]
    got = r.run(agent_dir(tmp_path), r.tasks(), traces_dir=None)
    assert {g.reward for g in got.values()} == {None}
    assert all(g.error_class in ("crash", "infra") and g.error for g in got.values())
    # The starter agent imports under the real harbor, as a harbor agent.
    code = ("from agent.harbor_agent import Agent; from harbor.agents.base import BaseAgent; "
            "print(issubclass(Agent, BaseAgent), Agent.name())")
    res = subprocess.run([str(real_harbor.parent / "python"), "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(agent_dir(tmp_path)), "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert res.stdout.split() == ["True", "autoharness-agent"], res.stderr[-2000:]
