"""The worktree as a proposal found it, put back after a failed attempt (a retry, a fallback, an error).

Taken without touching the worktree, and without running anything of its repository's (a coding agent may
have written filters or hooks into it): its files (tracked and untracked, not ignored) are hashed as raw
blobs into a scratch object store of ours (core/gittree.py), and the real index is copied aside. Restoring
brings back HEAD (when the backend committed), the index and every file: files added since are removed,
ignored ones too, except ignored files and folders that were there before (caches, a virtualenv); the
snapshot's files are then written back byte for byte. Only a whole repository is restored: cleaning a
subfolder of a larger one would remove what the request does not own.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from orchestrator.core.errors import GitError, WorktreeError
from orchestrator.core.gittree import CannotTake, ObjectStore
from orchestrator.core.proc import git


class WorktreeSnapshot:
    """Use as a context manager: the scratch store and the saved index live in a folder removed at the end."""

    def __init__(self, worktree: Path):
        self.worktree = worktree.resolve()
        self.scratch = Path(tempfile.mkdtemp(prefix="autoharness-snapshot-"))
        try:
            top = Path(self._git("rev-parse", "--show-toplevel").strip()).resolve()
            if top != self.worktree:
                raise WorktreeError(f"{worktree} is not the top of a git worktree (that is {top})")
            self.head = self._git("rev-parse", "--verify", "-q", "HEAD", check=False).strip()
            self.index = self.worktree / self._git("rev-parse", "--git-path", "index").strip()
            objects = self.worktree / self._git("rev-parse", "--git-path", "objects").strip()
            self.store = ObjectStore(self.scratch / "objects.git", [objects])
            self.saved_index = self.scratch / "saved.index"
            if self.index.is_file():
                shutil.copyfile(self.index, self.saved_index)
            self.tree = self.store.take(self.worktree, self.head or None)
            # Ignored entries present now (folders collapsed) stay when ignored files are cleaned.
            self.ignored = self._store("--others", "--ignored", "--exclude-standard", "--directory")
        except (GitError, CannotTake) as exc:
            self.close()
            raise WorktreeError(f"cannot snapshot {worktree}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _git(self, *args: str, check: bool = True) -> str:
        """Plumbing in the worktree's own repository: reads and HEAD moves only (no filter or hook runs)."""
        try:
            return git(*args, cwd=self.worktree, check=check).stdout
        except GitError as exc:  # a BackendError, so a proposal reports it instead of crashing the loop
            raise WorktreeError(str(exc)) from exc

    def _store(self, *ls_files: str) -> list[str]:
        index = self.scratch / "clean.index"
        if not index.exists():
            self.store.git("read-tree", self.tree, index=index)
        return self.store.listing(self.worktree, index, *ls_files)

    def restore(self) -> None:
        """Put HEAD, the index and every file back as they were; raises WorktreeError when git cannot."""
        try:
            if self.head and self._git("rev-parse", "--verify", "-q", "HEAD", check=False).strip() != self.head:
                self._git("reset", "--soft", "-q", self.head)  # the backend committed; the files follow below
            # What the snapshot's tree does not list was added since, and goes first (a folder may stand where
            # a file was); ignored entries that were there before stay.
            kept = {p.rstrip("/") for p in self.ignored}
            for path in sorted(self._store("--others")):
                if not any(path == k or path.startswith(k + "/") for k in kept):
                    target = self.worktree / path
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink(missing_ok=True)
                    self._prune_empty(target.parent)
            self.store.write_files(self.tree, self.worktree)
        except (GitError, OSError) as exc:
            raise WorktreeError(f"cannot restore {self.worktree}: {exc}") from exc
        if self.saved_index.is_file():
            shutil.copyfile(self.saved_index, self.index)
        else:
            self.index.unlink(missing_ok=True)

    def _prune_empty(self, folder: Path) -> None:
        """Folders emptied by the clean-up go too, up to the worktree (as `git clean -d` would)."""
        while folder != self.worktree and folder.is_relative_to(self.worktree):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> WorktreeSnapshot:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
