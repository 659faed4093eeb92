"""Code as trees of files, in object stores autoharness owns.

A coding agent works in a checkout whose `.git` is its own throwaway; whatever it did to that repository
(commits, config, hooks, filters) is not looked at. Its files are taken as a git tree by hashing them as raw
blobs in a scratch store that reads the target's objects through alternates, and a tree is written out the
same way, byte for byte: no filter, attribute, hook or fsmonitor of anyone's can run. So the tree the guard
scans, the files the benchmark scores and the commit on the run's branch are one object.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import GitError
from orchestrator.core.proc import git, git_bytes

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
GITLINK, SYMLINK = "160000", "120000"
# Left behind by running code, never part of a candidate, whatever the target's .gitignore says.
EXCLUDES = Path(__file__).with_name("candidate-excludes")


class CannotTake(Exception):
    """The files cannot be taken as a candidate (a nested repository, a device file, ...): the guard's reason."""


@dataclass(frozen=True)
class Entry:
    mode: str
    sha: str
    path: str


@dataclass(frozen=True)
class Change:
    status: str        # A (added), M (modified), D (deleted), T (type changed)
    path: str
    old_mode: str = ""
    new_mode: str = ""
    new_sha: str = ""


class ObjectStore:
    """A bare repository of ours (never the target's, never the agent's): candidate objects land here until
    one is accepted; the target's objects are read through alternates."""

    def __init__(self, root: Path, alternates: Iterable[Path] = ()):
        self.root = root
        if not (root / "objects").is_dir():
            root.mkdir(parents=True, exist_ok=True)
            git("init", "-q", "--bare", "--template=", str(root), cwd=root)
        alt = "".join(f"{p.resolve()}\n" for p in alternates)
        (root / "objects" / "info").mkdir(parents=True, exist_ok=True)
        (root / "objects" / "info" / "alternates").write_text(alt)

    def env(self, index: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_DIR"] = str(self.root)
        env["GIT_INDEX_FILE"] = str(index or self.root / "scratch.index")
        return env

    def git(self, *args: str, index: Path | None = None, cwd: Path | None = None, stdin: bytes = b"") -> bytes:
        return git_bytes(*args, cwd=cwd or self.root, env=self.env(index), stdin=stdin)

    # -- taking files as a tree
    def take(self, worktree: Path, seed: str | None = None) -> str:
        """The tree of `worktree`'s files: tracked in `seed` (a tree-ish) or untracked and not ignored.

        Symlinks are taken as links; a nested repository, a socket or a device is refused. Files are hashed
        exactly as they are on disk (`--no-filters`).
        """
        index = self.root / "take.index"
        index.unlink(missing_ok=True)
        if seed:
            self.git("read-tree", seed, index=index)
        tracked = {e.path: e for e in self._index_entries(index)}
        entries, regular = [], []
        for path in sorted(set(self.listing(worktree, index, "--cached", "--others", "--exclude-standard"))):
            if path.endswith("/"):
                raise CannotTake(f"a nested git repository: {path}")
            if "\n" in path:
                raise CannotTake(f"a file name git cannot take safely: {path!r}")
            try:
                st = os.lstat(worktree / path)
            except FileNotFoundError:
                continue  # deleted
            if stat.S_ISLNK(st.st_mode):
                target = os.fsencode(os.readlink(worktree / path))
                entries.append(Entry(SYMLINK, self._hash(target), path))
            elif stat.S_ISREG(st.st_mode):
                regular.append((path, "100755" if st.st_mode & stat.S_IXUSR else "100644"))
            elif stat.S_ISDIR(st.st_mode) and path in tracked and tracked[path].mode == GITLINK:
                entries.append(tracked[path])  # the target's own submodule, untouched
            elif not stat.S_ISDIR(st.st_mode):
                raise CannotTake(f"not a regular file or a symlink: {path}")
        if regular:
            paths = "".join(f"{p}\n" for p, _ in regular).encode()
            shas = self.git("hash-object", "-w", "--no-filters", "--stdin-paths", cwd=worktree, stdin=paths).split()
            entries += [Entry(mode, sha.decode(), p) for (p, mode), sha in zip(regular, shas, strict=True)]
        return self.write_tree(entries)

    def listing(self, worktree: Path, index: Path, *flags: str) -> list[str]:
        """`git ls-files` of `worktree` against `index`, with the candidate excludes: paths, not quoted."""
        out = self.git("-c", f"core.excludesFile={EXCLUDES}", f"--work-tree={worktree}", "ls-files", "-z", *flags,
                       index=index, cwd=worktree)
        return [p for p in os.fsdecode(out).split("\0") if p]

    def _hash(self, data: bytes) -> str:
        return self.git("hash-object", "-w", "--no-filters", "--stdin", stdin=data).decode().strip()

    def _index_entries(self, index: Path) -> list[Entry]:
        if not index.exists():
            return []
        out = []
        for item in os.fsdecode(self.git("ls-files", "-s", "-z", index=index)).split("\0"):
            if item:
                meta, path = item.split("\t", 1)
                mode, sha, _ = meta.split()
                out.append(Entry(mode, sha, path))
        return out

    def write_tree(self, entries: list[Entry]) -> str:
        index = self.root / "write.index"
        index.unlink(missing_ok=True)
        info = b"".join(f"{e.mode} {e.sha}\t".encode() + os.fsencode(e.path) + b"\0" for e in entries)
        self.git("update-index", "-z", "--add", "--index-info", index=index, stdin=info)
        if not entries:
            return EMPTY_TREE
        return self.git("write-tree", index=index).decode().strip()

    # -- reading trees
    def entries(self, treeish: str) -> list[Entry]:
        out = []
        for item in os.fsdecode(self.git("ls-tree", "-r", "-z", "--full-tree", treeish)).split("\0"):
            if item:
                meta, path = item.split("\t", 1)
                mode, _, sha = meta.split()
                out.append(Entry(mode, sha, path))
        return out

    def tree_of(self, treeish: str) -> str:
        return self.git("rev-parse", "--verify", "-q", f"{treeish}^{{tree}}").decode().strip()

    def blobs(self, shas: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(sha, content) of each blob, raw."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return
        out = self.git("cat-file", "--batch", stdin="".join(f"{s}\n" for s in wanted).encode())
        pos = 0
        for sha in wanted:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            if len(header) != 3:
                raise GitError(f"object {sha} is missing from the store")
            size = int(header[2])
            yield sha, out[end + 1:end + 1 + size]
            pos = end + 1 + size + 1

    def changes(self, old: str, new: str) -> list[Change]:
        """What changed from tree `old` to tree `new`, file by file, with modes and the new blob."""
        out = os.fsdecode(self.git("diff-tree", "-r", "-z", "--no-renames", "--no-ext-diff", old, new)).split("\0")
        changes = []
        for i in range(0, len(out) - 1, 2):
            if not out[i].startswith(":"):
                break
            old_mode, new_mode, _, new_sha, status = out[i][1:].split()
            changes.append(Change(status[0], out[i + 1], old_mode, new_mode, new_sha))
        return changes

    def patch(self, old: str, new: str) -> str:
        """The change as a patch, for the records: binary files are named, not encoded (their bytes could
        carry what the scrubber cannot see); attributes of the tree play no part."""
        raw = self.git("diff-tree", "-p", "--full-index", "--no-color", "--no-ext-diff", "--no-textconv",
                       old, new)
        return raw.decode("utf-8", "replace")

    def replay(self, old: str, new: str, onto: str) -> str:
        """The change from tree `old` to tree `new`, applied to tree `onto`: the resulting tree. A change that
        does not apply cleanly (it touches what changed in `onto`) raises CannotTake with git's words."""
        change = self.git("diff-tree", "-p", "--binary", "--full-index", "--no-renames", "--no-color",
                          "--no-ext-diff", "--no-textconv", old, new)
        index = self.root / "replay.index"
        index.unlink(missing_ok=True)
        self.git("read-tree", onto, index=index)
        if change.strip():
            try:
                self.git("apply", "--cached", "--binary", "--whitespace=nowarn", "-", index=index, stdin=change)
            except GitError as exc:
                said = str(exc).split(f"{self.root}: ", 1)[-1]  # git's own words, not our folder
                raise CannotTake(" ".join(said.split())[:300]) from None
        return self.git("write-tree", index=index).decode().strip()

    # -- writing trees out
    def materialize(self, tree: str, dest: Path, keep: Iterable[str] = ()) -> Path:
        """Make `dest` hold exactly the files of `tree`, byte for byte; top-level names in `keep` stay."""
        dest.mkdir(parents=True, exist_ok=True)
        kept = set(keep)
        for child in dest.iterdir():
            if child.name not in kept:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        return self.write_files(tree, dest)

    def write_files(self, tree: str, dest: Path) -> Path:
        """Write every file of `tree` into `dest`, over what stands there; other files are left alone."""
        entries = self.entries(tree)
        data = dict(self.blobs(e.sha for e in entries if e.mode != GITLINK))
        for e in entries:
            path = dest / e.path
            if e.mode == GITLINK and path.is_dir() and not path.is_symlink():
                continue  # a submodule's own checkout stays as it is
            _make_room(dest, path)
            if e.mode == GITLINK:
                path.mkdir()
            elif e.mode == SYMLINK:
                os.symlink(os.fsdecode(data[e.sha]), path)
            else:
                path.write_bytes(data[e.sha])
                path.chmod(0o755 if e.mode == "100755" else 0o644)
        return dest

    def export(self, objects_dir: Path) -> int:
        """Copy our loose objects into another repository's store (the accepted candidate's new blobs and
        trees); return how many it lacked."""
        copied = 0
        for obj in (self.root / "objects").glob("[0-9a-f][0-9a-f]/*"):
            dest = objects_dir / obj.parent.name / obj.name
            if not dest.exists():
                dest.parent.mkdir(exist_ok=True)
                tmp = dest.with_name(f".{obj.name}.tmp")
                shutil.copyfile(obj, tmp)
                tmp.replace(dest)
                copied += 1
        return copied


def _make_room(root: Path, path: Path) -> None:
    """Clear the way for a file at `path`: a file or a symlink where a folder must be, and whatever stands at
    `path` itself (never following a symlink out of `root`)."""
    for parent in reversed(path.relative_to(root).parents[:-1] if path != root else []):
        folder = root / parent
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            folder.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
