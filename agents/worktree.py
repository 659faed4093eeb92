"""The worktree as a proposal found it, put back after a failed attempt (a retry, a fallback, an error).

Taken without touching the worktree: its files (tracked and untracked, not ignored) are written as a git
tree through a private index seeded from the real one, and the real index is copied aside. Restoring
brings back HEAD (when the backend committed), the index and every file: files changed since are
rewritten, files added since removed, ignored ones too; ignored files and folders that were there before
(caches, a virtualenv) are kept as they are. Only a whole repository is restored: cleaning a subfolder of a larger one would
remove what the request does not own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from orchestrator.core.errors import GitError, WorktreeError
from orchestrator.core.proc import git


class WorktreeSnapshot:
    """Use as a context manager: the private indexes live in a scratch folder removed at the end."""

    def __init__(self, worktree: Path):
        self.worktree = worktree.resolve()
        self.scratch = Path(tempfile.mkdtemp(prefix="autoharness-snapshot-"))
        try:
            top = Path(self._git("rev-parse", "--show-toplevel").strip()).resolve()
            if top != self.worktree:
                raise WorktreeError(f"{worktree} is not the top of a git worktree (that is {top})")
            self.head = self._git("rev-parse", "--verify", "-q", "HEAD", check=False).strip()
            self.index = self.worktree / self._git("rev-parse", "--git-path", "index").strip()
            self.saved_index = self.scratch / "saved.index"
            self.private = self.scratch / "private.index"
            if self.index.is_file():
                shutil.copyfile(self.index, self.saved_index)
                shutil.copyfile(self.index, self.private)  # a seed: unchanged files are not hashed again
            self._git("add", "-A", index=self.private)
            self.tree = self._git("write-tree", index=self.private).strip()
            # Ignored entries present now (folders collapsed) stay when ignored files are cleaned.
            listing = self._git("ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z",
                                index=self.private)
            self.ignored = [p for p in listing.split("\0") if p]
        except BaseException:
            self.close()
            raise

    def _git(self, *args: str, index: Path | None = None, check: bool = True) -> str:
        env = None if index is None else {**os.environ, "GIT_INDEX_FILE": str(index)}
        try:
            return git(*args, cwd=self.worktree, env=env, check=check).stdout
        except GitError as exc:  # a BackendError, so a proposal reports it instead of crashing the loop
            raise WorktreeError(str(exc)) from exc

    def restore(self) -> None:
        """Put HEAD, the index and every file back as they were; raises WorktreeError when git cannot."""
        if self.head and self._git("rev-parse", "--verify", "-q", "HEAD", check=False).strip() != self.head:
            self._git("reset", "--soft", "-q", self.head)  # the backend committed; the files follow below
        # The private index holds the snapshot's tree: what it does not list was added since, and goes first
        # (a folder may stand where a file was); then the files that differ from it are written back.
        keep = [arg for p in self.ignored for arg in ("-e", "/" + p.rstrip("/"))]
        self._git("clean", "-fdxq", *keep, index=self.private)
        self._git("read-tree", "--reset", "-u", self.tree, index=self.private)
        if self.saved_index.is_file():
            shutil.copyfile(self.saved_index, self.index)
        else:
            self.index.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> WorktreeSnapshot:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
