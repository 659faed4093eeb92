"""The two tools the raw-API backends give the model, confined to one worktree.

`bash` ({command}) and `str_replace_based_edit_tool` ({command: view|create|str_replace|insert, path,
file_text, old_str, new_str, insert_line}), named as Anthropic names its own. Paths are relative to the
worktree or absolute inside it; `..` escapes, outside absolute paths, symlinks that leave the worktree and
the worktree's `.git` are refused with an error result the model can read, never followed.
`bash` runs with the worktree as cwd, a timeout, capped output and no secret-named variables; a shell
can still reach outside, so the gate's guard (which checks the whole diff) stays the real fence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core.proc import SECRET_NAME, run_process
from orchestrator.core.sandbox import Sandbox

BASH = "bash"
EDIT = "str_replace_based_edit_tool"

_DESCRIPTIONS = {
    BASH: "Run a bash command in the repository root (the working directory) and get its exit code and output.",
    EDIT: ("View, create and edit files. Paths are relative to the repository root. view: a file with line "
           "numbers, or a directory listing. create: write file_text to path. str_replace: replace old_str, "
           "which must occur exactly once, with new_str. insert: insert new_str after line insert_line (0 = top)."),
}
_SCHEMAS: dict[str, dict[str, Any]] = {
    BASH: {
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The bash command to run."}},
        "required": ["command"],
    },
    EDIT: {
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert"]},
            "path": {"type": "string", "description": "File or directory, relative to the repository root."},
            "file_text": {"type": "string", "description": "create: the whole content of the new file."},
            "old_str": {"type": "string", "description": "str_replace: the exact text to replace."},
            "new_str": {"type": "string", "description": "str_replace / insert: the new text."},
            "insert_line": {"type": "integer", "description": "insert: the line after which to insert (0 = top)."},
        },
        "required": ["command", "path"],
    },
}


def anthropic_tools() -> list[dict[str, Any]]:
    return [{"name": n, "description": _DESCRIPTIONS[n], "input_schema": _SCHEMAS[n]} for n in (BASH, EDIT)]


def responses_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "name": n, "description": _DESCRIPTIONS[n], "parameters": _SCHEMAS[n],
             "strict": False} for n in (BASH, EDIT)]


def chat_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": n, "description": _DESCRIPTIONS[n], "parameters": _SCHEMAS[n]}}
            for n in (BASH, EDIT)]


@dataclass
class ToolResult:
    text: str
    is_error: bool = False


class ToolError(Exception):
    """A refused or failed tool call; its message goes back to the model."""


class Toolbox:
    """Runs tool calls inside `root`; never raises for a bad call, always answers with a ToolResult."""

    def __init__(self, root: Path, *, bash_timeout_s: float = 120.0, output_chars: int = 20_000,
                 env: dict[str, str] | None = None, sandbox: Sandbox | None = None):
        self.root = root.resolve()
        self.sandbox = sandbox
        self.bash_timeout_s = bash_timeout_s
        self.output_chars = output_chars
        base = {**os.environ, **(env or {})}
        self.env = {k: v for k, v in base.items() if not SECRET_NAME.search(k)}

    def run(self, name: str, args: Any, *, timeout_s: float | None = None) -> ToolResult:
        try:
            if not isinstance(args, dict):
                raise ToolError("arguments must be a JSON object")
            if name == BASH:
                return self._bash(args, timeout_s)
            if name == EDIT:
                return ToolResult(self._edit(args))
            raise ToolError(f"unknown tool {name!r}; the tools are {BASH} and {EDIT}")
        except ToolError as exc:
            return ToolResult(f"Error: {exc}", is_error=True)
        except (OSError, UnicodeDecodeError) as exc:
            return ToolResult(f"Error: {type(exc).__name__}: {exc}", is_error=True)

    # -- paths
    def resolve(self, path: Any) -> Path:
        """The real path for `path`, or ToolError when it leaves the worktree."""
        if not isinstance(path, str) or not path.strip():
            raise ToolError("path is required")
        given = Path(path)
        lexical = Path(os.path.normpath(given if given.is_absolute() else self.root / given))
        if not lexical.is_relative_to(self.root):
            raise ToolError(f"{path}: outside the repository; use a path inside it")
        real = lexical.resolve()
        if not real.is_relative_to(self.root):
            raise ToolError(f"{path}: a symlink that leaves the repository; refused")
        rel = real.relative_to(self.root)
        if rel.parts and rel.parts[0] == ".git":
            raise ToolError(f"{path}: git's own files are off limits")
        return real

    def _show(self, p: Path) -> str:
        return str(p.relative_to(self.root)) if p != self.root else "."

    def _cap(self, text: str) -> str:
        if len(text) <= self.output_chars:
            return text
        return f"[... {len(text) - self.output_chars} characters cut ...]\n" + text[-self.output_chars:]

    # -- bash
    def _bash(self, args: dict[str, Any], timeout_s: float | None) -> ToolResult:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("command is required")
        limit = self.bash_timeout_s if timeout_s is None else max(1.0, min(self.bash_timeout_s, timeout_s))
        argv = ["bash", "-c", command]
        if self.sandbox is not None:
            argv = self.sandbox.wrap(argv)
        res = run_process(argv, cwd=self.root, env=self.env, timeout_s=limit, cap_chars=self.output_chars)
        if res.timed_out:
            return ToolResult(self._cap(f"timed out after {limit:.0f}s\n{res.stdout}{res.stderr}"), is_error=True)
        text = f"exit code: {res.returncode}\n{res.stdout}"
        if res.stderr:
            text += ("" if text.endswith("\n") else "\n") + f"stderr:\n{res.stderr}"
        return ToolResult(self._cap(text), is_error=res.returncode != 0)

    # -- editor
    def _edit(self, args: dict[str, Any]) -> str:
        command = args.get("command")
        path = self.resolve(args.get("path"))
        if command == "view":
            return self._view(path)
        if command == "create":
            text = args.get("file_text")
            if not isinstance(text, str):
                raise ToolError("create needs file_text")
            if path.is_dir():
                raise ToolError(f"{self._show(path)} is a directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return f"created {self._show(path)} ({len(text.splitlines())} lines)"
        if not path.is_file():
            raise ToolError(f"{args.get('path')}: no such file")
        content = path.read_text(encoding="utf-8")
        if command == "str_replace":
            old, new = args.get("old_str"), args.get("new_str", "")
            if not isinstance(old, str) or not old or not isinstance(new, str):
                raise ToolError("str_replace needs old_str (non-empty) and new_str")
            count = content.count(old)
            if count != 1:
                raise ToolError(f"old_str occurs {count} times in {self._show(path)}; it must occur exactly once")
            path.write_text(content.replace(old, new, 1), encoding="utf-8")
            return f"edited {self._show(path)}"
        if command == "insert":
            line, new = args.get("insert_line"), args.get("new_str")
            lines = content.splitlines(keepends=True)
            if not isinstance(line, int) or isinstance(line, bool) or not 0 <= line <= len(lines):
                raise ToolError(f"insert_line must be an integer from 0 to {len(lines)}")
            if not isinstance(new, str):
                raise ToolError("insert needs new_str")
            if line and not lines[line - 1].endswith("\n"):
                lines[line - 1] += "\n"
            lines.insert(line, new if new.endswith("\n") else new + "\n")
            path.write_text("".join(lines), encoding="utf-8")
            return f"inserted {len(new.splitlines())} lines after line {line} of {self._show(path)}"
        raise ToolError(f"unknown command {command!r}; use view, create, str_replace or insert")

    def _view(self, path: Path) -> str:
        if path.is_dir():
            entries = [self._show(p) + ("/" if p.is_dir() else "") for p in _walk(path, depth=2)]
            return self._cap("\n".join(entries) or "(empty directory)")
        if not path.is_file():
            raise ToolError(f"{self._show(path)}: no such file or directory")
        lines = path.read_text(encoding="utf-8").splitlines()
        return self._cap("\n".join(f"{i:6}\t{line}" for i, line in enumerate(lines, 1)))


def _walk(folder: Path, depth: int):
    """Entries down to `depth` levels, hidden ones skipped, symlinked folders not entered."""
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        yield p
        if depth > 1 and p.is_dir() and not p.is_symlink():
            yield from _walk(p, depth - 1)
