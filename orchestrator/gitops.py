"""The target repo: the run's branch, commits and the best tag; and the folders an iteration works in.

Only `branch` and the best tag ever move; `base`, the user's other branches, their working tree, config and
hooks are never touched. The coding agent never sees the target's git database: it works in a private
checkout (`Workdir.checkout`), and its files come back as a tree (see core/gittree.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import ConfigError, GitError
from orchestrator.core.gittree import Change, ObjectStore
from orchestrator.core.proc import git, git_bytes

AUTHOR = {
    "GIT_AUTHOR_NAME": "autoharness",
    "GIT_AUTHOR_EMAIL": "autoharness@localhost",
    "GIT_COMMITTER_NAME": "autoharness",
    "GIT_COMMITTER_EMAIL": "autoharness@localhost",
}
# Signing config must not block our commits and tags (hooks are off for every git call: core/proc.py).
SAFE = ["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]
# The files of a git directory whose change would reach outside a proposal (besides refs, hooks and
# worktrees' HEADs): where HEAD points, config (hooks, fsmonitor, filters), attributes, alternates.
STATE_FILES = ("HEAD", "config", "config.worktree", "info/attributes", "info/exclude", "info/grafts", "shallow",
               "objects/info/alternates", "commondir")

__all__ = ["AUTHOR", "Change", "GitState", "TargetRepo", "Workdir"]


@dataclass
class GitState:
    refs: dict[str, str]
    files: dict[str, tuple[Path, bytes]]


class Workdir:
    """One iteration's folders, outside the workspace and the target: the coding agent's private checkout,
    the folder the benchmark scores, and the object store its candidate lands in."""

    def __init__(self, repo: TargetRepo, root: Path):
        self.repo, self.root = repo, root
        self.store = ObjectStore(root / "objects.git", [repo.objects])
        self.agent_dir = root / "agent"

    def score(self, treeish: str, folder: str = "score") -> Path:
        """A folder with exactly the files of `treeish` (no .git): what the benchmark runs. The paired gate
        scores two versions side by side, each in a folder of its own."""
        return self.store.materialize(self.store.tree_of(treeish), self.root / folder)

    def checkout(self, commit: str) -> Path:
        """The coding agent's checkout of `commit`: a repository of its own (history through read-only
        alternates on the target's objects), so nothing it does to git reaches the target."""
        dest = self.store.materialize(self.store.tree_of(commit), self.agent_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        run = lambda *args: git(*args, cwd=dest, env=env)  # noqa: E731
        run("init", "-q", "--template=", ".")
        (dest / ".git" / "objects" / "info" / "alternates").write_text(f"{self.repo.objects}\n")
        if (self.repo.common_dir / "shallow").is_file():
            shutil.copyfile(self.repo.common_dir / "shallow", dest / ".git" / "shallow")
        # HEAD on the run's branch name, and an identity for the agent's own commits: written, not spawned.
        branch = dest / ".git" / "refs" / "heads" / self.repo.branch
        branch.parent.mkdir(parents=True, exist_ok=True)
        branch.write_text(f"{commit}\n")
        (dest / ".git" / "HEAD").write_text(f"ref: refs/heads/{self.repo.branch}\n")
        with (dest / ".git" / "config").open("a") as config:
            config.write(f"[user]\n\tname = {AUTHOR['GIT_AUTHOR_NAME']}\n\temail = {AUTHOR['GIT_AUTHOR_EMAIL']}\n")
        run("read-tree", "HEAD")
        git("update-index", "-q", "--refresh", cwd=dest, env=env, check=False)  # so `git status` starts clean
        return dest

    def take(self, base: str) -> tuple[str, list[Change]]:
        """The candidate: the tree of the agent's files, and its changes from the tree `base`."""
        tree = self.store.take(self.agent_dir, base)
        return tree, self.store.changes(base, tree)


class TargetRepo:
    def __init__(self, path: Path, base: str, branch: str):
        self.path = path
        self.base = base
        self.branch = branch
        self.git_dir = Path(self._git("rev-parse", "--absolute-git-dir"))
        self.common_dir = (path / self._git("rev-parse", "--git-common-dir")).resolve()
        self.objects = self.common_dir / "objects"

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
        refusal = self.branch_conflict()
        if refusal is not None:
            raise ConfigError(refusal)
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
    def workdir(self, root: Path) -> Iterator[Workdir]:
        """One iteration's folders, removed on exit whatever happened."""
        shutil.rmtree(root, ignore_errors=True)
        try:
            yield Workdir(self, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def prune_worktrees(self, root: Path) -> list[str]:
        """Remove what a crash left under `root`: our folders, and worktrees an older version registered."""
        removed = []
        for wt in self.worktrees():
            p = Path(wt["worktree"])
            if p.is_relative_to(root):
                self._git("worktree", "remove", "--force", "--force", str(p), check=False)
                removed.append(str(p))
        self._git("worktree", "prune")
        if root.is_dir():
            for child in root.iterdir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(str(child))
        return sorted(set(removed))

    # -- what the coding agent must not change ---------------------------------------------------------
    def refs(self) -> dict[str, str]:
        """Every ref of the target and what it points at."""
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def _state_files(self) -> dict[str, Path]:
        files = {}
        dirs = {"": self.git_dir} if self.git_dir == self.common_dir else {"": self.git_dir, "common:": self.common_dir}
        for label, base in dirs.items():
            for rel in STATE_FILES:
                files[f"{label}{rel}"] = base / rel
            for folder in ("hooks", "worktrees"):
                for path in (base / folder).rglob("*") if (base / folder).is_dir() else ():
                    if path.is_file() and (folder == "hooks" or path.name in ("HEAD", "config.worktree")):
                        files[f"{label}{path.relative_to(base)}"] = path
        return files

    def state(self) -> GitState:
        """The target's refs, HEADs, config, hooks and info files, to compare after a proposal."""
        files = {}
        for name, path in self._state_files().items():
            try:
                files[name] = (path, path.read_bytes())
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                pass
        return GitState(self.refs(), files)

    def own_refs(self, best: str) -> dict[str, str]:
        """The refs autoharness itself moves, at the best commit: the run's branch and its best tag."""
        return {f"refs/heads/{self.branch}": best, f"refs/tags/{self.best_tag}": best}

    def restore_state(self, before: GitState, own: dict[str, str] | None = None) -> list[str]:
        """Put back whatever changed since `before` (files first: a HEAD or config may be what moved);
        return the names of what had changed. `own`: our refs where they must be now, whatever `before` held
        (with candidates in flight, another one may have been committed since `before` was taken)."""
        if own:
            before = GitState({**before.refs, **own}, before.files)
        after = self.state()
        changed = []
        for name in sorted(before.files.keys() | after.files.keys()):
            old, new = before.files.get(name), after.files.get(name)
            if (old and old[1]) != (new and new[1]):
                changed.append(name)
                if old is None:
                    new[0].unlink(missing_ok=True)
                else:
                    old[0].parent.mkdir(parents=True, exist_ok=True)
                    old[0].write_bytes(old[1])
        refs = self.refs()
        for ref in sorted(before.refs.keys() | refs.keys()):
            if before.refs.get(ref) != refs.get(ref):
                changed.append(ref)
                if ref in before.refs:
                    self._git("update-ref", "--no-deref", ref, before.refs[ref])
                else:
                    self._git("update-ref", "--no-deref", "-d", ref)
        return changed

    # -- the run's branch -------------------------------------------------------------------------------
    def commit(self, store: ObjectStore, tree: str, message: str, expected_tip: str) -> str:
        """Commit `tree` (the candidate that was scored) on `branch`, only if `branch` is still at
        expected_tip; the commit's tree is checked to be that very object."""
        store.export(self.objects)
        env = {**os.environ, **AUTHOR}
        sha = git_bytes(*SAFE, "commit-tree", tree, "-p", expected_tip, "-F", "-", cwd=self.path, env=env,
                        stdin=message.encode()).decode().strip()
        if self._git("rev-parse", f"{sha}^{{tree}}") != tree:
            raise GitError(f"commit {sha} does not hold the scored tree {tree}")
        self._git("update-ref", f"refs/heads/{self.branch}", sha, expected_tip)
        return sha

    def tag_best(self, sha: str) -> None:
        self._git(*SAFE, "tag", "-f", self.best_tag, sha, env={**os.environ, **AUTHOR})

    def reset_branch(self, sha: str) -> None:
        """Put `branch` back on a recorded commit (reconcile after a crash between commit and record)."""
        self._git("update-ref", f"refs/heads/{self.branch}", sha)

    def log(self, limit: int = 50) -> str:
        return self._git("log", "--oneline", f"-{limit}", f"refs/heads/{self.branch}")

    # -- what a fresh run would find here (`ensure_branch`, and `doctor` before the night) --------------
    def branch_conflict(self) -> str | None:
        """Why a fresh run cannot start `branch`: it exists with commits not on base; None when it is free."""
        tip = self.sha(f"refs/heads/{self.branch}")
        if tip is None or tip == self.sha(self.base):
            return None
        return (f"target.branch: {self.branch!r} already exists in {self.path} with commits not on "
                f"{self.base!r} (an earlier run?); delete it, or choose another target.branch")

    def branches(self) -> list[str]:
        """The local branch names."""
        return sorted(ref.removeprefix("refs/heads/") for ref in self.refs() if ref.startswith("refs/heads/"))

    def dirty_paths(self) -> list[str]:
        """Paths of the working tree that differ from its HEAD: changed, staged, deleted, or untracked and not
        ignored. Read without taking git's optional locks, so not even the index is rewritten."""
        if self._git("rev-parse", "--is-inside-work-tree", check=False) != "true":
            return []
        out = git("--no-optional-locks", "status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all",
                  cwd=self.path).stdout
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def check_ref_locks(self) -> None:
        """Refuse to start on a lock git left on a ref a run writes (its branch, its best tag, packed refs): git
        would refuse to move that ref. One line naming it, before any ref moves. The target's HEAD and index
        are never written, so their locks do not matter."""
        names = [f"refs/heads/{self.branch}", f"refs/tags/{self.best_tag}", "packed-refs"]
        locks = [lock for name in names if (lock := self.common_dir / f"{name}.lock").exists()]
        if locks:
            raise ConfigError(f"target.repo: {locks[0]} exists (git left it, or a git process is still running in "
                              f"{self.path}); remove it if no git process is running")


def tracked_files(repo: Path, rev: str) -> list[str]:
    """Every file path in the tree of `rev` in the repo at `repo`; none when `rev` has no tree."""
    res = git("ls-tree", "-r", "-z", "--name-only", "--full-tree", f"{rev}^{{tree}}", cwd=repo, check=False)
    return [p for p in res.stdout.split("\0") if p] if res.ok else []
