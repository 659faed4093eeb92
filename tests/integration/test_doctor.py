"""`autoharness doctor` through the real CLI: it catches what the night would fail on, says why on every FAIL,
reports every failing check, and exits 2 for a bad config or input, 1 for any other FAIL, 0 when all is well."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from benchmarks.command import CommandRunner
from orchestrator.core.contracts import TaskResult
from tests.toy import REPO, SPLIT, STAND_IN, TASKS, Toy, cli, git, make_toy, skills_file

# A benchmark that lists the toy's tasks and does, for every task, what MODE says.
BROKEN = STAND_IN + r'''

def score(task):
    return 1 / 0


MODE = {mode!r}
if MODE == "crash":
    score(task)
elif MODE == "garbage":
    print("Loading the model ... done, all good")
else:
    print(json.dumps({{"task_id": task, "reward": MODE, "token": token}}))
'''


@pytest.fixture
def toy(tmp_path) -> Toy:
    toy = make_toy(tmp_path, TASKS, SPLIT)
    toy.add_patch("0001-beta.patch", {"agent/skills.py": skills_file("alpha", "beta")})  # replay has work
    return toy


def doctor(toy: Toy, *, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = cli(toy, "doctor", check=False, env=env)
    return res.returncode, res.stdout + res.stderr


def line(out: str, start: str) -> str:
    """The first output line starting with `start` (an indented continuation belongs to it)."""
    lines = out.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith(start):
            more = [x for x in lines[i + 1:i + 12] if x.startswith("    ")]
            return " ".join([ln, *(x.strip() for x in more)])
    raise AssertionError(f"no line starting {start!r} in:\n{out}")


def set_config(toy: Toy, old: str, new: str) -> None:
    text = toy.config.read_text()
    assert old in text
    toy.config.write_text(text.replace(old, new, 1))


# -- 1. one real train task ---------------------------------------------------------------------------------
def test_a_healthy_toy_passes_and_says_what_the_trial_scored(toy):
    rc, out = doctor(toy)
    assert rc == 0, out
    assert re.search(r"^ok +benchmark trial: train task tr-alpha-0 scored 1\.00 in \d+\.\d s$", out, re.M), out
    assert "FAIL" not in out


@pytest.mark.parametrize(("mode", "kind", "says"), [
    ("crash", "crash", "ZeroDivisionError: division by zero"),   # a traceback's last words: what went wrong
    ("garbage", "bad_output", "Loading the model ... done, all good"),
    ("yes", "bad_output", "yes"),
    (5, "bad_output", "5"),
])
def test_a_benchmark_that_cannot_judge_a_task_fails_with_its_error(toy, mode, kind, says):
    (toy.bench / "eval.py").write_text(BROKEN.format(mode=mode))
    rc, out = doctor(toy)
    assert rc == 1, out
    trial = line(out, "FAIL benchmark trial:")
    assert trial.startswith(f"FAIL benchmark trial: train task tr-alpha-0 could not be scored ({kind}), so a night "
                            "would judge nothing; fix the benchmark or the agent on main: "), out
    assert says in trial.split(": ", 2)[2], out


class AgentErrorRunner(CommandRunner):
    """A runner whose benchmark cannot load the agent, as a named benchmark reports it."""

    def run(self, agent_dir, task_ids, *, traces_dir):
        return {t: TaskResult(0.0, 0.1, None, "ImportError: no module named agent.tau2_agent", "agent_error")
                for t in task_ids}


def test_an_agent_that_does_not_load_fails_the_trial(toy):
    set_config(toy, 'kind = "command"', f'kind = "{__name__}:AgentErrorRunner"')
    rc, out = doctor(toy)
    assert rc == 1, out
    assert ("FAIL benchmark trial: train task tr-alpha-0: the agent on main did not load (agent_error), so every "
            "task would score 0; fix it on main: ImportError: no module named agent.tau2_agent") in line(
        out, "FAIL benchmark trial:"), out


def test_a_task_that_times_out_warns_and_says_what_the_night_would_do(toy):
    set_config(toy, "task_timeout_s = 30", "task_timeout_s = 1")
    rc, out = doctor(toy, env={"TOY_TASK_SLEEP": "5"})
    assert rc == 0, out
    assert ("warn benchmark trial: train task tr-alpha-0 timed out after 1 s: the night counts that as 0; raise "
            "benchmark.task_timeout_s if tasks need longer") in out


def test_the_trial_runs_base_as_committed_not_the_working_tree(toy):
    (toy.target / "agent" / "skills.py").write_text("KNOWN = [")  # a syntax error, not committed
    rc, out = doctor(toy)
    assert re.search(r"^ok +benchmark trial: train task tr-alpha-0 scored 1\.00", out, re.M), out
    assert rc == 1 and "FAIL target files: 1 uncommitted change to the agent's code: agent/skills.py" in out


# -- 2. the listing and the split lists ---------------------------------------------------------------------
def test_a_listing_line_that_is_not_an_id_fails_with_exit_2(toy):
    text = toy.config.read_text()
    split = text[text.index("[benchmark.split]"):text.index("[benchmark.options]")]
    toy.config.write_text(text.replace(split, "[benchmark.split]\nseed = 1\n"))   # fractions: the listing decides
    eval_py = toy.bench / "eval.py"
    listing = '    for t in tasks:\n        print(json.dumps({"task_id": t}))\n'
    assert listing in eval_py.read_text()
    eval_py.write_text(eval_py.read_text().replace(   # one bare id a line, and a log line among them
        listing, "    print('Loading 13 tasks from tasks.json ...')\n    for t in tasks:\n        print(t)\n"))
    rc, out = doctor(toy)
    assert rc == 2, out
    listing = line(out, "FAIL benchmark tasks:")
    assert "'Loading 13 tasks from tasks.json ...'" in listing and "whitespace" in listing
    assert "warn benchmark trial: skipped: it needs the splits" in out


def test_split_lists_naming_tasks_the_benchmark_does_not_list_fail_with_exit_2(toy):
    set_config(toy, "token = true", f"token = true\ntasks = {json.dumps(list(TASKS))}")   # the listing
    set_config(toy, '"te-gamma-2"]', '"te-gamma-2", "te-nope", "te-gone"]')
    rc, out = doctor(toy)
    assert rc == 2, out
    assert ("FAIL benchmark split: 2 tasks in benchmark.split not listed by the benchmark: te-nope, te-gone"
            in line(out, "FAIL benchmark split:")), out


# -- 3. the run's branch ------------------------------------------------------------------------------------
def test_an_existing_branch_with_commits_fails_as_baseline_would_refuse_it(toy):
    toy.git("branch", "autoharness", "main")
    toy.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "old run")
    toy.git("branch", "-f", "autoharness", "HEAD")
    toy.git("reset", "-q", "--hard", "HEAD~1")
    rc, out = doctor(toy)
    assert rc == 2, out
    refusal = cli(toy, "baseline", check=False).stderr.strip().removeprefix("error: ")
    assert refusal.startswith("target.branch: 'autoharness' already exists"), refusal
    assert f"FAIL target branch: baseline would refuse: {refusal}" in line(out, "FAIL target branch:")


def test_the_workspaces_own_branch_is_fine(toy):
    cli(toy, "baseline")
    cli(toy, "run", "--once")   # accepts 0001: the branch now has a commit not on main
    assert toy.git("rev-parse", "autoharness") != toy.git("rev-parse", "main")
    rc, out = doctor(toy)
    assert re.search(r"^ok +target branch: autoharness \(this workspace's run\)", out, re.M), out


# -- 4. editable globs --------------------------------------------------------------------------------------
def test_editable_globs_that_match_no_tracked_file_fail_and_name_the_code_folders(toy):
    set_config(toy, 'editable = ["agent/**"]', 'editable = ["src/**"]')
    rc, out = doctor(toy)
    assert rc == 2, out
    editable = line(out, "FAIL target editable:")
    assert "'src/**' matches no file tracked on main: the guard would reject every proposal" in editable
    assert "folders with code on main: agent/**" in editable


# -- 5. a dirty target --------------------------------------------------------------------------------------
def test_uncommitted_agent_code_fails_and_other_dirt_warns(toy):
    (toy.target / "agent" / "new_tool.py").write_text("x = 1\n")
    (toy.target / "notes.txt").write_text("todo\n")
    (toy.target / ".gitignore").write_text("")   # untracked too, outside editable
    rc, out = doctor(toy)
    assert rc == 1, out
    assert ("FAIL target files: 1 uncommitted change to the agent's code: agent/new_tool.py; the night starts "
            "from main's commit, not the working tree: commit it on main") in line(out, "FAIL target files:")
    assert "warn target files: 2 uncommitted changes outside the agent's code: .gitignore, notes.txt" in out
    git(toy.target, "add", "agent/new_tool.py")
    git(toy.target, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tool")
    rc, out = doctor(toy)
    assert rc == 0 and "warn target files: 2 uncommitted changes" in out, out


# -- 6. an empty repo, a missing base -----------------------------------------------------------------------
def test_an_empty_repo_says_it_has_no_commits(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    subprocess.run(["rm", "-rf", str(toy.target / ".git")], check=True)
    git(toy.target, "init", "-q", "-b", "main")
    rc, out = doctor(toy)
    assert rc == 2, out
    assert f"FAIL target base: {toy.target} has no commits yet; commit the agent's code" in line(out, "FAIL target base:")
    assert "warn benchmark trial: skipped: it needs a base commit" in out


def test_a_missing_base_lists_the_branches(toy):
    toy.git("branch", "dev")
    set_config(toy, 'base = "main"', 'base = "master"')
    rc, out = doctor(toy)
    assert rc == 2, out
    assert "FAIL target base: 'master' is not a branch or commit of" in out
    assert "its branches: dev, main; set target.base to the branch that holds the agent" in line(out, "FAIL target base:")


# -- 7. the named benchmarks: the agent the benchmark loads -------------------------------------------------
def test_an_uncommitted_starter_agent_fails(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "README.md").write_text("my agent\n")
    git(tmp_path, "init", "-q", "-b", "main", str(target))
    git(target, "add", "-A")
    git(target, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "initial")
    run = lambda *a: subprocess.run([sys.executable, "-m", "orchestrator", *a], cwd=tmp_path, capture_output=True,  # noqa: E731
                                    text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                                 "HOME": str(tmp_path)})
    assert run("init", "--target", "target", "--benchmark", "tau2", "--backend", "replay").returncode == 0
    config = tmp_path / "autoharness.toml"
    # No tau2 environment here: doctor says so, and still checks the target.
    config.write_text(config.read_text().replace('domain = "airline"', 'domain = "airline"\npython = "no/python"'))
    res = run("doctor")
    out = res.stdout
    assert res.returncode != 0, out
    agent = line(out, "FAIL target agent:")
    assert "agent/tau2_agent.py" in agent and re.search(
        r"not committed on main: the benchmark loads the agent from there, so every task would fail; commit (it|them) "
        r"on main$", agent), agent
    assert "FAIL target files: 2 uncommitted changes to the agent's code" in out
    assert ("FAIL target editable: 'agent/**' matches no file committed on main yet, only uncommitted ones (see "
            "target files); commit them on main") in out
    git(target, "add", "agent")
    git(target, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "starter")
    out = run("doctor").stdout
    assert re.search(r"^ok +target agent: .*agent/tau2_agent.py committed on main$", out, re.M), out


# -- 8. every failing check, and a skipped trial that says why ----------------------------------------------
def test_every_failing_check_is_reported(toy):
    set_config(toy, "token = true", "token = true\nnot_an_option = 1")   # the runner cannot be built
    set_config(toy, 'editable = ["agent/**"]', 'editable = ["src/**"]')
    (toy.target / "agent" / "skills.py").write_text(skills_file("alpha", "gamma"))
    set_config(toy, 'kind = "replay"', 'kind = "replay"\nsandbox = "none"')
    rc, out = doctor(toy)
    assert rc == 2, out
    fails = [ln.split(":")[0] for ln in out.splitlines() if ln.startswith("FAIL")]
    assert fails == ["FAIL target editable", "FAIL benchmark"], out
    assert "benchmark.options" in line(out, "FAIL benchmark:") and "not_an_option" in line(out, "FAIL benchmark:")
    assert "warn target files: 1 uncommitted change outside the agent's code: agent/skills.py" in out
    assert "warn benchmark trial: skipped: it needs a benchmark runner (see above)" in out
    assert re.search(r"^ok +sandbox: none", out, re.M) and re.search(r"^ok +noise:", out, re.M)


# -- 9. exit codes ------------------------------------------------------------------------------------------
def test_exit_code_is_1_for_a_failure_that_is_not_the_configs(toy):
    (toy.bench / "eval.py").write_text(BROKEN.format(mode="crash"))
    (toy.target / "agent" / "skills.py").write_text(skills_file("alpha", "beta"))
    rc, out = doctor(toy)
    assert rc == 1 and [ln.split(":")[0] for ln in out.splitlines() if ln.startswith("FAIL")] == [
        "FAIL target files", "FAIL benchmark trial"], out
    set_config(toy, 'editable = ["agent/**"]', 'editable = ["agent/**", "nothing/**"]')
    rc, out = doctor(toy)
    assert rc == 1 and "warn target editable: 'nothing/**' matches no file tracked on main" in out, out


def test_doctor_changes_nothing_in_the_target(toy):
    (toy.target / "agent" / "new_tool.py").write_text("x = 1\n")
    skills = toy.target / "agent" / "skills.py"
    os.utime(skills, (skills.stat().st_atime + 10, skills.stat().st_mtime + 10))  # a plain `git status` would
    index, head = toy.target / ".git" / "index", toy.target / ".git" / "HEAD"       # rewrite the index now
    before = (index.read_bytes(), index.stat().st_mtime_ns, head.read_bytes(), toy.git("for-each-ref"))
    doctor(toy)
    assert (index.read_bytes(), index.stat().st_mtime_ns, head.read_bytes(), toy.git("for-each-ref")) == before
    assert not toy.workspace.exists()   # nor a workspace, nor its splits.json


def test_a_ray_cluster_nothing_listens_at_fails_before_the_night(toy):
    """The run joins the cluster when it starts and exits 2 when it cannot; doctor joins it too, and says so."""
    set_config(toy, "[benchmark]\n", '[benchmark]\nexecutor = "ray"\naddress = "127.0.0.1:9"\n')
    code, out = doctor(toy)
    assert code == 2, out
    got = line(out, "FAIL task pool")
    assert "benchmark.address" in got and "127.0.0.1:9" in got
