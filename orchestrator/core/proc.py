"""The one way autoharness runs a subprocess.

argv lists only, a new process group that is killed whole on timeout (SIGTERM, then SIGKILL after a
grace), input on stdin, output capped keeping the tail, the raw stdout optionally tee'd to a file with
secrets redacted (by name, and by value for the values the caller names).

Every child gets the parent-death signal: the kernel kills it if the daemon dies, SIGKILL included. That
reaches the child only; what it starts is bounded by the sandboxes (orchestrator/core/reaper.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import GitError
from orchestrator.core.scrub import SECRET_NAME, redact, secret_values

__all__ = ["SECRET_NAME", "ProcResult", "git", "redact", "run_process", "secret_values", "terminate_all"]

KILL_GRACE_S = 3.0
PR_SET_PDEATHSIG = 1

# Process groups started here and still running, so a cancelled daemon can take them all down at once.
_live: set[subprocess.Popen[str]] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class _Launch:
    """How a child gets its parent-death signal: an argv prefix, or a hook run in the child."""

    prefix: tuple[str, ...] = ()
    hook: Callable[[], None] | None = None

    def argv(self, argv: list[str], env: Mapping[str, str] | None, cwd: Path | None) -> list[str]:
        if self.prefix:
            _check_program(argv[0], env, cwd)
        return [*self.prefix, *argv]


@functools.cache
def _launch() -> _Launch:
    """util-linux's setpriv sets the signal and execs the command, so the spawn stays a vfork (about 3 ms
    from a 100 MB daemon). Without it, a hook runs in the child, which makes every spawn a full fork of the
    daemon's memory (about 16 ms), resolved here: after fork, with threads about, the child must not import."""
    if sys.platform != "linux":
        return _Launch()
    setpriv = shutil.which("setpriv")
    prefix = (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()
    if prefix and subprocess.run([*prefix, setpriv, "--version"], capture_output=True, timeout=30).returncode == 0:
        return _Launch(prefix=prefix)
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return _Launch()
    return _Launch(hook=lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL))


def _check_program(program: str, env: Mapping[str, str] | None, cwd: Path | None) -> None:
    """Raise what Popen raises for a program that cannot run: behind setpriv its failure would be an exit code."""
    here = cwd or Path.cwd()
    folders = [""] if os.sep in program else os.get_exec_path(env)
    candidates = [Path(here, folder or ".", program) for folder in folders]
    found = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    if found is not None:
        _check_format(found)
        return
    code = errno.EACCES if any(c.exists() for c in candidates) else errno.ENOENT
    raise (PermissionError if code == errno.EACCES else FileNotFoundError)(code, os.strerror(code), program)


# What else ends work of ours on a cancel: runs that are not our children (a Ray cluster's task runs).
_terminators: set[Callable[[], None]] = set()


def on_terminate(end: Callable[[], None], *, remove: bool = False) -> None:
    """Have `terminate_all` call `end` too (or no longer, with `remove`)."""
    with _live_lock:
        (_terminators.discard if remove else _terminators.add)(end)


def _check_format(path: Path) -> None:
    """Neither a binary nor a script with `#!`: execve refuses it (ENOEXEC) and Popen raised, but setpriv's
    execvp would hand it to /bin/sh instead."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return  # execute-only: the kernel decides
    if not head.startswith((b"\x7fELF", b"#!")):
        raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), str(path))


def terminate_all() -> None:
    """Kill every process group we started that is still running, and end what the registered terminators
    own (on cancel)."""
    with _live_lock:
        procs, ends = list(_live), list(_terminators)
    for proc in procs:
        _kill_group(proc)
    for end in ends:
        end()


@dataclass
class ProcResult:
    returncode: int | None   # None when killed for the timeout
    stdout: str              # tail, at most `cap` characters
    stderr: str
    duration_s: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class _Tail:
    """Keeps the last `cap` characters of a stream."""

    def __init__(self, cap: int):
        self.cap = cap
        self.parts: deque[str] = deque()
        self.size = 0

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.parts[0]) >= self.cap and len(self.parts) > 1:
            self.size -= len(self.parts.popleft())

    def text(self) -> str:
        return "".join(self.parts)[-self.cap :]


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Pipes:
    """The child's pipes, each served by a thread: stdin fed, stdout kept (its tail), tee'd and handed to
    `on_line` line by line, stderr kept."""

    def __init__(self, proc: subprocess.Popen[str], stdin: str | None, cap: int, tee: Path | None,
                 on_line: Callable[[str], None] | None, secrets: list[str]):
        self.proc, self.stdin, self.on_line, self.secrets = proc, stdin, on_line, secrets
        self.out, self.err = _Tail(cap), _Tail(cap)
        self.tee = tee.open("a", encoding="utf-8") if tee else None
        targets = [self._read_out, self._read_err] + ([self._feed] if stdin is not None else [])
        self.threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in self.threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.add(line)
            if self.tee:
                self.tee.write(redact(line, self.secrets))
                self.tee.flush()
            if self.on_line:
                try:
                    self.on_line(line)
                except Exception:  # a parser bug must not stall the pipe: logged, and the caller still gets the output
                    logging.getLogger("autoharness").exception("on_line failed for %s", self.proc.args)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read(8192), ""):
            self.err.add(chunk)

    def _feed(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(self.stdin or "")
            self.proc.stdin.close()
        except OSError:  # the child closed its stdin (exited, or does not read it): its exit code tells
            return

    def close(self) -> None:
        for t in self.threads:
            t.join(timeout=5.0)
        if self.tee:
            self.tee.close()


def run_process(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout_s: float | None = None,
    cap_chars: int = 200_000,
    tee: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    redact_output: bool = True,
    secrets: Iterable[str] = (),
) -> ProcResult:
    """Run argv to completion or timeout. `env` replaces the environment when given.

    `on_line` sees each stdout line as it arrives (for streaming JSON); `tee` receives the
    redacted stdout lines as they arrive, so a killed run still leaves its transcript. Redacted are the
    values of the environment's secret-named variables and `secrets`, whatever their names (a backend
    passes everything it was handed).
    """
    # Output is redacted for the logs and records it may reach; `git` reads its own data raw (a diff must show
    # the guard the secret it would leak).
    hidden = secret_values(env if env is not None else os.environ, secrets) if redact_output or tee else []
    start = time.monotonic()
    launch = _launch()
    proc = subprocess.Popen(
        launch.argv(argv, env, cwd), cwd=cwd, env=dict(env) if env is not None else None,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", start_new_session=True,
        preexec_fn=launch.hook,
    )
    with _live_lock:
        _live.add(proc)
    pipes = _Pipes(proc, stdin, cap_chars, tee, on_line, hidden)
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        # Orphans of a finished leader would hold the pipes open: they go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        pipes.close()
        with _live_lock:
            _live.discard(proc)
    shown = (lambda text: redact(text, hidden)) if redact_output else (lambda text: text)
    return ProcResult(returncode=None if timed_out else proc.returncode, stdout=shown(pipes.out.text()),
                      stderr=shown(pipes.err.text()), duration_s=time.monotonic() - start, timed_out=timed_out)


GIT_TIMEOUT_S = 300.0


# Every git call of ours runs no hook and no fsmonitor, whatever a repo's config says: a coding agent that
# wrote one into a repository must not get it run by autoharness, outside its sandbox. (Filters and
# attributes are kept out by taking and writing files as raw blobs: see core/gittree.py.)
GIT_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false")


def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout_s: float = GIT_TIMEOUT_S,
        check: bool = True) -> ProcResult:
    """Run `git args...` in `cwd` through run_process (timeout, process bookkeeping). With `check`, a failure
    raises GitError naming the command and git's own last words."""
    res = run_process(["git", *GIT_SAFE, *args], cwd=cwd, env=env, timeout_s=timeout_s, redact_output=False)
    if check and not res.ok:
        _git_failed(args, cwd, env, res.stderr or res.stdout, res.returncode, res.timed_out)
    return res


def git_bytes(*args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: bytes = b"",
              timeout_s: float = GIT_TIMEOUT_S) -> bytes:
    """`git args...` with raw bytes in and out (blobs are not text); a failure raises GitError."""
    launch = _launch()
    try:
        res = subprocess.run(launch.argv(["git", *GIT_SAFE, *args], env, cwd), cwd=cwd,
                             env=dict(env) if env is not None else None, input=stdin, capture_output=True,
                             timeout=timeout_s, start_new_session=True, preexec_fn=launch.hook)
    except subprocess.TimeoutExpired:
        _git_failed(args, cwd, env, "", None, True)
    if res.returncode != 0:
        _git_failed(args, cwd, env, res.stderr.decode("utf-8", "replace"), res.returncode, False)
    return res.stdout


def _git_failed(args: tuple[str, ...], cwd: Path, env: Mapping[str, str] | None, output: str,
                code: int | None, timed_out: bool) -> None:
    why = "timed out" if timed_out else (output.strip() or f"exit {code}")
    raise GitError(redact(f"git {' '.join(args[:3])} failed in {cwd}: {why[-500:]}", secret_values(env)))
