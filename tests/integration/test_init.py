"""`autoharness init` reads `target.editable` from the target: the folders holding its code on the base branch
(tests, docs, hidden, vendored and benchmark folders left out), else its top-level code files; for a named
benchmark, the starter agent's folder too. It says what it chose; finding nothing, it writes a placeholder
that doctor fails on. Through the real CLI, on small real git repos of several shapes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from orchestrator.guard import is_editable
from tests.helpers import cli, git

PLACEHOLDER = "path/to/your/agent/**"


def repo(root: Path, files: list[str], *, commit: bool = True) -> Path:
    """A git repo on `main` holding `files` (each a small text file), committed unless told otherwise."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    if commit and files:
        git(root, "add", "-A")
        git(root, "commit", "-qm", "the agent")
    return root


def init(tmp_path: Path, *args: str) -> tuple[list[str], list[str]]:
    """Run init on tmp_path/target; return its output lines and the editable globs it wrote."""
    res = cli(tmp_path, "init", "--target", "target", "--backend", "replay", *args, env={})
    assert res.stderr == "", res.stderr
    config = tomllib.loads((tmp_path / "autoharness.toml").read_text())
    return res.stdout.splitlines(), config["target"]["editable"]


def test_a_package_folder_beside_tests_docs_and_vendored_code(tmp_path):
    files = ["support_agent/__init__.py", "support_agent/core.py", "support_agent/prompts/system.md",
             "tests/test_core.py", "docs/conf.py", ".github/scripts/check.py", "vendor/lib/x.py",
             "third_party/y.py", "setup.py", "README.md", "notes/todo.txt"]
    repo(tmp_path / "target", files)
    lines, editable = init(tmp_path)
    assert editable == ["support_agent/**"]
    assert lines[0] == "wrote autoharness.toml"
    assert lines[1] == "editable: support_agent/** (the folders holding tracked code on main; edit the config to change)"
    covered = [f for f in files if is_editable(f, editable)]
    assert covered == ["support_agent/__init__.py", "support_agent/core.py", "support_agent/prompts/system.md"]


def test_several_folders_and_a_prompts_folder(tmp_path):
    repo(tmp_path / "target", ["src/bot/agent.py", "src/bot/tools.ts", "prompts/system.md", "scripts/run.sh",
                               "examples/demo.py", "benchmarks/eval.py", "Makefile"])
    _, editable = init(tmp_path)
    assert editable == ["prompts/**", "src/**"]


def test_code_only_at_the_top_level_gets_the_file_names(tmp_path):
    repo(tmp_path / "target", ["agent.py", "tools.py", "test_agent.py", "agent_test.py", "setup.py", "conftest.py",
                               "README.md", "data/cases.json"])
    lines, editable = init(tmp_path)
    assert editable == ["agent.py", "tools.py"]
    assert lines[1] == ("editable: agent.py, tools.py (the code files tracked at the top level on main; "
                        "edit the config to change)")


def test_only_what_is_committed_on_the_base_branch_counts(tmp_path):
    target = repo(tmp_path / "target", ["bot/agent.py"])
    git(target, "switch", "-q", "-c", "feature")
    (target / "other").mkdir()
    (target / "other" / "x.py").write_text("x = 1\n")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "elsewhere")
    (target / "draft").mkdir()
    (target / "draft" / "y.py").write_text("y = 1\n")       # untracked
    git(target, "switch", "-q", "main")
    _, editable = init(tmp_path)
    assert editable == ["bot/**"]


def test_no_code_writes_a_placeholder_that_doctor_fails_on(tmp_path):
    repo(tmp_path / "target", ["README.md", "docs/guide.md", "tests/test_x.py"])
    lines, editable = init(tmp_path)
    assert editable == [PLACEHOLDER]
    assert lines[1] == (f"editable: found no agent code on main (no source files outside tests, docs and vendored "
                        f"code); wrote the placeholder {PLACEHOLDER}: set target.editable to the agent's folders "
                        "(doctor fails until you do)")
    doctor = cli(tmp_path, "doctor", env={}, check=False)
    assert doctor.returncode != 0
    flagged = [ln for ln in doctor.stdout.splitlines() if ln.startswith("FAIL") and PLACEHOLDER in ln]
    assert flagged, doctor.stdout


def test_an_empty_repo_gets_the_placeholder_and_says_why(tmp_path):
    repo(tmp_path / "target", ["agent/uncommitted.py"], commit=False)
    lines, editable = init(tmp_path)
    assert editable == [PLACEHOLDER]
    assert lines[1].startswith("editable: found no agent code on main (it has no commits yet); wrote the placeholder")


def test_a_named_benchmark_adds_its_starter_agent(tmp_path):
    repo(tmp_path / "target", ["README.md"])
    lines, editable = init(tmp_path, "--benchmark", "tau2")
    assert editable == ["agent/**"]
    assert lines[1] == "editable: agent/** (the starter agent's folder; edit the config to change)"
    (tmp_path / "autoharness.toml").unlink()
    repo(tmp_path / "second", ["helpers/search.py"])
    res = cli(tmp_path, "init", "--target", "second", "--benchmark", "harbor", "--backend", "replay", env={})
    assert "editable: agent/**, helpers/** (the starter agent's folder and the folders holding tracked code" in res.stdout
    assert tomllib.loads((tmp_path / "autoharness.toml").read_text())["target"]["editable"] == ["agent/**", "helpers/**"]


def test_the_benchmark_files_its_options_name_are_left_out(tmp_path):
    """harbor's dataset (options.path, data/terminal-bench) inside the target, the config beside it: the folder
    holding it is narrowed to the code that is not the benchmark's."""
    files = ["data/terminal-bench/task-1/tests/test_outputs.py", "data/terminal-bench/task-1/solution.py",
             "data/loaders/read.py", "data/loaders/write.py", "data/schema.py", "lib/util.py"]
    repo(tmp_path / "target", files)
    res = cli(tmp_path / "target", "init", "--target", ".", "--benchmark", "harbor", "--backend", "replay", env={})
    assert res.returncode == 0, res.stderr
    editable = tomllib.loads((tmp_path / "target" / "autoharness.toml").read_text())["target"]["editable"]
    assert editable == ["agent/**", "data/loaders/**", "data/schema.py", "lib/**"]
    assert not any(is_editable(f, editable) for f in files if f.startswith("data/terminal-bench/"))


def test_the_placeholder_says_why_for_an_empty_commit_and_a_detached_head(tmp_path):
    target = repo(tmp_path / "target", [])
    git(target, "commit", "-q", "--allow-empty", "-m", "nothing yet")
    lines, editable = init(tmp_path)
    assert editable == [PLACEHOLDER] and lines[1].startswith("editable: found no agent code on main (it holds no files)")
    (target / "bot.py").write_text("x = 1\n")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "bot")
    git(target, "switch", "-q", "--detach")
    git(target, "branch", "-q", "-m", "main", "trunk")
    (tmp_path / "autoharness.toml").unlink()
    lines, editable = init(tmp_path)
    assert lines[1].startswith("editable: found no agent code on main (there is no branch main; set target.base)")
