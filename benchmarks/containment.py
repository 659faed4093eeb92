"""How a benchmark's processes run, since a candidate's code runs inside them and may try to forge or buy its
score, or leave held-out data behind. Every runner that starts task processes goes through here.

- **Result lines are checked, not trusted.** A runner that can hand its benchmark a token (`new_token`)
  gives it on stdin before any agent code loads, never in the environment (which the agent's code reads);
  a result line without it is ignored. A task reported twice with different results is a conflict
  (`bad_output`, scored 0), never last-wins (`Reports`).
- **Every process gets a private temporary folder** (TMPDIR), removed when it ends.
- **Every run is contained** (`task_space`): under bubblewrap where it runs, with the benchmark's files,
  the agent and the orchestrator's records read-only (but a train run's traces folder), a private /tmp, its
  own PID namespace and /proc, and nothing it starts outliving it or the daemon. The rest of the host stays
  writable, since benchmarks write their own outputs. Where bubblewrap cannot run, only the private TMPDIR,
  and a PID namespace of its own where one can be made (orchestrator/core/reaper.py; `check` says which).
- harbor runs each task in its own container, which harbor itself creates and removes.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestrator.core.contracts import Check, TaskResult
from orchestrator.core.reaper import contain, guarantee
from orchestrator.core.sandbox import Bwrap, bwrap_problem

# In a command benchmark's environment: "stdin" means the first line of stdin is the run's token.
TOKEN_ENV = "AUTOHARNESS_RESULT_TOKEN"
CONFLICT = "the task was reported twice with different results"


def new_token() -> str:
    return secrets.token_hex(16)


@dataclass
class Reports:
    """The result lines of one process run, by key (a task id, or a task and trial)."""

    token: str | None = None
    lines: dict[Hashable, dict[str, Any]] = field(default_factory=dict)
    conflicts: set[Hashable] = field(default_factory=set)

    def add(self, key: Hashable, line: dict[str, Any]) -> bool:
        """Keep the line; False when it is ignored (no token, or a repeat of a line already kept)."""
        if self.token is not None and line.get("token") != self.token:
            return False
        line = {k: v for k, v in line.items() if k != "token"}
        first = self.lines.setdefault(key, line)
        if first is line:
            return True
        if first != line:
            self.conflicts.add(key)
        return False


def conflict_result(duration_s: float) -> TaskResult:
    """A conflict is the task's failure, not an infrastructure error that could be retried or dropped."""
    return TaskResult(0.0, duration_s, None, CONFLICT, "bad_output")


@dataclass
class Space:
    """Where one benchmark process runs: its argv (wrapped when sandboxed) and its private TMPDIR."""

    scratch: Path
    sandbox: Bwrap | None

    def argv(self, argv: list[str], path: str | None = None) -> list[str]:
        if self.sandbox is None:
            return contain(argv)
        return self.sandbox.wrap(argv, visible=launcher_prefix(argv[0], path))

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        scratch = str(self.scratch)
        return {**env, "TMPDIR": scratch, "TMP": scratch, "TEMP": scratch}


def launcher_prefix(program: str, path: str | None = None) -> list[Path]:
    """The installation a benchmark's program runs from (a virtualenv, /usr/local), as it is named rather
    than resolved: a virtualenv's python finds its packages from there. It stays readable inside the
    sandbox even where it lives under the private /tmp."""
    found = shutil.which(program, path=path)
    return [Path(os.path.abspath(found)).parent.parent] if found else []


@contextmanager
def task_space(*, read_only: Sequence[Path], writable: Sequence[Path] = (), outputs: Sequence[Path] = ()
               ) -> Iterator[Space]:
    """A place for one benchmark process, discarded when the block ends. Every run is contained, train runs
    too: the candidate's code runs in the suite and promote stages as well, and must not reach the records
    (the results cache) from there.

    `read_only`: the benchmark's files, the agent, the records; `writable`: what the process must see and
    may write (its working folder), which matters only under /tmp, private inside the sandbox; a writable
    folder inside a read-only one stays read-only. `outputs`: folders the run must write even inside a
    read-only one (a train run's traces folder)."""
    with private_dir("autoharness-run-") as scratch:
        yield Space(scratch, _sandbox(read_only, [scratch, *writable], outputs))


def _sandbox(read_only: Sequence[Path], writable: Sequence[Path], outputs: Sequence[Path]) -> Bwrap | None:
    if bwrap_problem():
        _warn_uncontained(bwrap_problem())
        return None
    frozen = [p.resolve() for p in read_only]
    bind = [p for p in (w.resolve() for w in writable) if not any(p.is_relative_to(r) for r in frozen)]
    bind += [p.resolve() for p in outputs]
    return Bwrap(bind=bind, read_only=frozen, host_writable=True, binary=shutil.which("bwrap") or "bwrap")


@lru_cache(maxsize=1)
def _warn_uncontained(problem: str) -> None:
    logging.getLogger("autoharness").warning(
        "benchmark runs get only a private TMPDIR, not bubblewrap: %s", problem)


def check() -> Check:
    """The `doctor` line for every runner that starts task processes."""
    problem = bwrap_problem()
    detail = ("bubblewrap: benchmark files read-only, private /tmp, own PID namespace (nothing they start "
              "outlives the daemon)" if not problem else f"a private TMPDIR only ({problem}); {guarantee()[1]}")
    return Check("benchmark runs contained", not problem, detail, fatal=False)


@contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder only this process knows about, gone when the block ends (whatever happens)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
