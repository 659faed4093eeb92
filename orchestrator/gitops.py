"""The target repo: the run's branch, candidate worktrees, commits and the best tag.

Only `branch` and the best tag ever move; `base`, the user's other branches and their working tree are
never touched. Each candidate lives in a detached worktree that is removed whatever happens.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import ConfigError
from orchestrator.core.proc import git

AUTHOR = {
    "GIT_AUTHOR_NAME": "autoharness",
    "GIT_AUTHOR_EMAIL": "autoharness@localhost",
    "GIT_COMMITTER_NAME": "autoharness",
    "GIT_COMMITTER_EMAIL": "autoharness@localhost",
}
# The target's hooks and signing config must not run inside (or block) our commits.
SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]
# Never part of a candidate, whatever the target's .gitignore says: caches that running code leaves behind.
EXCLUDES = Path(__file__).with_name("candidate-excludes")


@dataclass
class Change:
    status: str        # A, M, D, R, T ...
    path: str


class TargetRepo:
    def __init__(self, path: Path, base: str, branch: str):
        self.path = path
        self.base = base
        self.branch = branch
        self.git_dir = Path(self._git("rev-parse", "--absolute-git-dir"))

    def _git(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        return git(*args, cwd=self.path, check=check, env=env).stdout.strip()

    @property
    def best_tag(self) -> str:
        return f"{self.branch}-best"

    def sha(self, rev: str) -> str | None:
        return self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False) or None

    def ensure_branch(self) -> str:
        """Create `branch` from `base` for a fresh run; return its tip.

        An existing `branch` that is not at `base` holds an earlier run's commits: a fresh workspace must
        not silently build on them.
        """
        base = self.sha(self.base)
        if base is None:
            raise ConfigError(f"target.base: {self.base!r} is not a branch or commit of {self.path}")
        tip = self.sha(f"refs/heads/{self.branch}")
        if tip is None:
            self._git("update-ref", f"refs/heads/{self.branch}", base, "")
            return base
        if tip != base:
            raise ConfigError(
                f"target.branch: {self.branch!r} already exists in {self.path} with commits not on "
                f"{self.base!r} (an earlier run?); delete it, or choose another target.branch")
        return tip

    def tip(self) -> str:
        sha = self.sha(f"refs/heads/{self.branch}")
        if sha is None:
            raise ConfigError(f"target.branch: {self.branch!r} does not exist in {self.path}")
        return sha

    def check_branch_free(self, own_root: Path) -> None:
        """Refuse to move `branch` while someone has it checked out (their working tree would go stale)."""
        for wt in self.worktrees():
            if wt.get("branch") == f"refs/heads/{self.branch}" and not Path(wt["worktree"]).is_relative_to(own_root):
                raise ConfigError(
                    f"target.branch: {self.branch!r} is checked out at {wt['worktree']}; "
                    "check out another branch there or choose another target.branch"
                )

    def worktrees(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for block in self._git("worktree", "list", "--porcelain").split("\n\n"):
            entry: dict[str, str] = {}
            for line in block.splitlines():
                key, _, value = line.partition(" ")
                entry[key] = value
            if "worktree" in entry:
                out.append(entry)
        return out

    @contextmanager
    def worktree(self, path: Path, commit: str) -> Iterator[Path]:
        """A detached worktree at `commit`, removed on exit whatever happened."""
        self.remove_worktree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._git("worktree", "add", "--detach", "--force", str(path), commit)
        try:
            yield path
        finally:
            self.remove_worktree(path)

    def remove_worktree(self, path: Path) -> None:
        self._git("worktree", "remove", "--force", "--force", str(path), check=False)  # may be gone already
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        self._git("worktree", "prune")

    def prune_worktrees(self, root: Path) -> list[str]:
        """Remove every worktree of ours under `root` (left by a crash)."""
        removed = []
        for wt in self.worktrees():
            p = Path(wt["worktree"])
            if p.is_relative_to(root):
                self.remove_worktree(p)
                removed.append(str(p))
        self._git("worktree", "prune")
        return removed

    def refs(self) -> dict[str, str]:
        """Every ref of the target and what it points at."""
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def restore_refs(self, before: dict[str, str]) -> list[str]:
        """Put back every ref that moved, appeared or vanished since `before`; return their names."""
        after = self.refs()
        changed = sorted(r for r in before.keys() | after.keys() if before.get(r) != after.get(r))
        for ref in changed:
            if ref in before:
                self._git("update-ref", ref, before[ref])
            else:
                self._git("update-ref", "-d", ref)
        return changed

    # -- candidate changes -----------------------------------------------------------------------------
    @staticmethod
    def stage_all(worktree: Path, base: str) -> list[Change]:
        """Stage every change since `base` (untracked files included) in the worktree's own index.

        HEAD goes back to `base` first (keeping the files), so commits the coding agent made itself are
        part of the candidate's diff and cannot slip past the guard. What is not staged (ignored files,
        caches) is then deleted, so the files the benchmark scores are exactly the ones committed.
        """
        git("reset", "-q", "--soft", base, cwd=worktree)
        git("-c", f"core.excludesFile={EXCLUDES}", "add", "-A", ".", cwd=worktree)
        git("clean", "-ffdxq", cwd=worktree)
        out = git("diff", "--cached", "--name-status", "-z", "--no-renames", "HEAD", cwd=worktree).stdout
        parts = [p for p in out.split("\0") if p]
        return [Change(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]

    @staticmethod
    def reset_clean(worktree: Path, commit: str) -> None:
        """Back to a pristine checkout of `commit`: what a benchmark run left behind is gone."""
        git("reset", "-q", "--hard", commit, cwd=worktree)
        git("clean", "-ffdxq", cwd=worktree)

    @staticmethod
    def tree_entries(worktree: Path, treeish: str | None = None) -> list[tuple[str, str]]:
        """(path, blob id) of every file in `treeish`, or in the worktree's index when None."""
        tree = treeish or git("write-tree", cwd=worktree).stdout.strip()
        out = git("ls-tree", "-r", "-z", "--full-tree", tree, cwd=worktree).stdout
        entries = []
        for item in out.split("\0"):
            if item:
                meta, path = item.split("\t", 1)
                entries.append((path, meta.split()[2]))
        return entries

    @staticmethod
    def staged_diff(worktree: Path) -> str:
        return git("diff", "--cached", "--binary", "--no-color", "HEAD", cwd=worktree).stdout

    def commit(self, worktree: Path, message: str, expected_tip: str) -> str:
        """Commit the staged change and move `branch` to it, only if `branch` is still at expected_tip."""
        git(*SAFE, "commit", "--no-verify", "-q", "-m", message, cwd=worktree, env={**os.environ, **AUTHOR})
        sha = git("rev-parse", "HEAD", cwd=worktree).stdout.strip()
        self._git("update-ref", f"refs/heads/{self.branch}", sha, expected_tip)
        return sha

    def tag_best(self, sha: str) -> None:
        self._git(*SAFE, "tag", "-f", self.best_tag, sha, env={**os.environ, **AUTHOR})

    def reset_branch(self, sha: str) -> None:
        """Put `branch` back on a recorded commit (reconcile after a crash between commit and record)."""
        self._git("update-ref", f"refs/heads/{self.branch}", sha)

    def log(self, limit: int = 50) -> str:
        return self._git("log", "--oneline", f"-{limit}", f"refs/heads/{self.branch}")
