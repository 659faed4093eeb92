"""The file guard: the first and cheapest gate stage, run on the candidate's tree of files."""

from __future__ import annotations

import os
import posixpath
import re
from functools import lru_cache

from orchestrator.core.gittree import GITLINK, SYMLINK, Change, ObjectStore
from orchestrator.core.scrub import ids_pattern


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Gitignore-like globs: `**` crosses folders, `*` and `?` do not; `dir/**` matches all below dir."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def is_editable(path: str, globs: list[str]) -> bool:
    return any(glob_regex(g.lstrip("/")).match(path) for g in globs)


GIT_METADATA = (".gitattributes", ".gitmodules")


def check(changes: list[Change], store: ObjectStore, editable: list[str], held_out: list[str],
          secrets: list[str] = ()) -> str | None:
    """Return the reason to reject, or None when the candidate passes the guard.

    It reads what will be committed, not a diff's text: every added or changed blob, binary or not, is
    scanned for the values of secrets and for held-out task ids, and so are the file names.
    """
    if not changes:
        return "the proposal changed nothing"
    outside = [c.path for c in changes if not is_editable(c.path, editable)]
    if outside:
        shown = ", ".join(outside[:5]) + (f" (+{len(outside) - 5} more)" if len(outside) > 5 else "")
        return f"changes outside editable {editable}: {shown}"
    for c in changes:
        if posixpath.basename(c.path) in GIT_METADATA:
            return f"changes git metadata ({c.path}): attributes and submodules are refused"
        if GITLINK in (c.new_mode, c.old_mode):
            return f"a gitlink (submodule) at {c.path}"
    written = [c for c in changes if c.status != "D"]
    held = ids_pattern(held_out)  # all ids in one pattern: one pass over each blob
    if any(held.search(c.path) for c in changes):
        return "a file name names a held-out (val/test) task id"
    wanted = {c.new_sha: c for c in written}
    raw_secrets = [s.encode() for s in secrets if s]
    for sha, data in store.blobs(wanted):
        c = wanted[sha]
        if c.new_mode == SYMLINK and _escapes(c.path, os.fsdecode(data)):
            return f"symlink escapes the worktree: {c.path} -> {os.fsdecode(data)}"
        # A coding agent's shell can read the API keys in its environment; none may land in a commit.
        if any(secret in data for secret in raw_secrets):
            return f"{c.path} contains the value of a secret handed to the backend"
        text = data.decode("latin-1")  # byte for byte: ids are found in binary files too
        if held.search(text):
            return f"{c.path} names a held-out (val/test) task id"
    return None


def _escapes(path: str, target: str) -> bool:
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")
