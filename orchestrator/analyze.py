"""The failure digest: failing TRAIN tasks grouped by failure signature, with bounded excerpts.

Only train results reach this module; it is the sole source of task detail in a prompt.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.store import StoredResult

EXCERPT_CHARS = 600
MAX_GROUPS = 8
MAX_TRACE_BYTES = 4_000_000


def signature(res: StoredResult) -> str:
    """What failures of one kind share: the error's first line with numbers and quoted values blanked."""
    first = next((ln.strip() for ln in res.error.splitlines() if ln.strip()), "")
    first = re.sub(r"(['\"]).*?\1", "…", first)
    first = re.sub(r"\b[A-Z]*\d[\w.-]*", "N", first)
    first = re.sub(r"\s+", " ", first)[:140]
    return f"[{res.error_class or 'failed'}] {first or 'no error text'}"


@dataclass
class Group:
    signature: str
    tasks: list[StoredResult] = field(default_factory=list)


def group_failures(results: dict[str, StoredResult], pass_reward: float) -> list[Group]:
    groups: dict[str, Group] = {}
    for task_id in sorted(results):
        res = results[task_id]
        if res.split != "train" or (res.reward is not None and res.reward >= pass_reward):
            continue
        groups.setdefault(signature(res), Group(signature(res))).tasks.append(res)
    return sorted(groups.values(), key=lambda g: (-len(g.tasks), g.signature))


def belongs_to(rel: str, task_id: str) -> bool:
    """Trace files are named after their task: `<task_id>.json`, or anything under `<task_id>/`."""
    first = rel.split("/", 1)[0]
    return first == task_id or first.startswith(task_id + ".")


def copy_traces(src: Path | None, dest: Path, task_ids: list[str]) -> list[str]:
    """Copy the traces of the given train tasks into the worktree's context folder (size-bounded)."""
    if src is None or not src.is_dir():
        return []
    dest.mkdir(parents=True, exist_ok=True)
    copied, total = [], 0
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(src)
        if not any(belongs_to(rel.as_posix(), t) for t in task_ids):
            continue
        size = path.stat().st_size
        if total + size > MAX_TRACE_BYTES:
            break
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        copied.append(rel.as_posix())
        total += size
    return copied


def digest(results: dict[str, StoredResult], pass_reward: float, trace_files: list[str], context_dir: str) -> str:
    train = [r for r in results.values() if r.split == "train"]
    passed = sum(1 for r in train if r.reward is not None and r.reward >= pass_reward)
    groups = group_failures(results, pass_reward)
    lines = [f"Train: {passed}/{len(train)} tasks pass. {len(train) - passed} fail, in {len(groups)} groups "
             "(largest first)."]
    for i, g in enumerate(groups[:MAX_GROUPS], 1):
        ids = [t.task_id for t in g.tasks]
        shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        lines += ["", f"### Group {i}: {len(g.tasks)} tasks — {g.signature}", f"Tasks: {shown}"]
        example = g.tasks[0]
        excerpt = example.error.strip()
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = excerpt[:EXCERPT_CHARS] + " …[cut]"
        if excerpt:
            lines += [f"Example ({example.task_id}, reward {example.reward}):", "```", excerpt, "```"]
        traces = [f for f in trace_files if any(belongs_to(f, t) for t in ids)]
        if traces:
            lines.append("Traces: " + ", ".join(f"{context_dir}/traces/{f}" for f in traces[:5]))
    if len(groups) > MAX_GROUPS:
        lines.append(f"\n({len(groups) - MAX_GROUPS} smaller groups not shown)")
    return "\n".join(lines)
