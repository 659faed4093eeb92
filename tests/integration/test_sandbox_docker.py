"""The docker sandbox against a real engine: the coding agent's commands see the worktree and the mounts
named, nothing else of the host; nothing they start outlives them; a timeout or a killed runner leaves no
container behind. Runs on the skeleton image of .ci/install-docker.sh with the host's /usr mounted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.core.proc import run_process
from orchestrator.core.sandbox_docker import LABEL, Docker
from tests.helpers import DOCKER_TEST_IMAGE, agent_cli, need_docker
from tests.toy import run_blind

TOOLCHAIN = [Path("/usr")]  # the skeleton image has no programs of its own


@pytest.fixture(autouse=True)
def _docker():
    need_docker()


@pytest.fixture
def client():
    import docker
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture
def tree(tmp_path):
    """A worktree beside the folders the agent must not see."""
    folders = {name: tmp_path / name for name in ("worktree", "workspace", "bench", "target", "outside")}
    for folder in folders.values():
        folder.mkdir()
    (folders["bench"] / "answers.json").write_text('{"t1": 42}')
    (folders["workspace"] / "results.tsv").write_text("iteration\tval_score\n")
    (folders["target"] / "README.md").write_text("the user's checkout")
    return folders


def box(tree, **kw) -> Docker:
    return Docker(bind=[tree["worktree"]], image=DOCKER_TEST_IMAGE, mounts=TOOLCHAIN, **kw)


def sh(tree, script: str, *, sandbox: Docker | None = None, **kw):
    argv = (sandbox or box(tree)).wrap(["bash", "-c", script])
    return run_process(argv, cwd=tree["worktree"], timeout_s=kw.pop("timeout_s", 120), **kw)


def ours(client, marker: str) -> list:
    """The containers (running or not) whose command carries `marker`."""
    return [c for c in client.containers.list(all=True, filters={"label": LABEL}) if marker in c.attrs["Args"]]


def sleeping_pids(marker: str) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in stat.read_bytes():
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


def test_only_the_worktree_and_the_mounts_are_visible(tree):
    looks = [tree["bench"] / "answers.json", tree["workspace"] / "results.tsv", tree["target"] / "README.md"]
    res = sh(tree, "; ".join(f"cat {p}" for p in looks) + "; echo mine > mine.txt; ls /")
    assert res.stderr.count("No such file") == len(looks), res.stderr
    assert "42" not in res.stdout and "val_score" not in res.stdout and "checkout" not in res.stdout
    assert (tree["worktree"] / "mine.txt").read_text() == "mine\n"
    assert (tree["worktree"] / "mine.txt").stat().st_uid == os.getuid()  # the user's, not the container's
    assert "work" not in res.stdout.split() and "home" not in res.stdout.split()


def test_writes_outside_the_worktree_do_not_reach_the_host(tree):
    docs = tree["outside"] / "docs"
    docs.mkdir()
    sandbox = box(tree, read_only=[docs])
    script = (f"echo lost > {tree['outside']}/lost.txt; echo lost > {docs}/lost.txt; echo lost > /tmp/lost.txt; "
              "echo kept > kept.txt")
    res = sh(tree, script, sandbox=sandbox)
    assert "Read-only file system" in res.stderr, res
    assert (tree["worktree"] / "kept.txt").exists()
    assert not (tree["outside"] / "lost.txt").exists() and not (docs / "lost.txt").exists()
    # /tmp is the container's own tmpfs, gone with it: the next command starts with an empty one.
    assert "No such file" in sh(tree, "cat /tmp/lost.txt").stderr


def test_exit_code_stdin_and_both_streams_pass_through(tree):
    big = "x" * 300_000 + "\n"
    res = sh(tree, "read -r first; echo got:$first; wc -c; echo oops >&2; exit 7", stdin="hello\n" + big)
    assert res.returncode == 7
    assert res.stdout == f"got:hello\n{len(big)}\n" and res.stderr == "oops\n"
    assert sh(tree, "cat", stdin="").stdout == ""  # an empty stdin is closed, not left open


def test_the_environment_is_passed_with_a_home_that_exists(tree):
    env = {**os.environ, "AUTOHARNESS_PROBE": "seen", "HOME": "/no/such/home"}
    res = sh(tree, 'echo "$AUTOHARNESS_PROBE $HOME $PWD"; touch "$HOME/ok"', env=env)
    assert res.ok, res
    assert res.stdout == f"seen /tmp {tree['worktree']}\n"


def test_no_process_outlives_the_command(tree, client):
    marker = f"300.{uuid.uuid4().int % 10**9}"  # a sleep no one else runs
    res = sh(tree, f"setsid nohup sleep {marker} >/dev/null 2>&1 & echo started")
    assert res.ok and res.stdout == "started\n", res
    time.sleep(0.5)
    assert sleeping_pids(marker) == []
    assert ours(client, "started") == []


def test_a_timeout_kills_and_removes_the_container(tree, client):
    marker = f"timeout-{uuid.uuid4().hex[:8]}"
    argv = box(tree).wrap(["bash", "-c", "touch started; exec sleep 300", marker])
    res = run_process(argv, cwd=tree["worktree"], timeout_s=5)
    assert res.timed_out
    assert (tree["worktree"] / "started").exists()  # it did run
    assert res.duration_s < 30
    assert ours(client, marker) == []


def test_a_killed_runner_leaves_no_container(tree, client):
    """SIGKILL gives the runner no chance: its watchdog removes the container."""
    marker = f"killed-{uuid.uuid4().hex[:8]}"
    argv = box(tree).wrap(["bash", "-c", "touch started; exec sleep 300", marker])
    proc = subprocess.Popen(argv, cwd=tree["worktree"], stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tree["worktree"] / "started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the sandboxed command never started"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while ours(client, marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ours(client, marker) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_stale_container_is_removed_by_the_next_runner(tree, client):
    """A container whose runner is gone (its watchdog too) goes at the next runner's start."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker = f"stale-{uuid.uuid4().hex[:8]}"
    label = f"{socket.gethostname()}/{dead.pid}/0"
    stale = client.containers.create(DOCKER_TEST_IMAGE, ["sleep", "300", marker], labels={LABEL: label},
                                     network_mode="host", mounts=[_usr()])
    stale.start()
    assert sh(tree, "true").ok
    assert ours(client, marker) == []


def _usr():
    from docker.types import Mount
    return Mount("/usr", "/usr", type="bind", read_only=True)


@pytest.mark.parametrize("name, says", [("claude", "Claude Code"), ("codex", "codex-cli")])
def test_a_cli_installed_on_the_host_runs_inside(tree, name, says):
    """The backends name the CLI's program as `visible`: npm's link is followed and its tree mounted."""
    program = agent_cli(name)
    argv = box(tree).wrap([program, "--version"], visible=[Path(program).resolve()])
    res = run_process(argv, cwd=tree["worktree"], timeout_s=120)
    assert res.ok and says in res.stdout, res


def test_a_missing_image_says_how_to_build_one():
    from orchestrator.core.sandbox_docker import problem
    why = problem("autoharness-no-such-image")
    assert "not there" in why and "config/sandbox.Dockerfile" in why


def test_the_loop_runs_the_agent_blind_to_records_benchmark_and_checkout(tmp_path):
    sandbox = (f'sandbox = "docker"\nsandbox_image = "{DOCKER_TEST_IMAGE}"\n'
               f'sandbox_mounts = {json.dumps([str(p) for p in TOOLCHAIN])}')
    # git works in its checkout: the target's objects are mounted read-only for the alternates.
    assert "M agent/skills.py" in run_blind(tmp_path, sandbox)
