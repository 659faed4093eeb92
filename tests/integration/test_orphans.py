"""What the daemon's children start does not outlive them or the daemon (orchestrator/core/reaper.py), and
the parent-death signal reaches every child without a hook run in the forked child (core/proc.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.core.proc import run_process, terminate_all
from orchestrator.core.reaper import contain, namespace_prefix
from tests.helpers import ORPHANS, REPO

WAIT_S = 10.0  # SIGKILL lands when the process next runs: on a loaded machine, not at once



@pytest.fixture
def marker():
    """A unique marker; whatever still carries it at the end is killed, so a failure leaves nothing behind."""
    mark = f"autoharness-orphan-{uuid.uuid4().hex}"
    yield mark
    for pid in marked(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def orphans(tmp_path) -> Path:
    path = tmp_path / "orphans.py"
    path.write_text(ORPHANS)
    return path


def need_namespace() -> None:
    if not namespace_prefix():
        pytest.skip("no PID namespace can be made here (no unshare, or neither root nor user namespaces)")


def marked(marker: str) -> list[int]:
    """The live processes whose command line carries the marker (a zombie's is empty)."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if marker.encode() in path.read_bytes():
                found.append(int(path.parent.name))
    return found


def gone(marker: str) -> bool:
    end = time.monotonic() + WAIT_S
    while marked(marker) and time.monotonic() < end:
        time.sleep(0.05)
    return not marked(marker)


def wait_for(marker: str, count: int) -> None:
    end = time.monotonic() + 60
    while len(marked(marker)) < count:
        assert time.monotonic() < end, f"{count} processes with the marker never started"
        time.sleep(0.05)


def test_a_contained_command_takes_what_it_started_with_it(orphans, marker):
    need_namespace()
    assert run_process(contain([sys.executable, str(orphans), marker])).ok
    assert gone(marker)
    # The same command uncontained leaves its grandchild behind (which the fixture then kills).
    assert run_process([sys.executable, str(orphans), marker]).ok
    assert len(marked(marker)) == 1


def kill_parent_of(argv: list[str], marker: str, count: int) -> bool:
    """Run `argv` through run_process in a parent process, SIGKILL the parent once `count` processes carry the
    marker, and say whether they are all gone within WAIT_S."""
    code = f"import sys\nfrom orchestrator.core.proc import run_process\nrun_process({argv!r})\n"
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for(marker, count)
        parent.kill()
        parent.wait()
        return gone(marker)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_the_direct_child_dies_with_its_parent(marker):
    assert kill_parent_of([sys.executable, "-c", "import time; time.sleep(300)", marker], marker, 1)


def test_a_contained_grandchild_in_its_own_session_dies_with_the_parent(orphans, marker):
    need_namespace()
    assert kill_parent_of(contain([sys.executable, str(orphans), marker, "stay"]), marker, 2)


def test_a_contained_command_gets_the_sigterm_of_a_stop(tmp_path):
    """The namespace's first process ignores SIGTERM; the command under it, which leaves SIGTERM to its
    default, must not: a stop ends it by that signal, not by the SIGKILL after the grace."""
    need_namespace()
    ready = tmp_path / "ready"
    script = f"import time\nopen({str(ready)!r}, 'w').close()\ntime.sleep(300)\n"
    results = []
    runner = threading.Thread(target=lambda: results.append(run_process(contain([sys.executable, "-c", script]))))
    runner.start()
    end = time.monotonic() + 60
    while not ready.exists():
        assert time.monotonic() < end and runner.is_alive(), "the command never started"
        time.sleep(0.05)
    terminate_all()
    runner.join(timeout=60)
    assert results[0].returncode == 128 + signal.SIGTERM


def test_a_contained_command_keeps_its_stdin_output_and_exit_code():
    need_namespace()
    res = run_process(contain(["sh", "-c", "read x; echo got $x; echo err >&2; exit 3"]), stdin="hello\n")
    assert (res.returncode, res.stdout, res.stderr) == (3, "got hello\n", "err\n")


def test_a_program_that_cannot_run_raises_as_popen_does(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_process([f"no-such-program-{uuid.uuid4().hex[:8]}"])
    with pytest.raises(FileNotFoundError):
        run_process([str(tmp_path / "missing")])
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(PermissionError):
        run_process([str(script)])
    script.chmod(0o755)
    assert run_process(["./not-executable"], cwd=tmp_path).stdout == "hi\n"


def doctor_line(tmp_path: Path, tools: tuple[str, ...]) -> str:
    """The benchmark-containment line of doctor in a process whose PATH holds only `tools` (no bwrap)."""
    bindir = tmp_path / "-".join(tools or ("none",))
    bindir.mkdir()
    for tool in tools:
        (bindir / tool).symlink_to(shutil.which(tool))
    code = "from benchmarks.containment import check\nprint(check().detail)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO), "PATH": str(bindir)})
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_doctor_says_which_guarantee_holds_without_bubblewrap(tmp_path):
    need_namespace()
    bare = doctor_line(tmp_path, ())
    assert "bwrap is not installed" in bare and "only each command's own process dies with the daemon" in bare
    assert "every process started there dies with the daemon" in doctor_line(tmp_path, ("unshare",))
