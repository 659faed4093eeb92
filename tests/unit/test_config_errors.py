"""What a bad config is told, in-process: the rules for branch names and editable globs, the key probably meant
for a misspelt one (an unknown key before the missing one it hides), numbers that are no length of time, the
workspace, plugin kinds that are no class of their kind, and what the plugins refuse when they are built.
(The same through the real CLI, with the target's refs unchanged: tests/integration/test_config_errors_cli.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents.fallback import build_agent
from agents.replay import ReplayAgent, ReplayOptions
from benchmarks.command import CommandRunner
from orchestrator.core.config import (
    BackendConfig,
    BackendSection,
    BenchmarkConfig,
    glob_problem,
    load_config,
    parse_options,
    ref_name_problem,
)
from orchestrator.core.contracts import ProposalRequest
from orchestrator.core.errors import ConfigError
from tests.unit.test_config import toy  # noqa: F401  (the fixture: the toy's files, its target a stand-in repo)

# Valid for git (`git check-ref-format --branch`), and not; the integration test asks git about the same names.
# ("@" is refused too, though --branch reads it as the current branch: no branch can be called "@".)
GOOD_BRANCHES = ["autoharness", "feature/x", "v1.0", "a.b", "night-2026_11", "a@b", "ü"]
BAD_BRANCHES = ["", "a..b", "-x", "a b", "x.lock", "a/x.lock/b", ".x", "a/.b", "a~1", "a^", "a:b", "a?", "a*", "a[",
                "a\\b", "HEAD", "a@{1}", "a//b", "/a", "a/", "a.", "tab\there", "del\x7f"]


def edit(toy, old: str, new: str) -> None:  # noqa: F811
    text = toy.config.read_text()
    assert old in text, old
    toy.config.write_text(text.replace(old, new, 1))


def refused(toy, old: str, new: str) -> str:  # noqa: F811
    """The one line load_config raises for the toy's config with `old` replaced by `new`."""
    edit(toy, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(toy.config)
    line = str(err.value)
    assert "\n" not in line
    return line


@pytest.mark.parametrize("name", GOOD_BRANCHES)
def test_branch_names_git_takes(name):
    assert ref_name_problem(name) is None


@pytest.mark.parametrize("name", [*BAD_BRANCHES, "@"])
def test_branch_names_git_refuses(name):
    assert ref_name_problem(name)


@pytest.mark.parametrize(("key", "value", "why"), [
    ("branch", "a..b", "'a..b' is not a valid git branch name: it contains '..'"),
    ("branch", "-x", "'-x' is not a valid git branch name: it starts with '-'"),
    ("base", "-x", "'-x' is not a valid git branch, tag or commit name: it starts with '-'"),
    ("base", "a..b", "it contains '..'"),
    ("branch", "main", "'main' is also target.base"),
])
def test_target_names(toy, key, value, why):  # noqa: F811
    line = refused(toy, f'{key} = "{"autoharness" if key == "branch" else "main"}"', f'{key} = "{value}"')
    assert f"target.{key}: " in line and why in line


def test_base_may_be_head_or_a_tag(toy):  # noqa: F811
    edit(toy, 'base = "main"', 'base = "HEAD"')
    assert load_config(toy.config).target.base == "HEAD"
    edit(toy, 'base = "HEAD"', 'base = "v1.0"')
    assert load_config(toy.config).target.base == "v1.0"


@pytest.mark.parametrize(("glob", "why"), [
    ("", "it is empty"), ("  ", "it is empty"), ("../**", "outside the target repo"),
    ("agent/../../x", "outside the target repo"), ("/abs/agent/**", "absolute"), ("~/agent/**", "absolute"),
    ("C:\\agent\\**", "absolute"), ("./agent/**", "'.' part"),
])
def test_editable_globs_refused_with_the_reason(toy, glob, why):  # noqa: F811
    assert why in glob_problem(glob)
    line = refused(toy, 'editable = ["agent/**"]', f"editable = [{glob!r}]".replace("'", '"').replace("\\", "\\\\"))
    assert line.endswith(why) or why in line
    assert "target.editable: " in line


def test_editable_globs_that_name_repo_files_pass():
    for glob in ("agent/**", "*.py", "prompts/*.md", "a..b/x", "src/**/agent_*.py"):
        assert glob_problem(glob) is None, glob


@pytest.mark.parametrize(("old", "new", "want"), [
    ("[benchmark]", "[gate]\nmin_improvment = 0.1\n[benchmark]", "gate.min_improvment: unknown key; did you mean 'min_improvement'?"),
    ("[benchmark]", "[gat]\nmin_improvement = 0.1\n[benchmark]", "gat: unknown key; did you mean 'gate'?"),
    ("concurrency = 2", "concurency = 2", "benchmark.concurency: unknown key; did you mean 'concurrency'?"),
    ("[benchmark.split]", "[benchmark.splt]", "benchmark.splt: unknown key; did you mean 'split'?"),
    ('workspace = "ws"', 'workspce = "ws"', "workspce: unknown key; did you mean 'workspace'?"),
    ("[target]\nrepo", "[target]\nrepos", "target.repos: unknown key; did you mean 'repo'?"),
    ('kind = "replay"', 'kind = "replay"\n[[backend.fallback]]\nkind = "replay"\nmodle = "x"',
     "backend.fallback[0].modle: unknown key; did you mean 'model'?"),
    ("[benchmark]", "[benchmark]\nzzz_nothing_like = 1", "benchmark.zzz_nothing_like: unknown key"),
])
def test_did_you_mean_for_every_table(toy, old, new, want):  # noqa: F811
    line = refused(toy, old, new)
    assert line.startswith(f"{toy.config.resolve()}: ")
    assert line.endswith(want)


def test_a_misspelt_required_key_is_reported_as_the_typo(toy):  # noqa: F811
    # `repos` for `repo` also leaves `repo` missing: the typo is named, and the missing key is not counted apart.
    line = refused(toy, "[target]\nrepo", "[target]\nrepos")
    assert line.endswith("target.repos: unknown key; did you mean 'repo'?")


def test_option_tables_name_the_unknown_key_first():
    with pytest.raises(ConfigError) as err:
        parse_options(ReplayOptions, {"patchs": "p"}, "backend.options")
    assert str(err.value) == "backend.options.patchs: unknown key; did you mean 'patches'?"
    with pytest.raises(ConfigError, match=r"^benchmark.options.cdm: unknown key; did you mean 'cmd'\?$"):
        CommandRunner(BenchmarkConfig(options={"cdm": ["python3"]}), Path("."))
    with pytest.raises(ConfigError, match=r"^benchmark.options.cmd: missing$"):
        CommandRunner(BenchmarkConfig(options={}), Path("."))


def test_fallback_option_errors_name_their_table(tmp_path):
    section = BackendSection(kind="replay", options={"patches": str(tmp_path)},
                             fallback=[BackendConfig(kind="replay", options={"patchs": "x"})])
    with pytest.raises(ConfigError, match=r"^backend.fallback\[0\].options.patchs: unknown key; did you mean"):
        build_agent(section, tmp_path)


@pytest.mark.parametrize(("value", "why"), [
    ("inf", "Input should be a finite number"), ("nan", "Input should be a finite number"),
    ("1e12", "1e+12 is more than 168 (a week), the longest window"), ("169", "169 is more than 168"),
])
def test_schedule_hours_is_a_window(toy, value, why):  # noqa: F811
    line = refused(toy, "[benchmark]", f"[schedule]\nhours = {value}\n[benchmark]")
    assert f"schedule.hours: {why}" in line


def test_no_number_of_the_config_is_infinite(toy):  # noqa: F811
    assert "backend.timeout_s: Input should be a finite number" in refused(toy, "[backend]", "[backend]\ntimeout_s = inf")


def test_a_week_is_the_longest_window(toy):  # noqa: F811
    edit(toy, "[benchmark]", "[schedule]\nhours = 168\n[benchmark]")
    assert load_config(toy.config).schedule.hours == 168


def test_workspace_that_is_a_file(toy):  # noqa: F811
    (toy.root / "ws").write_text("not a folder\n")
    assert refused(toy, 'workspace = "ws"', 'workspace = "ws"').endswith(f"workspace: {toy.root / 'ws'} is a file, "
                                                                         "not a folder")
    line = refused(toy, 'workspace = "ws"', 'workspace = "ws/inner"')
    assert line.endswith(f"workspace: {toy.root / 'ws' / 'inner'} is inside {toy.root / 'ws'}, which is a file, not a folder")


@pytest.mark.parametrize(("table", "kind", "want"), [
    ("backend", "os:system", "backend.kind: 'os:system' is not a class; a backend is a class with propose"),
    ("backend", "pathlib:Path", "backend.kind: 'pathlib:Path' is not a backend class"),
    ("backend", "os:nothing_here", "backend.kind: 'os' has no 'nothing_here'"),
    ("benchmark", "pathlib:Path", "benchmark.kind: 'pathlib:Path' is not a benchmark class; a benchmark is a subclass"),
    ("benchmark", "agents.replay:ReplayAgent", "benchmark.kind: 'agents.replay:ReplayAgent' is not a benchmark class"),
    ("backend", "benchmarks.command:CommandRunner", "is not a backend class"),
    ("backend", "replya", "backend.kind: unknown kind 'replya' (did you mean 'replay'?)"),
])
def test_plugin_kinds_are_checked_when_the_config_loads(toy, table, kind, want):  # noqa: F811
    old = 'kind = "replay"' if table == "backend" else 'kind = "command"'
    assert want in refused(toy, old, f'kind = "{kind}"')


def test_a_fallback_kind_is_checked_too(toy):  # noqa: F811
    line = refused(toy, "[backend.options]", '[[backend.fallback]]\nkind = "os:system"\n[backend.options]')
    assert "backend.fallback[0].kind: 'os:system' is not a class" in line


def test_user_plugins_of_the_right_kind_load(toy):  # noqa: F811
    edit(toy, 'kind = "replay"', 'kind = "tests.toy:SleepyAgent"')
    assert load_config(toy.config).backend.kind == "tests.toy:SleepyAgent"


def command(tmp_path: Path, *cmd: str, **options) -> CommandRunner:
    return CommandRunner(BenchmarkConfig(options={"cmd": list(cmd), **options}), tmp_path)


def test_command_program_must_exist(tmp_path):
    with pytest.raises(ConfigError, match=r"^benchmark.options.cmd: program 'no-such-prog-xyz' not found on PATH$"):
        command(tmp_path, "no-such-prog-xyz", "eval.py")
    (tmp_path / "eval.sh").write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match=r"not found on PATH \(there is one in the working folder: write './eval.sh'\)"):
        command(tmp_path, "eval.sh")
    with pytest.raises(ConfigError, match=r"program './eval.sh' is not executable"):
        command(tmp_path, "./eval.sh")
    (tmp_path / "eval.sh").chmod(0o755)
    assert command(tmp_path, "./eval.sh").options.cmd == ["./eval.sh"]
    with pytest.raises(ConfigError, match=rf"program 'bin/eval' not found: no file {tmp_path}/sub/bin/eval$"):
        (tmp_path / "sub").mkdir()
        command(tmp_path, "bin/eval", cwd="sub")
    with pytest.raises(ConfigError, match=r"^benchmark.options.cwd: .*nowhere is not a folder$"):
        command(tmp_path, "python3", cwd="nowhere")


def test_command_program_is_looked_up_on_the_benchmarks_path(tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "my-eval").write_text("#!/bin/sh\n")
    (tools / "my-eval").chmod(0o755)
    with pytest.raises(ConfigError, match="not found on PATH"):
        command(tmp_path, "my-eval")
    assert command(tmp_path, "my-eval", env={"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"})


def test_replay_patches_folder_must_exist(tmp_path):
    with pytest.raises(ConfigError, match=rf"^backend.options.patches: {tmp_path}/nowhere does not exist$"):
        ReplayAgent(BackendConfig(kind="replay", options={"patches": "nowhere"}), tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        ReplayAgent(BackendConfig(kind="replay", options={"patches": "file"}), tmp_path)


def test_replay_with_no_patch_at_all_is_a_config_error(tmp_path):
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "notes.txt").write_text("a patch is a *.patch file\n")
    agent = ReplayAgent(BackendConfig(kind="replay", options={"patches": "patches"}), tmp_path)
    request = ProposalRequest(worktree=tmp_path, prompt="", editable=["agent/**"], timeout_s=10, max_cost_usd=1,
                              iteration=1, transcript_path=tmp_path / "t.jsonl")
    with pytest.raises(ConfigError, match=r"^backend.options.patches: no \*.patch files in .*patches; nothing to propose"):
        agent.propose(request)
