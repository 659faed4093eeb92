"""The bubblewrap sandbox: the coding agent's processes see the worktree, not the records, the benchmark,
the config folder or the target's checkout."""

from __future__ import annotations

import shutil

import pytest

from orchestrator.core.proc import run_process
from orchestrator.core.sandbox import Bwrap
from tests.helpers import need_bwrap
from tests.toy import SPLIT, TASKS, cli, make_toy, run_blind


@pytest.fixture(autouse=True)
def _bwrap():
    need_bwrap()


def test_wrap_hides_and_keeps(tmp_path):
    hidden, kept = tmp_path / "hidden", tmp_path / "hidden" / "kept"
    kept.mkdir(parents=True)
    (hidden / "answer.txt").write_text("42")
    (kept / "mine.txt").write_text("mine")
    box = Bwrap(hide=[hidden], bind=[kept], binary=shutil.which("bwrap"))
    res = run_process(box.wrap(["bash", "-c", "ls; cat ../answer.txt; cat mine.txt; echo new > new.txt; "
                                              "echo lost > ../lost.txt"]), cwd=kept)
    assert "No such file" in res.stderr and "42" not in res.stdout and "mine" in res.stdout
    assert (kept / "new.txt").read_text() == "new\n"      # the bound folder is writable, for real
    assert not (hidden / "lost.txt").exists()             # writes elsewhere in a hidden folder vanish
    # A folder holding the program that must run stays visible.
    res = run_process(Bwrap(hide=[hidden], binary=shutil.which("bwrap")).wrap(["cat", "answer.txt"],
                                                                                visible=[hidden / "answer.txt"]),
                      cwd=hidden)
    assert res.stdout == "42"


def test_the_loop_runs_the_agent_blind_to_records_benchmark_and_checkout(tmp_path):
    assert "M agent/skills.py" in run_blind(tmp_path, 'sandbox = "bwrap"')  # git works in its checkout


def test_missing_bwrap_is_a_config_error(tmp_path, monkeypatch):
    toy = make_toy(tmp_path, TASKS, SPLIT, backend='kind = "replay"\nsandbox = "bwrap"\n'
                                                   '[backend.options]\npatches = "patches"')
    toy.add_patch("0001.patch", {"agent/skills.py": "KNOWN = ['alpha', 'beta']\n"})
    cli(toy, "baseline")
    bindir = tmp_path / "bin"  # a PATH with git but no bwrap
    bindir.mkdir()
    (bindir / "git").symlink_to(shutil.which("git"))
    res = cli(toy, "run", "--once", check=False, env={"PATH": str(bindir)})
    assert res.returncode == 2 and "bwrap is not installed" in res.stderr
