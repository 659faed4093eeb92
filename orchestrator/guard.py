"""The file guard: the first and cheapest gate stage, run on the staged diff of a candidate worktree."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from orchestrator.core.scrub import id_pattern
from orchestrator.gitops import Change


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


def added_lines(diff: str) -> list[str]:
    return [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]


def check(worktree: Path, changes: list[Change], diff: str, editable: list[str], held_out: list[str],
          secrets: list[str] = ()) -> str | None:
    """Return the reason to reject, or None when the candidate passes the guard."""
    if not changes:
        return "the proposal changed nothing"
    outside = [c.path for c in changes if not is_editable(c.path, editable)]
    if outside:
        shown = ", ".join(outside[:5]) + (f" (+{len(outside) - 5} more)" if len(outside) > 5 else "")
        return f"changes outside editable {editable}: {shown}"
    root = worktree.resolve()
    for c in changes:
        link = worktree / c.path
        if link.is_symlink() and not link.resolve().is_relative_to(root):
            return f"symlink escapes the worktree: {c.path} -> {os.readlink(link)}"
    lines = added_lines(diff)
    # A coding agent's shell can read the API keys in its environment; none may land in a commit.
    if any(secret in line for line in lines for secret in secrets):
        return "added lines contain the value of a secret environment variable"
    for task_id in held_out:
        pat = id_pattern(task_id)
        if any(pat.search(line) for line in lines):
            return "added lines name a held-out (val/test) task id"
    return None
