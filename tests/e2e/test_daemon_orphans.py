"""Nothing a task run or a proposal starts outlives a SIGKILLed daemon: not a task a shell wrapper started
without `exec`, nor a grandchild that double-forked into its own session with an empty environment. Checked
with bubblewrap and without it (a PATH that lacks it), for the benchmark's processes and the coding agent's."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.core.sandbox_docker import LABEL
from tests.e2e.test_daemon import start
from tests.helpers import DOCKER_TEST_IMAGE, ORPHANS, need_bwrap, need_docker
from tests.toy import SPLIT, STAND_IN, TASKS, Toy, cli, make_toy

pytestmark = pytest.mark.slow


WAIT_S = 10.0  # how long the kernel may take to end them
KEY = {"ANTHROPIC_API_KEY": "sk-orphan-test-0123456789"}  # the claude-code backend wants one; nothing is asked
# The docker sandbox's test image is a skeleton that shows the host's /usr (.ci/install-docker.sh).
DOCKER = f'sandbox_image = "{DOCKER_TEST_IMAGE}"\nsandbox_mounts = ["/usr"]\n'


def marked(marker: str) -> dict[int, str]:
    """The live processes that carry the marker, by pid: their command lines (a zombie's is empty)."""
    found = {}
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = path.read_bytes()
        except OSError:  # gone meanwhile
            continue
        if marker.encode() in line:
            found[int(path.parent.name)] = line.replace(b"\0", b" ").decode(errors="replace")
    return found


def wait_until(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def kill_and_watch(daemon: subprocess.Popen[str], marker: str) -> dict[int, str]:
    """Wait for the task and its detached grandchild, SIGKILL the daemon, and return what is still alive
    once they are gone or WAIT_S has passed."""
    try:
        wait_until(lambda: any("-detached" in c for c in marked(marker).values()) and len(marked(marker)) >= 2, 120,
                   f"the marked processes to start (daemon exit {daemon.poll()})")
        daemon.kill()
        daemon.communicate(timeout=30)
        end = time.monotonic() + WAIT_S
        while marked(marker) and time.monotonic() < end:
            time.sleep(0.1)
        return marked(marker)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        for pid in marked(marker):  # a failed run must not leave them to the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def path_without_bwrap(tmp_path: Path) -> dict[str, str]:
    """A PATH with what the daemon and the benchmark use, but no bwrap: a machine where it cannot run."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("git", "sh", "setpriv", "unshare"):
        (bindir / tool).symlink_to(shutil.which(tool))
    return {"PATH": str(bindir)}


def wrapper_toy(tmp_path: Path, marker: str, sandbox: str) -> Toy:
    """The toy, whose benchmark command is a shell that runs the task without exec."""
    toy = make_toy(tmp_path / "toy", TASKS, SPLIT, backend=f'kind = "replay"\nsandbox = "{sandbox}"\n'
                                                  '[backend.options]\npatches = "patches"')
    (toy.bench / "orphans.py").write_text(STAND_IN + ORPHANS)
    # The system's interpreter: a sandboxed run shows the installation of the program it starts (sh's), and the
    # test's own may live under /tmp, which is private inside.
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    cmd = ["sh", "-c", f"{python} bench/orphans.py {marker} wait; exit $?"]
    text = toy.config.read_text()
    old = f'cmd = [{json.dumps(sys.executable)}, "bench/eval.py"]'
    assert old in text
    toy.config.write_text(text.replace(old, f"cmd = {json.dumps(cmd)}"))
    return toy


@pytest.mark.parametrize("bwrap", [True, False], ids=["bwrap", "no-bwrap"])
def test_a_task_started_by_a_shell_wrapper_dies_with_the_daemon(tmp_path, bwrap):
    if bwrap:
        need_bwrap()
    marker = f"autoharness-orphan-{uuid.uuid4().hex}"
    toy = wrapper_toy(tmp_path, marker, "bwrap" if bwrap else "none")
    env = {} if bwrap else path_without_bwrap(tmp_path)
    assert kill_and_watch(start(toy, env=env), marker) == {}


FAKE_CLI = """#!/bin/sh
# A coding-agent CLI whose tool leaves a detached grandchild behind, then thinks for a long time.
{python} {orphans} {marker} wait
"""


def agent_toy(tmp_path: Path, marker: str, sandbox: str, more: str = "") -> Toy:
    """The toy after its baseline, whose backend is the claude-code one running a stand-in CLI."""
    toy = make_toy(tmp_path / "toy", TASKS, SPLIT)
    cli(toy, "baseline")
    orphans = tmp_path / "cli" / "orphans.py"
    orphans.parent.mkdir()
    orphans.write_text(ORPHANS)
    fake = tmp_path / "cli" / "claude"
    # The agent's sandbox hides the home folder, where this interpreter may live; the system's is shown.
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    fake.write_text(FAKE_CLI.format(python=python, orphans=orphans, marker=marker))
    fake.chmod(0o755)
    backend = (f'kind = "claude-code"\nmodel = "claude-sonnet-4-5"\nsandbox = "{sandbox}"\n{more}'
               f'[backend.options]\nbinary = "{fake}"\nbase_url = "http://127.0.0.1:9"')
    text = toy.config.read_text()
    old = 'kind = "replay"\n[backend.options]\npatches = "patches"'
    assert old in text
    toy.config.write_text(text.replace(old, backend))
    return toy


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_a_proposal_grandchild_dies_with_the_daemon(tmp_path, sandbox):
    if sandbox == "bwrap":
        need_bwrap()
    marker = f"autoharness-orphan-{uuid.uuid4().hex}"
    toy = agent_toy(tmp_path, marker, sandbox)
    assert kill_and_watch(start(toy, env=KEY), marker) == {}


def containers(client, marker: str) -> list:
    """Our sandbox's containers (running or not) whose command carries the marker."""
    found = client.containers.list(all=True, filters={"label": LABEL})
    return [c for c in found if marker in " ".join([c.attrs["Path"], *c.attrs["Args"]])]


def test_a_docker_proposal_leaves_no_container_when_the_daemon_is_killed(tmp_path):
    need_docker()
    import docker
    client = docker.from_env()
    marker = f"autoharness-orphan-{uuid.uuid4().hex}"
    toy = agent_toy(tmp_path, marker, "docker", DOCKER)
    daemon = start(toy, env=KEY)
    try:
        wait_until(lambda: marked(marker), 120, f"the CLI to start in its container (daemon exit {daemon.poll()})")
        assert len(containers(client, str(tmp_path / "cli"))) == 1
        daemon.kill()
        daemon.communicate(timeout=30)
        wait_until(lambda: not containers(client, str(tmp_path / "cli")), 30, "the container to be removed")
        assert marked(marker) == {}
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        for container in containers(client, str(tmp_path / "cli")):
            container.remove(force=True)
        client.close()


def test_a_container_whose_runner_is_gone_is_removed_at_restart(tmp_path):
    """Its watchdog killed too (or the machine restarted under a running engine): the next start removes it,
    before any proposal starts a runner of its own."""
    need_docker()
    import docker
    from docker.types import Mount
    client = docker.from_env()
    toy = make_toy(tmp_path / "toy", TASKS, SPLIT, backend=f'kind = "replay"\nsandbox = "docker"\n{DOCKER}'
                                                           '[backend.options]\npatches = "patches"')
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker = f"stale-{uuid.uuid4().hex[:8]}"
    stale = client.containers.create(DOCKER_TEST_IMAGE, ["sleep", "300", marker], network_mode="host",
                                     labels={LABEL: f"{socket.gethostname()}/{dead.pid}/0"},
                                     mounts=[Mount("/usr", "/usr", type="bind", read_only=True)])
    try:
        stale.start()
        cli(toy, "baseline")
        assert containers(client, marker) == []
    finally:
        for container in containers(client, marker):
            container.remove(force=True)
        client.close()
