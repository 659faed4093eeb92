"""The CLI's own behaviour through the real command: `--config`/`-c` after the command's name, `--version`,
`stop` with nothing running, and one wording of an iteration's outcome in `run --once`, `run` and the demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from orchestrator.records import decision_line
from orchestrator.store import Store
from tests.toy import REPO, cli, tsv


def autoharness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command with no config found by default (no `--config` before the command's name)."""
    env = {k: v for k, v in os.environ.items() if k != "AUTOHARNESS_CONFIG"} | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def outcome_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if re.match(r"iteration \d+: ", ln)]


def recorded_lines(workspace: Path) -> list[str]:
    store = Store(workspace / "state.db", readonly=True)
    try:
        return [decision_line(r) for r in store.iterations() if r.n > 0]
    finally:
        store.close()


@pytest.mark.parametrize("flag", ["--config", "-c", "--config="])
def test_config_after_the_command_name(queued, tmp_path, flag):
    toy = queued
    elsewhere = tmp_path / "elsewhere"  # no autoharness.toml here: only the flag finds the config
    elsewhere.mkdir()

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        given = [flag + str(toy.config)] if flag.endswith("=") else [flag, str(toy.config)]
        res = autoharness(*command, *given, cwd=elsewhere)
        assert res.returncode == 0, f"{command}: {res.stdout}{res.stderr}"
        return res

    assert run("baseline").stdout.startswith("baseline: val 0.250, train 2/6")
    assert run("run", "--once").stdout.startswith("iteration 1: accepted")
    assert "best val 0.750 (baseline 0.250)" in run("status").stdout
    assert '"workspace"' in run("status", "--json").stdout
    assert run("report").stdout.strip().endswith("report.html")
    assert run("stop").stdout.startswith("no daemon is running")
    assert "ok" in run("doctor").stdout
    # Given on both sides, the one after the name wins; a command that reads no config has no such option.
    both = autoharness("--config", str(tmp_path / "missing.toml"), "status", flag.rstrip("="), str(toy.config),
                       cwd=elsewhere)
    assert both.returncode == 0, both.stderr
    refused = autoharness("init", "--target", str(toy.target), "--config", str(toy.config), cwd=elsewhere)
    assert refused.returncode == 2 and "--config" in refused.stderr


def test_config_after_the_name_that_does_not_exist_is_one_line(tmp_path):
    res = autoharness("status", "-c", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.toml'}: config file not found"]


def test_version(tmp_path):
    res = autoharness("--version", cwd=tmp_path)
    assert (res.returncode, res.stdout, res.stderr) == (0, f"autoharness {version('autoharness')}\n", "")


def test_stop_with_nothing_running_arms_nothing(queued):
    toy = queued
    cli(toy, "baseline")  # a workspace whose lock file a finished process left behind
    res = cli(toy, "stop")
    assert res.stdout == f"no daemon is running on {toy.workspace}; nothing to stop\n"
    assert not (toy.workspace / "STOP").exists()
    # So the next run is not stopped before it starts.
    assert cli(toy, "run", "--once").stdout.startswith("iteration 1: accepted")
    fresh = cli(toy, "stop")  # and on a workspace that does not exist yet
    assert fresh.returncode == 0 and "nothing to stop" in fresh.stdout


def test_one_wording_of_an_outcome_in_run_once_and_run(queued, tmp_path):
    toy = queued
    once = []
    for _ in range(3):  # accepted, then rejected by the guard, then by the suite
        once += outcome_lines(cli(toy, "run", "--once").stdout)
    assert once == recorded_lines(toy.workspace)
    assert once[1] == "iteration 2: rejected (guard): changes outside editable ['agent/**']: README.md"
    assert [r["decision"] for r in tsv(toy)] == ["baseline", "accepted", "rejected", "rejected"]
    daemon = outcome_lines(cli(toy, "run").stdout)  # the rest of the queue, as the daemon prints it
    assert once + daemon == recorded_lines(toy.workspace)
    assert daemon[0].startswith("iteration 4: rejected (val): val 0.7500 ")


def test_one_wording_of_an_outcome_in_the_demo(tmp_path):
    res = subprocess.run([sys.executable, "-m", "orchestrator.demo"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert res.returncode == 0, res.stderr
    shown = outcome_lines(res.stdout)
    assert shown and shown == recorded_lines(tmp_path / "demo" / "workspace")
