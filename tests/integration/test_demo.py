"""`make demo` as a user runs it: the demo module in a fresh folder, from its first line to the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.toy import REPO


def run_demo(cwd: Path) -> subprocess.CompletedProcess[str]:
    """What `make demo` runs, in `cwd` (it writes ./demo there)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "orchestrator.demo"], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    cwd = tmp_path_factory.mktemp("make-demo")
    return cwd, run_demo(cwd)


def test_demo_ends_with_the_path_of_its_report(demo):
    cwd, proc = demo
    assert proc.returncode == 0, proc.stderr
    report = cwd / "demo" / "workspace" / "report.html"
    assert proc.stdout.rstrip("\n").splitlines()[-1] == f"report: {report}"
    page = report.read_text()
    assert "<h1>autoharness demo</h1>" in page
    # The page of this run: its six proposals, and how to merge what it kept into the demo target.
    assert "6 proposals" in page and "3 accepted" in page
    assert f"git -C {cwd / 'demo' / 'target'} log --stat main..autoharness" in page
