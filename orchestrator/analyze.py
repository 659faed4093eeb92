"""The failure digest: failing TRAIN tasks grouped by failure signature, with bounded excerpts.

Only train results reach this module; it is the sole source of task detail in a prompt.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from orchestrator.core.words import count
from orchestrator.store import StoredResult

EXCERPT_CHARS = 600
MAX_GROUPS = 8
MAX_TRACE_BYTES = 4_000_000


# A Python traceback: its header, its frames (`File "...", line N, in func`; no function for a SyntaxError's
# own line) and, at the left margin after the last frame, the exception's type.
TRACEBACK = "Traceback (most recent call last):"
FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+(?:, in (?P<func>\S+))?\s*$')
EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s|:?$)")
# Frames of Python itself (frozen modules, the standard library, installed packages): a crash is placed in
# the caller's code when there is one.
PYTHON_OWN = re.compile(r"^<frozen |/lib/python\d[\d.]*/")


class Crash(NamedTuple):
    type: str       # the exception's type as printed: `KeyError`, `orders.OrderMissing`
    place: str      # `file.py:function`, or `file.py` for a SyntaxError's line or a module's top level
    line: str       # the exception line: `KeyError: 'B7'`


def python_crash(text: str) -> Crash | None:
    """The last Python traceback in `text` (which may hold logs around it), placed in its innermost frame of
    code that is not Python's own; None when the text holds no complete traceback. A chained traceback
    ("During handling of the above exception ...") is told by its last exception."""
    lines = text.splitlines()
    frames = [i for i, line in enumerate(lines) if FRAME.match(line)]
    if not frames:
        return None
    last = frames[-1]
    exc = next(((m, line) for line in lines[last + 1:] if (m := EXCEPTION.match(line))), None)
    if exc is None:
        return None
    start = max((i for i in range(last) if TRACEBACK in lines[i]), default=0)
    block = [m for i in frames if i >= start and (m := FRAME.match(lines[i]))]
    frame = next((m for m in reversed(block) if not PYTHON_OWN.search(m["file"])), block[-1])
    place = frame["file"].replace("\\", "/").rsplit("/", 1)[-1]
    if frame["func"] and frame["func"] != "<module>":
        place += f":{frame['func']}"
    return Crash(exc[0]["type"], place, exc[1].strip())


def headline(error: str) -> str:
    """An error in one line: a Python crash by its exception line and place, else the first line that says
    anything."""
    crash = python_crash(error)
    if crash is not None:
        return f"{crash.line} (in {crash.place})"
    return next((ln.strip() for ln in error.splitlines() if re.search(r"\w", ln)), "")


def signature(res: StoredResult) -> str:
    """What failures of one kind share: a Python crash's exception type and place; else the error's first
    meaningful line with numbers and quoted values blanked."""
    crash = python_crash(res.error)
    if crash is not None:
        return f"[{res.error_class or 'failed'}] {crash.type} in {crash.place}"
    first = headline(res.error)
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
        sig = signature(res)
        groups.setdefault(sig, Group(sig)).tasks.append(res)
    return sorted(groups.values(), key=lambda g: (-len(g.tasks), g.signature))


def owners(rel: str) -> list[str]:
    """The task ids a trace file can belong to. Trace files are named after their task: `<task_id>.json`, or
    anything under `<task_id>/`; so its first path component, whole or cut at any of its dots."""
    first = rel.split("/", 1)[0]
    return [first[:i] for i, c in enumerate(first) if c == "."] + [first]


def belongs_to(rel: str, task_id: str) -> bool:
    return task_id in owners(rel)


def by_task(files: list[str], task_ids: list[str]) -> dict[str, list[str]]:
    """Each of `task_ids` with its files, in the order of `files`: one look-up per file and candidate owner, so
    the work grows with the files, not with files times tasks."""
    wanted = set(task_ids)
    out: dict[str, list[str]] = {}
    for rel in files:
        for task_id in owners(rel):
            if task_id in wanted:
                out.setdefault(task_id, []).append(rel)
    return out


def copy_traces(src: Path | None, dest: Path, task_ids: list[str]) -> list[str]:
    """Copy the traces of the given train tasks into the worktree's context folder (size-bounded)."""
    if src is None or not src.is_dir():
        return []
    dest.mkdir(parents=True, exist_ok=True)
    files = {p.relative_to(src).as_posix(): p for p in src.rglob("*") if p.is_file() and not p.is_symlink()}
    wanted = {rel for rels in by_task(list(files), task_ids).values() for rel in rels}
    copied, total, folders = [], 0, {dest}
    for rel in sorted(wanted, key=lambda r: r.split("/")):  # as paths sort: a folder's files by their folder
        size = files[rel].stat().st_size
        if total + size > MAX_TRACE_BYTES:
            break
        target = dest / rel
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.add(target.parent)
        shutil.copyfile(files[rel], target)
        copied.append(rel)
        total += size
    return copied


def excerpt(error: str) -> str:
    """A long error's head and tail: what it was doing, and how it ended (a traceback's exception line)."""
    text = error.strip()
    if len(text) <= EXCERPT_CHARS:
        return text
    head = EXCERPT_CHARS // 3
    return f"{text[:head]} …[cut]… {text[-(EXCERPT_CHARS - head):]}"


def digest(results: dict[str, StoredResult], pass_reward: float, trace_files: list[str], context_dir: str) -> str:
    train = [r for r in results.values() if r.split == "train"]
    passed = sum(1 for r in train if r.reward is not None and r.reward >= pass_reward)
    groups = group_failures(results, pass_reward)
    shown_ids = [t.task_id for g in groups[:MAX_GROUPS] for t in g.tasks]
    traces_of, order = by_task(trace_files, shown_ids), {f: i for i, f in enumerate(trace_files)}
    head = f"Train: {passed}/{count(len(train), 'task')} passed"
    if groups:
        head += (f", {len(train) - passed} failed, in {count(len(groups), 'group')}"
                 + (" (largest first)" if len(groups) > 1 else ""))
    lines = [head + "."]
    for i, g in enumerate(groups[:MAX_GROUPS], 1):
        ids = [t.task_id for t in g.tasks]
        shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        lines += ["", f"### Group {i}: {count(len(g.tasks), 'task')} — {g.signature}", f"Tasks: {shown}"]
        example = g.tasks[0]
        text = excerpt(example.error)
        if text:
            lines += [f"Example ({example.task_id}, reward {example.reward}):", "```", text, "```"]
        traces = sorted({f for t in ids for f in traces_of.get(t, ())}, key=order.__getitem__)
        if traces:
            lines.append("Traces: " + ", ".join(f"{context_dir}/traces/{f}" for f in traces[:5]))
    if len(groups) > MAX_GROUPS:
        lines.append(f"\n({count(len(groups) - MAX_GROUPS, 'smaller group')} not shown)")
    return "\n".join(lines)
