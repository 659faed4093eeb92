"""A toy target, benchmark and patch queue written into a temp folder, for tests of the loop.

The agent knows a set of skills (agent/skills.py); each task needs one skill and passes when the agent
knows it. The benchmark lives outside the target repo, like a real one.

A task that needs "flaky:PATTERN" (PATTERN of 0s and 1s) is noise the agent cannot change: its k-th run, on
whatever code, passes when PATTERN[k] (cycled) is 1. Its history of outcomes, one character a run, is kept
in draws/<task id> beside runs.log: outside the benchmark's files (read-only in every run) and the workspace,
in the benchmark's working folder, which a contained run may write (`Toy.draws`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

EVAL = r'''
import fcntl, importlib.util, json, os, sys, time
from pathlib import Path

here = Path(__file__).parent
tasks = json.loads((here / "tasks.json").read_text())
if os.environ.get("AUTOHARNESS_LIST_TASKS"):
    for t in tasks:
        print(json.dumps({"task_id": t}))
    sys.exit(0)
# The run's token, read before the agent's code loads; every result line carries it.
token = sys.stdin.readline().strip() if os.environ.get("AUTOHARNESS_RESULT_TOKEN") == "stdin" else None
stamp = {"token": token} if token else {}
log = here.parent / "runs.log"   # outside the benchmark's files, which a held-out run cannot write
agent_dir = Path(os.environ["AUTOHARNESS_AGENT_DIR"])
spec = importlib.util.spec_from_file_location("skills", agent_dir / "agent" / "skills.py")
skills = importlib.util.module_from_spec(spec)
spec.loader.exec_module(skills)
traces = os.environ.get("AUTOHARNESS_TRACES_DIR")


def flaky(task_id, pattern):
    """The k-th run of a flaky task passes when pattern[k] (cycled) is 1; its outcome is appended to its
    history, under a lock, so k counts every run of the task."""
    history = here.parent / "draws" / task_id
    history.parent.mkdir(exist_ok=True)
    with history.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        outcome = pattern[len(fh.read()) % len(pattern)]
        fh.write(outcome)
    return outcome == "1"


time.sleep(float(os.environ.get("TOY_TASK_SLEEP", "0")))
for task_id in os.environ["AUTOHARNESS_TASK_IDS"].split(","):
    with log.open("a") as fh:
        fh.write(task_id + " " + ",".join(sorted(skills.KNOWN)) + "\n")
    need = tasks.get(task_id)
    if need is None:
        print(json.dumps({"task_id": task_id, "reward": None, "error": "unknown task", **stamp}))
        continue
    if need == "hang" and need not in skills.KNOWN:
        time.sleep(3600)
    if need == "crash" and need not in skills.KNOWN:
        sys.exit(3)
    if need.startswith("flaky:"):
        ok = flaky(task_id, need[len("flaky:"):])
        error = "" if ok else f"flaky task failed this time (SECRET-DETAIL-{task_id})"
    else:
        ok = need in skills.KNOWN
        error = "" if ok else f"agent does not know the skill {need!r} (SECRET-DETAIL-{task_id})"
    if traces:
        Path(traces, f"{task_id}.json").write_text(json.dumps({"task": task_id, "need": need, "ok": ok}))
    print(json.dumps({"task_id": task_id, "reward": 1.0 if ok else 0.0, "error": error, **stamp}))
'''


# The start of a stand-in benchmark of the toy's tasks (tasks.json beside it) that misbehaves on purpose: it
# lists the tasks, reads the result token, and leaves the task's id in `task` for what follows.
STAND_IN = r'''
import json, os, sys
from pathlib import Path

tasks = json.loads((Path(__file__).parent / "tasks.json").read_text())
if os.environ.get("AUTOHARNESS_LIST_TASKS"):
    print("\n".join(tasks))
    sys.exit(0)
token = sys.stdin.readline().strip() if os.environ.get("AUTOHARNESS_RESULT_TOKEN") == "stdin" else None
task = os.environ["AUTOHARNESS_TASK_IDS"]
'''

# The toy project most loop tests share: each task needs one skill; the agent starts knowing alpha.
TASKS = {
    "tr-alpha-0": "alpha", "tr-beta-1": "beta", "tr-gamma-2": "gamma", "tr-alpha-3": "alpha", "tr-beta-4": "beta",
    "tr-delta-5": "delta",
    "va-alpha-0": "alpha", "va-beta-1": "beta", "va-gamma-2": "gamma", "va-beta-3": "beta",
    "te-alpha-0": "alpha", "te-beta-1": "beta", "te-gamma-2": "gamma",
}
SPLIT = {
    "train": [t for t in TASKS if t.startswith("tr-")],
    "val": [t for t in TASKS if t.startswith("va-")],
    "test": [t for t in TASKS if t.startswith("te-")],
}


@dataclass
class Toy:
    root: Path
    target: Path
    bench: Path
    patches: Path
    config: Path
    workspace: Path

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(["git", *args], cwd=cwd or self.target, check=True, capture_output=True,
                              text=True).stdout.strip()

    def runs(self) -> list[str]:
        """One line per task run: task id and the code (the agent's skills) it ran on."""
        log = self.root / "runs.log"
        return log.read_text().splitlines() if log.exists() else []

    def draws(self, task_id: str) -> str:
        """A flaky task's outcomes so far, one character ("1" passed, "0" failed) a run, in run order."""
        history = self.root / "draws" / task_id
        return history.read_text() if history.exists() else ""

    def add_patch(self, name: str, edits: dict[str, str | None], base: str = "main", message: str = "") -> Path:
        """Write a patch that makes `edits` (path -> new content, None deletes) on top of `base`."""
        scratch = self.root / "scratch"
        if scratch.exists():
            subprocess.run(["rm", "-rf", str(scratch)], check=True)
        self.git("worktree", "add", "--detach", str(scratch), base)
        try:
            for rel, content in edits.items():
                path = scratch / rel
                if content is None:
                    path.unlink()
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(content)
            self.git("add", "-A", "--force", cwd=scratch)  # ignored files too: a patch may carry anything
            diff = self.git("diff", "--cached", "--binary", cwd=scratch)
        finally:
            self.git("worktree", "remove", "--force", str(scratch))
        out = self.patches / name
        out.write_text((message + "\n\n" if message else "") + diff + "\n")
        return out


def tsv(toy: Toy) -> list[dict[str, str]]:
    """results.tsv as one dict per row."""
    lines = (toy.workspace / "results.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"), strict=True)) for ln in lines[1:]]


def skills_file(*known: str) -> str:
    return f"KNOWN = {sorted(known)!r}\n"


REPO = Path(__file__).resolve().parent.parent


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def greet_repo(root: Path, extra: dict[str, str]) -> Path:
    """A tiny agent repo (agent/greet.py says 'hey') plus `extra` files, committed on main."""
    (root / "agent").mkdir(parents=True)
    (root / "agent" / "__init__.py").write_text("")
    (root / "agent" / "greet.py").write_text("def greet():\n    return 'hey'\n")
    for rel, text in extra.items():
        (root / rel).write_text(text)
    return init_repo(root)


def init_repo(root: Path) -> Path:
    """Make `root` (with its files already written) a git repo on main with one commit."""
    git(root.parent, "init", "-q", "-b", "main", str(root))
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return root


class ExplodingAgent:
    """A backend with a bug: propose raises something the loop does not know."""

    def __init__(self, config, config_dir):
        pass

    def propose(self, request):
        (request.worktree / "agent" / "half.py").write_text("partial = True\n")
        raise RuntimeError("backend bug")

    def check(self):
        return []


class PricedReplay:
    """The replay backend, but every proposal costs one dollar (for budget tests)."""

    def __init__(self, config, config_dir):
        from agents.replay import ReplayAgent
        self.inner = ReplayAgent(config, config_dir)

    def propose(self, request):
        proposal = self.inner.propose(request)
        proposal.cost_usd = 1.0
        return proposal

    def check(self):
        return []


class SleepyAgent:
    """A backend that hangs in a child process (for drain and cancel tests). Killed, it reports an error, as a
    real CLI backend does: a forced stop must not record that as the candidate's verdict."""

    def __init__(self, config, config_dir):
        pass

    def propose(self, request):
        from orchestrator.core.contracts import Proposal, ProposalStatus
        from orchestrator.core.proc import run_process
        res = run_process(["sleep", "300"], timeout_s=600)
        if not res.ok:
            return Proposal(ProposalStatus.ERROR, error=f"sleep died: exit {res.returncode}", error_class="crash")
        return Proposal(ProposalStatus.OK, summary="slept")

    def check(self):
        return []


class MischiefAgent:
    """A backend that does what a careless coding agent might: commits its own change (option `extra`
    adds a file outside editable to that commit) or moves the target's base branch (option `move_base`)."""

    def __init__(self, config, config_dir):
        self.options = config.options

    def propose(self, request):
        from orchestrator.core.contracts import Proposal, ProposalStatus
        wt = request.worktree
        (wt / "agent" / "skills.py").write_text(skills_file("alpha", "beta"))
        if self.options.get("extra"):
            (wt / self.options["extra"]).write_text("sneaked in\n")
        git(wt, "add", "-A")
        git(wt, "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "agent's own commit")
        if self.options.get("move_base"):  # in its own repository: harmless
            git(wt, "update-ref", "refs/heads/main", "HEAD")
        if self.options.get("target"):  # the target's own git, as an unsandboxed agent could
            target = Path(self.options["target"])
            git(target, "symbolic-ref", "HEAD", "refs/heads/autoharness")
            git(target, "config", "core.fsmonitor", f"touch {target}/fsmonitor-ran")
            (target / ".git" / "hooks" / "post-checkout").write_text(f"#!/bin/sh\ntouch {target}/hook-ran\n")
            (target / ".git" / "hooks" / "post-checkout").chmod(0o755)
        return Proposal(ProposalStatus.OK, summary="taught beta")

    def check(self):
        return []


class PeekingAgent:
    """A backend whose shell (inside the request's sandbox) looks where a coding agent should not, writes
    what it saw into the candidate, and teaches beta."""

    def __init__(self, config, config_dir):
        self.looks = config.options["looks"]

    def propose(self, request):
        from orchestrator.core.contracts import Proposal, ProposalStatus
        from orchestrator.core.proc import run_process
        script = "; ".join(f"echo '== {p}'; cat {p} 2>&1; ls {p} 2>&1" for p in self.looks)
        script += "; echo \"KNOWN = ['alpha', 'beta']\" > agent/skills.py; git status --short > agent/git.txt"
        argv = ["bash", "-c", script]
        if request.sandbox is not None:
            argv = request.sandbox.wrap(argv)
        res = run_process(argv, cwd=request.worktree, timeout_s=60)
        (request.worktree / "agent" / "peek.txt").write_text(res.stdout + res.stderr)
        return Proposal(ProposalStatus.OK, summary="peeked")

    def check(self):
        return []


def run_blind(root: Path, sandbox: str) -> str:
    """`baseline` then `run --once` with PeekingAgent in the sandbox `sandbox` (config lines): asserts it saw
    none of the benchmark, the records, the checkout or the config, and returns what git said inside."""
    toy = make_toy(root, TASKS, SPLIT, backend=f'kind = "tests.toy:PeekingAgent"\n{sandbox}\n[backend.options]\nlooks = []')
    looks = [str(toy.bench / "tasks.json"), str(toy.workspace / "results.tsv"), str(toy.target / "README.md"),
             str(toy.config)]
    toy.config.write_text(toy.config.read_text().replace("looks = []", f"looks = {json.dumps(looks)}"))
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    row = tsv(toy)[1]
    assert row["decision"] == "accepted", row  # the shell in the sandbox edited the checkout
    peek = toy.git("show", "autoharness:agent/peek.txt")
    for path in looks:
        assert f"== {path}" in peek
    assert peek.count("No such file") >= 2 * len(looks)
    assert "tr-alpha-0" not in peek and "iteration\tval_score" not in peek and "toy agent" not in peek
    assert "[target]" not in peek
    return toy.git("show", "autoharness:agent/git.txt")


def cli(toy: Toy, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `autoharness` command on the toy's config."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    res = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(toy.config), *args],
                         capture_output=True, text=True, timeout=300, env=full_env)
    if check and res.returncode != 0:
        raise AssertionError(f"autoharness {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def write_toy(root: Path, tasks: dict[str, str], split: dict[str, list[str]], known: tuple[str, ...] = ("alpha",),
              extra_config: str = "", backend: str = 'kind = "replay"\n[backend.options]\npatches = "patches"') -> Toy:
    """The toy's files and config, without making the target a git repo (see `make_toy`). A toy task takes a
    Python start (plus TOY_TASK_SLEEP); the 30 s task timeout leaves a loaded machine all the slack it needs."""
    target, bench, patches = root / "target", root / "bench", root / "patches"
    for d in (target / "agent", bench, patches):
        d.mkdir(parents=True)
    (target / "agent" / "__init__.py").write_text("")
    (target / "agent" / "skills.py").write_text(skills_file(*known))
    (target / "README.md").write_text("toy agent\n")
    (bench / "eval.py").write_text(EVAL)
    (bench / "tasks.json").write_text(json.dumps(tasks))
    config = root / "autoharness.toml"
    config.write_text(textwrap.dedent(f"""\
        workspace = "ws"
        [target]
        repo = "target"
        base = "main"
        branch = "autoharness"
        editable = ["agent/**"]
        [benchmark]
        kind = "command"
        concurrency = 2
        task_timeout_s = 30
        [benchmark.split]
        train = {json.dumps(split["train"])}
        val = {json.dumps(split["val"])}
        test = {json.dumps(split.get("test", []))}
        [benchmark.options]
        cmd = [{json.dumps(sys.executable)}, "bench/eval.py"]
        token = true
        [backend]
        """) + backend + "\n" + extra_config)
    return Toy(root, target, bench, patches, config, root / "ws")


def make_toy(root: Path, tasks: dict[str, str], split: dict[str, list[str]], known: tuple[str, ...] = ("alpha",),
             extra_config: str = "", backend: str = 'kind = "replay"\n[backend.options]\npatches = "patches"') -> Toy:
    toy = write_toy(root, tasks, split, known, extra_config, backend)
    run = lambda *a: subprocess.run(["git", *a], cwd=toy.target, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", "main")
    run("-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "initial")
    return toy


def make_queued(root: Path) -> Toy:
    """The toy with a patch queue that meets every gate branch, each made on the best commit of its time."""
    toy = make_toy(root, TASKS, SPLIT)
    toy.add_patch("0001-beta.patch", {"agent/skills.py": skills_file("alpha", "beta")}, message="Teach beta")
    toy.git("branch", "after1", "main")
    # Make the later patches on top of what 0001 produces.
    wt = root / "after1"
    toy.git("worktree", "add", str(wt), "after1")
    (wt / "agent" / "skills.py").write_text(skills_file("alpha", "beta"))
    toy.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "after 1", cwd=wt)
    toy.git("worktree", "remove", str(wt))
    toy.add_patch("0002-guard.patch", {"README.md": "cheat\n", "agent/skills.py": skills_file("alpha", "beta", "gamma")},
                  base="after1", message="Touch the README too")
    toy.add_patch("0003-suite.patch", {"agent/skills.py": skills_file("beta", "gamma")}, base="after1",
                  message="Swap alpha for gamma")
    toy.add_patch("0004-val.patch", {"agent/skills.py": skills_file("alpha", "beta", "delta")}, base="after1",
                  message="Teach delta (not in val)")
    toy.add_patch("0005-early.patch", {"agent/skills.py": skills_file("alpha", "gamma")}, base="after1",
                  message="Swap beta for gamma")
    toy.add_patch("0006-gamma.patch", {"agent/skills.py": skills_file("alpha", "beta", "gamma")}, base="after1",
                  message="Teach gamma")
    toy.git("branch", "-D", "after1")
    return toy
