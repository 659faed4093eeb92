"""The unit tier's rule: no subprocess. Every way Python starts a process fails loudly here, and a test
that tried anyway (even where the code under test caught the failure, or in another thread) fails at
teardown. A test that needs a process, a git repo or a benchmark belongs in tests/integration."""

from __future__ import annotations

import _posixsubprocess
import os
import platform
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# The one process the stdlib itself starts: `uname -p`, once per interpreter, the first time anything asks
# for the platform (the anthropic and openai SDKs do, for their request headers). Cached from here on.
platform.platform()


class SubprocessInUnitTest(BaseException):
    """Not an Exception, so no `except Exception` in the code under test swallows it."""


# Each entry point to a new process: subprocess.Popen (subprocess.run, check_output, asyncio's subprocesses),
# the fork_exec both Popen and multiprocessing end in, and os's own fork/exec/spawn/system families.
_OS_ENTRY_POINTS = [name for name in (
    "fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen",
    "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
    "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe",
) if hasattr(os, name)]


@pytest.fixture(autouse=True)
def no_subprocess(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[None]:
    attempts: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            shown = args[1] if what == "subprocess.Popen" and len(args) > 1 else kwargs.get("args", args[:1])
            attempts.append(f"{what}({shown!r})"[:300])
            raise SubprocessInUnitTest(f"{request.node.nodeid} started a process through {what}: unit tests run "
                                       f"in-process only (move the test to tests/integration)")
        return blocked

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen"))
    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("_posixsubprocess.fork_exec"))
    for name in _OS_ENTRY_POINTS:
        monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    yield
    assert not attempts, f"a unit test tried to start a process: {attempts}"
