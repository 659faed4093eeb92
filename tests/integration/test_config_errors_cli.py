"""Every bad config or input a first night met is one line on stderr, `error: ...` naming the key or file, exit 2,
from `baseline`, `run --once`, `run` and `doctor` alike, and nothing in the target's refs moved: through the real
CLI. `doctor` lists every check, so what only a built plugin can tell (a missing program, an option typo) is its
FAIL line there, with exit 2. (The rules themselves, in-process: tests/unit/test_config_errors.py.)"""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.core.config import ref_name_problem
from tests.integration.test_config_cli import bad, toy  # noqa: F401  (the toy fixture, and its one-line check)
from tests.toy import SPLIT, TASKS, cli, skills_file, write_toy
from tests.unit.test_config_errors import BAD_BRANCHES, GOOD_BRANCHES

SESSIONS = ("baseline", "run --once", "run")
EVERY = (*SESSIONS, "doctor")


def doctor_fails(toy, key: str) -> str:  # noqa: F811
    """doctor's FAIL line naming `key`, and exit 2 (a config error)."""
    res = cli(toy, "doctor", check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("FAIL") and key in ln]
    return line


def test_our_branch_rule_is_gits(tmp_path):
    for name in GOOD_BRANCHES + BAD_BRANCHES:
        ok = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=tmp_path, capture_output=True).returncode == 0
        assert ok == (ref_name_problem(name) is None) == (name in GOOD_BRANCHES), name


def test_workspace_that_is_a_file(toy):  # noqa: F811
    (toy.root / "notes.txt").write_text("mine\n")
    line = bad(toy, 'workspace = "ws"', 'workspace = "notes.txt"', EVERY)
    assert line.endswith(f"workspace: {toy.root / 'notes.txt'} is a file, not a folder")
    assert (toy.root / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize(("old", "new", "want"), [
    ('branch = "autoharness"', 'branch = "a..b"', "target.branch: 'a..b' is not a valid git branch name: it contains '..'"),
    ('branch = "autoharness"', 'branch = "-x"', "target.branch: '-x' is not a valid git branch name: it starts with '-'"),
    ('base = "main"', 'base = "-x"', "target.base: '-x' is not a valid git branch, tag or commit name: it starts with"),
    ('branch = "autoharness"', 'branch = "main"', "target.branch: 'main' is also target.base"),
])
def test_names_git_refuses(toy, old, new, want):  # noqa: F811
    assert want in bad(toy, old, new, EVERY)  # and no branch `-x`, no tag `-x-best`: the refs are as they were


def test_missing_program(toy):  # noqa: F811
    line = bad(toy, "cmd = [", 'cmd = ["no-such-eval-xyz", ', SESSIONS)
    assert line == "error: benchmark.options.cmd: program 'no-such-eval-xyz' not found on PATH"
    assert "program 'no-such-eval-xyz' not found on PATH" in doctor_fails(toy, "benchmark.options.cmd")


@pytest.mark.parametrize(("old", "new", "want"), [
    ('kind = "replay"', 'kind = "os:system"', "backend.kind: 'os:system' is not a class; a backend is a class"),
    ('kind = "command"', 'kind = "pathlib:Path"', "benchmark.kind: 'pathlib:Path' is not a benchmark class"),
    ("[backend.options]", '[[backend.fallback]]\nkind = "os:system"\n[backend.options]',
     "backend.fallback[0].kind: 'os:system' is not a class"),
    ('kind = "replay"', 'kind = "gpt-magic"', "backend.kind: unknown kind 'gpt-magic'"),
])
def test_plugin_kind_that_is_no_class_of_its_kind(toy, old, new, want):  # noqa: F811
    assert want in bad(toy, old, new, EVERY)


@pytest.mark.parametrize(("hours", "want"), [("inf", "Input should be a finite number"),
                                             ("1e12", "1e+12 is more than 168 (a week)")])
def test_schedule_hours(toy, hours, want):  # noqa: F811
    assert f"schedule.hours: {want}" in bad(toy, "[backend]", f"[schedule]\nhours = {hours}\n[backend]", EVERY)


@pytest.mark.parametrize("lock", ["refs/heads/autoharness.lock", "refs/tags/autoharness-best.lock"])
def test_stale_git_lock_on_the_runs_refs(toy, lock):  # noqa: F811
    path = toy.target / ".git" / lock
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    line = bad(toy, 'workspace = "ws"', 'workspace = "ws"', SESSIONS)
    assert line == (f"error: target.repo: {path} exists (git left it, or a git process is still running in "
                    f"{toy.target}); remove it if no git process is running")
    assert path.exists()  # named, never removed for the user
    assert str(path) in doctor_fails(toy, "target locks")


def test_replay_folder_that_does_not_exist(toy):  # noqa: F811
    line = bad(toy, 'patches = "patches"', 'patches = "no-patches"', SESSIONS)
    assert line == f"error: backend.options.patches: {toy.root / 'no-patches'} does not exist"
    assert "does not exist" in doctor_fails(toy, "backend.options.patches")


def test_replay_queue_with_no_patch(toy):  # noqa: F811
    (toy.patches / "README").write_text("patches go here\n")
    for command in ("run --once", "run"):
        res = cli(toy, *command.split(), check=False)
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.splitlines() == [f"error: backend.options.patches: no *.patch files in {toy.patches}; "
                                           "nothing to propose"]


@pytest.mark.parametrize("glob", ["", "../**", "/abs/agent/**"])
def test_editable_globs(toy, glob):  # noqa: F811
    line = bad(toy, 'editable = ["agent/**"]', f'editable = ["{glob}"]', EVERY)
    assert f"target.editable: '{glob}' cannot be an editable glob: it " in line


@pytest.mark.parametrize(("old", "new", "want"), [
    ('patches = "patches"', 'patchs = "patches"', "error: backend.options.patchs: unknown key; did you mean 'patches'?"),
    ("token = true", "tokn = true", "error: benchmark.options.tokn: unknown key; did you mean 'token'?"),
])
def test_option_typo_names_the_unknown_key_and_the_meant_one(toy, old, new, want):  # noqa: F811
    assert bad(toy, old, new, SESSIONS) == want
    assert want.removeprefix("error: ") in doctor_fails(toy, want.split(":")[1].strip())


def test_did_you_mean_in_the_config_tables(toy):  # noqa: F811
    line = bad(toy, "[backend]", "[gate]\nmin_improvment = 0.01\n[backend]", EVERY)
    assert line == f"error: {toy.config}: gate.min_improvment: unknown key; did you mean 'min_improvement'?"


def test_empty_target_repo_is_one_line(tmp_path):
    empty = write_toy(tmp_path, TASKS, SPLIT)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=empty.target, check=True)
    line = bad(empty, 'workspace = "ws"', 'workspace = "ws"', SESSIONS)
    assert line.startswith("error: target.base: 'main'")


def test_bad_backend_options_stop_before_the_baseline(toy):  # noqa: F811
    """Caught when the run starts, not after a baseline that moved the branch and tagged it."""
    toy.add_patch("0001-beta.patch", {"agent/skills.py": skills_file("alpha", "beta")})
    bad(toy, 'patches = "patches"', 'patches = "patches"\nmax_turns = 3', SESSIONS)
    assert not (toy.workspace / "results.tsv").exists()
