"""What a task id may hold. An id travels comma-separated in AUTOHARNESS_TASK_IDS, names a folder under
traces/train, and is quoted in prompts and records, so it must be one plain token."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.core.errors import ConfigError


def problem(task_id: str) -> str | None:
    """Why `task_id` cannot be a task id, or None when it can."""
    if not task_id:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in task_id):
        return "holds a control character"
    if any(c.isspace() for c in task_id):
        return "holds whitespace"
    if "," in task_id:
        return "holds a comma (AUTOHARNESS_TASK_IDS is comma-separated)"
    if "/" in task_id or "\\" in task_id:
        return "holds a path separator"
    if ".." in task_id or task_id == ".":
        return "holds '..' or is '.'"
    return None


def check_ids(ids: Iterable[str], where: str) -> list[str]:
    """`ids` as a list, or a ConfigError naming the first bad id and `where` it came from."""
    out = []
    for task_id in ids:
        why = problem(task_id)
        if why is not None:
            raise ConfigError(f"{where}: task id {task_id!r} {why}; an id is one token without whitespace, commas, "
                              "path separators or '..'")
        out.append(task_id)
    return out
