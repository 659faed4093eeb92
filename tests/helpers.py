"""Helpers shared across the tiers: the real `autoharness` command run in a folder, a small TOML writer,
a search for leaked text, and where the real coding-agent CLIs are."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO / "tests" / "fixtures"


def cli(cwd: Path, *args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real `autoharness` command in `cwd` (its config found there)."""
    res = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    if check and res.returncode != 0:
        raise AssertionError(f"autoharness {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def dump_toml(data: dict, prefix: str = "") -> str:
    """Enough TOML for a config: scalars and lists first, then sub-tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]", dump_toml(v, f"{prefix}{k}.")]
    return "\n".join(lines)


def mentions(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_text(errors="replace")]


def agent_cli(name: str) -> str:
    """The pinned CLI from .ci/install-clis.sh, else one on PATH; missing in CI is a failure."""
    local = REPO / ".ci-tools" / "npm" / "node_modules" / ".bin" / name
    found = str(local) if local.exists() else shutil.which(name)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"the {name} CLI is missing: .ci/install-clis.sh must run before the tests")
    pytest.skip(f"the {name} CLI is not installed (run .ci/install-clis.sh)")


def need_bwrap() -> None:
    """Skip without bubblewrap; in CI its absence is a failure."""
    if shutil.which("bwrap") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bwrap is missing: .ci/install-sandbox.sh must run before the tests")
        pytest.skip("bwrap is not installed (apt-get install bubblewrap)")


DOCKER_TEST_IMAGE = "autoharness-sandbox-test"  # the skeleton image .ci/install-docker.sh imports


def need_docker(image: str = DOCKER_TEST_IMAGE) -> None:
    """Skip without a docker engine that answers and the test image; in CI their absence is a failure."""
    from orchestrator.core.sandbox_docker import problem
    why = problem(image)
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}: .ci/install-docker.sh must run before the tests")
        pytest.skip(f"{why} (run .ci/install-docker.sh)")


def starter_agent(tmp_path: Path, kind: str) -> Path:
    """A named benchmark's starter agent, as `autoharness init --benchmark KIND` writes it into the target."""
    from orchestrator.core import registry
    root = tmp_path / "target"
    for rel, text in registry.load("benchmark", kind).starter.file_texts().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# Double-forks a grandchild into a session of its own with an empty environment (it carries the marker,
# argv 1, in its command line), then exits or, given a second argument, sleeps as a task would.
ORPHANS = r'''
import os, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", marker + "-detached"], {})
    os._exit(0)
os.wait()
if len(sys.argv) > 2:
    time.sleep(300)
'''
