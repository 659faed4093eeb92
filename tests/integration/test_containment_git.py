"""Attacks on git and on the guard, played through the real loop by a coding agent with a shell (run in the
request's sandbox, as a CLI's or the API loop's commands are): its own repository's hooks, fsmonitor and
filters never run outside, nothing it does reaches the target's git database, a secret or a held-out id in
a binary file is found, git metadata and nested repositories are refused, and the scored tree is the
committed one."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.toy import SPLIT, TASKS, cli, make_toy, skills_file, tsv

TOKEN = "gw-0a1b2c3d4e5f6a7b"   # handed to the backend under a name no rule calls secret


class ShellAgent:
    """Runs `options.script` with bash in its checkout (inside the sandbox when there is one), with MARK (a
    host path that must never appear) in its environment, then teaches the toy agent beta."""

    def __init__(self, config, config_dir):
        self.script, self.env = config.options["script"], dict(config.env)
        self.teach = config.options.get("teach", True)

    def propose(self, request):
        from orchestrator.core.contracts import Proposal, ProposalStatus
        from orchestrator.core.proc import run_process
        argv = ["bash", "-c", "set -e\n" + self.script]
        if request.sandbox is not None:
            argv = request.sandbox.wrap(argv)
        res = run_process(argv, cwd=request.worktree, env={**os.environ, **self.env}, timeout_s=60)
        if self.teach:
            (request.worktree / "agent" / "skills.py").write_text(skills_file("alpha", "beta"))
        ok = ProposalStatus.OK if res.ok else ProposalStatus.ERROR
        return Proposal(ok, summary="taught beta", error=res.stderr[-500:])

    def check(self):
        return []


def run_attack(tmp_path, script: str, base_files: dict[str, str] | None = None):
    toy = make_toy(tmp_path, TASKS, SPLIT, backend=(
        f'kind = "{__name__}:ShellAgent"\n[backend.options]\nscript = {json.dumps(script)}\n'
        f'[backend.env]\nMARK = "{tmp_path / "marker"}"\nGATEWAY = "{TOKEN}"'))
    for path, text in (base_files or {}).items():
        (toy.target / path).write_text(text)
        toy.git("add", path)
        toy.git("commit", "-qm", f"add {path}")
    before = target_state(toy)
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    cli(toy, "report", "--final")  # one more round of autoharness's own git calls
    assert not (tmp_path / "marker").exists(), "autoharness ran the coding agent's hook, fsmonitor or filter"
    assert target_state(toy) == before
    return toy, tsv(toy)[1]


def target_state(toy) -> dict[str, str]:
    """The target's HEAD, branches other than the run's, config, hooks, and its checkout's status."""
    git_dir = toy.target / ".git"
    hooks = sorted(p.name for p in (git_dir / "hooks").iterdir()) if (git_dir / "hooks").is_dir() else []
    refs = [r for r in toy.git("for-each-ref", "--format=%(refname) %(objectname)").splitlines()
            if "autoharness" not in r]
    return {"HEAD": (git_dir / "HEAD").read_text(), "config": (git_dir / "config").read_text(),
            "hooks": " ".join(hooks), "refs": "\n".join(refs), "status": toy.git("status", "--porcelain")}


HOOKS = """
hooks=$(git rev-parse --git-path hooks); mkdir -p "$hooks"
for h in post-checkout pre-commit post-commit reference-transaction post-index-change; do
  printf '#!/bin/sh\\ntouch %s\\n' "$MARK" > "$hooks/$h"; chmod +x "$hooks/$h"
done
git config core.fsmonitor "touch $MARK; false"
git config core.hooksPath "$hooks"
"""


def test_its_own_hooks_and_fsmonitor_never_run_outside(tmp_path):
    toy, row = run_attack(tmp_path, HOOKS)
    assert row["decision"] == "accepted", row


def test_a_filter_in_its_own_repo_changes_neither_the_scored_nor_the_committed_files(tmp_path):
    # The clean filter would commit a beta-less file while the scored one knows beta (or the other way).
    script = """
a=$(git rev-parse --git-path info/attributes); mkdir -p "$(dirname "$a")"
printf 'agent/* filter=sly\\n' >> "$a"
git config filter.sly.clean "touch $MARK; sed s/beta/gamma/"
git config filter.sly.smudge "touch $MARK; cat"
"""
    toy, row = run_attack(tmp_path, script)
    assert row["decision"] == "accepted", row
    assert toy.git("show", "autoharness:agent/skills.py") == skills_file("alpha", "beta").strip()
    gate = json.loads((toy.workspace / "iterations" / "1" / "gate.json").read_text())
    assert toy.git("rev-parse", "autoharness^{tree}") == gate["tree"]  # the scored tree, committed


@pytest.mark.parametrize(("script", "why"), [
    ("printf 'agent/* filter=sly\\n' > agent/.gitattributes", "git metadata"),
    ("printf '[submodule \"x\"]\\n\\tpath = agent/x\\n\\turl = /x\\n' > agent/.gitmodules", "git metadata"),
    ("mkdir agent/vendored && cd agent/vendored && git init -q && echo hi > a && git add a && "
     "git -c user.name=a -c user.email=a@a commit -qm x", "nested git repository"),
    ("ln -s /etc agent/etc", "symlink escapes"),
    ("ln -s ../../../secrets agent/up", "symlink escapes"),
    ("printf 'GIF89a\\0\\0\\x01va-beta-1\\0' > agent/logo.gif", "held-out"),
    ("printf 'table\\0%s\\0' \"$GATEWAY\" > agent/table.dat", "secret"),
    ("printf 'known %s\\n' \"$GATEWAY\" > agent/notes.dat", "secret"),   # *.dat is -diff in the base
    ("touch agent/va-gamma-2.txt", "held-out"),
    ("chmod +x README.md", "outside editable"),
])
def test_the_guard_reads_what_would_be_committed(tmp_path, script, why):
    toy, row = run_attack(tmp_path, script, base_files={".gitattributes": "*.dat -diff\n"})
    assert row["decision"] == "rejected" and why in row["reason"], row
    assert toy.git("log", "--format=%s", "autoharness").splitlines()[0] == "add .gitattributes"
    # A refused secret is kept nowhere: not in the target's objects, not in the workspace.
    assert TOKEN.encode() not in _all_bytes(toy.workspace)
    objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=toy.target,
                             capture_output=True).stdout
    assert TOKEN.encode() not in objects


def test_the_agent_cannot_reach_the_target_git(tmp_path):
    # From inside the sandbox the target's database is not there (a hidden folder: writes vanish with the
    # sandbox); its objects are, read-only, for the checkout's history.
    target = tmp_path / "target"
    script = f"""
git log --oneline | grep -q initial
git --git-dir={target}/.git update-ref refs/heads/main HEAD || true
git --git-dir={target}/.git symbolic-ref HEAD refs/heads/autoharness || true
echo x > {target}/.git/pwned || true
echo x > {target}/pwned || true
while read alt; do touch "$alt/pwned" || true; done < "$(git rev-parse --git-path objects)/info/alternates"
"""
    toy = make_toy(tmp_path, TASKS, SPLIT, backend=(
        f'kind = "{__name__}:ShellAgent"\n[backend.options]\nscript = {json.dumps(script)}'))
    before = target_state(toy)
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    row = tsv(toy)[1]
    assert row["decision"] == "accepted", row
    assert target_state(toy) == before
    assert not list(toy.target.rglob("pwned"))


def _all_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
