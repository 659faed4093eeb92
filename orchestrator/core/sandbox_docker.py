"""The docker sandbox: each wrapped command runs in a fresh container, through the docker SDK, for machines
without user namespaces (macOS with Docker Desktop, locked-down hosts).

`Docker.wrap` returns the argv of a small runner (this module's `__main__`), so callers keep running it
through `run_process` like any other command. The runner creates a container from the image with only the
mounts named (each at its own path), the caller's cwd and environment, the host's uid:gid (files written in
the worktree stay the user's), every capability dropped, no-new-privileges, a pids limit and a private
tmpfs /tmp; it feeds its stdin to the container, streams the container's stdout and stderr as its own, and
exits with its exit code. The container has its own PID namespace: when it ends, every process started in
it is gone, `setsid` or not. SIGTERM or SIGINT (run_process's timeout) kills and removes the container; a
watchdog in its own session removes it when the runner dies by SIGKILL (the daemon's death kills the runner),
and every runner start and every daemon start (`remove_stale`) removes the labelled containers of runners
that are gone.

Network: the container shares the host's network (`network_mode="host"`). The model API is often on
localhost (a proxy, Ollama, the tests' scripted server), and an engine started with `--bridge=none` has no
other network to give. The sandbox contains files and processes, not network access, like the bwrap one.

Nothing else of the host is visible: not the records, the benchmark, the config or the target's checkout.
The image brings the tools (config/sandbox.Dockerfile builds one with the CLIs); `mounts` can show host
folders read-only instead (a toolchain, or the host's /usr for a skeleton image).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from orchestrator.core.sandbox import Sandbox, by_real_path, program_folder

LABEL = "autoharness.sandbox.runner"   # "<host>/<pid>/<start time>" of the runner that owns the container
PIDS_LIMIT = 1024                      # threads count too: a node CLI starts a dozen
TMPFS = {"/tmp": "rw,nosuid,nodev,size=1g"}
PING_TIMEOUT_S = 5
BUILD_HINT = "docker build -t {image} -f config/sandbox.Dockerfile ."


def problem(image: str) -> str:
    """Why the docker sandbox cannot run here ("" when the engine answers and the image is local)."""
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError:
        return "the docker SDK is not installed (pip install docker)"
    try:
        client = docker.from_env(timeout=PING_TIMEOUT_S)
    except DockerException as exc:
        return f"no docker engine answers ({_first_line(exc)}); start dockerd or Docker Desktop"
    try:
        client.ping()
        client.images.get(image)
    except ImageNotFound:
        return f"the docker image {image!r} is not there; build it with: {BUILD_HINT.format(image=image)}"
    except DockerException as exc:
        return f"no docker engine answers ({_first_line(exc)}); start dockerd or Docker Desktop"
    finally:
        client.close()
    return ""


@dataclass
class Docker(Sandbox):
    kind: ClassVar[str] = "docker"
    bind: list[Path] = field(default_factory=list)       # writable, at the same path
    read_only: list[Path] = field(default_factory=list)  # read-only, at the same path
    image: str = "autoharness-sandbox"
    mounts: list[Path] = field(default_factory=list)     # more host folders, read-only (a toolchain)

    def wrap(self, argv: list[str], writable: Sequence[Path] = (), visible: Sequence[Path] = ()) -> list[str]:
        spec = {"image": self.image, "mounts": self._mounts(writable, visible),
                "docker_env": {k: v for k, v in os.environ.items() if k.startswith("DOCKER_")}}
        # -P: the runner runs outside the container, in the worktree; a `docker.py` there must not load.
        return [sys.executable, "-P", "-m", "orchestrator.core.sandbox_docker", json.dumps(spec), "--",
                *by_real_path(argv, visible)]

    def _mounts(self, writable: Sequence[Path], visible: Sequence[Path]) -> dict[str, bool]:
        """Host path -> read-only, for the paths that exist; a writable mount wins over a read-only one."""
        ro = [*self.read_only, *self.mounts, *(program_folder(p) for p in visible)]
        table = {str(p.resolve()): True for p in ro}
        table.update({str(p.resolve()): False for p in [*self.bind, *writable]})
        return {path: read_only for path, read_only in sorted(table.items()) if Path(path).exists()}


# -- the runner (outside the container, one per wrapped command)

class _Stopped(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot), so a reused pid is not taken for its runner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _identity(pid: int) -> str:
    return f"{socket.gethostname()}/{pid}/{_start_time(pid)}"


def _runner_alive(label: str) -> bool:
    try:
        host, pid, start = label.rsplit("/", 2)
    except ValueError:
        return True  # not a label we wrote
    if host != socket.gethostname():
        return True  # another machine's runner on a shared engine: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return _start_time(int(pid)) == start


def _remove(containers) -> None:
    """Force-remove (kill first), ignoring containers already gone or being removed by another runner."""
    from docker.errors import APIError
    for container in containers:
        try:
            container.remove(force=True)
        except APIError:
            pass


def _labelled(client, value: str = "") -> list:
    """Our containers, running or not: all of them, or those of the runner `value` names."""
    return client.containers.list(all=True, filters={"label": f"{LABEL}={value}" if value else LABEL})


def _reap_stale(client) -> list:
    """Remove containers whose runner is dead (killed by SIGKILL, its watchdog too); return them."""
    stale = [c for c in _labelled(client) if not _runner_alive(c.labels.get(LABEL, ""))]
    _remove(stale)
    return stale


def remove_stale() -> list[str]:
    """At a daemon's restart: remove the containers whose runner is gone, and say which (none when no
    engine answers)."""
    try:
        import docker
        from docker.errors import DockerException
        from requests.exceptions import RequestException
    except ImportError:
        return []
    try:
        client = docker.from_env(timeout=PING_TIMEOUT_S)
        try:
            stale = _reap_stale(client)
        finally:
            client.close()
    except (DockerException, RequestException):
        return []
    return [f"removed docker container {c.short_id} (its runner is gone)" for c in stale]


def _watchdog(spec: dict, me: str) -> int:
    """Fork a process in its own session (a process-group kill does not reach it) that removes this
    runner's containers when the runner dies without saying it is done. Returns the pipe to write "done" to."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(r)
        return w
    os.close(w)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        said = os.read(r, 4)
        if said != b"done":
            import docker
            _remove(_labelled(docker.from_env(environment=spec["docker_env"]), me))
    finally:
        os._exit(0)


def _environment(image_env: list[str], mounts: dict[str, bool]) -> dict[str, str]:
    """The runner's environment, with the image's PATH entries after the host's, and HOME and TMPDIR
    moved to /tmp when the folders they name are not mounted."""
    env = dict(os.environ)
    image = dict(item.split("=", 1) for item in image_env if "=" in item)
    host_path = env.get("PATH", "").split(os.pathsep)
    extra = [p for p in image.get("PATH", "").split(os.pathsep) if p and p not in host_path]
    env["PATH"] = os.pathsep.join([p for p in host_path if p] + extra)

    def shown(path: str) -> bool:
        return any(Path(path).is_relative_to(m) for m in [*mounts, "/tmp"])

    if not shown(env.get("HOME", "/")):
        env["HOME"] = "/tmp"
    if "TMPDIR" in env and not shown(env["TMPDIR"]):
        del env["TMPDIR"]
    return env


def _create(client, spec: dict, argv: list[str], me: str) -> str:
    from docker.types import Mount
    api, mounts = client.api, spec["mounts"]
    host = api.create_host_config(
        mounts=[Mount(path, path, type="bind", read_only=ro) for path, ro in mounts.items()],
        network_mode="host", cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=PIDS_LIMIT,
        tmpfs=TMPFS)  # no --init: its bind mount fails on an image whose /sbin leads into a read-only /usr
    image_env = api.inspect_image(spec["image"])["Config"].get("Env") or []
    # detach=False with stdin_open: the SDK sets StdinOnce, so closing our end of stdin closes the command's.
    made = api.create_container(spec["image"], argv, detach=False, stdin_open=True, tty=False,
                                working_dir=os.getcwd(), environment=_environment(image_env, mounts),
                                user=f"{os.getuid()}:{os.getgid()}", labels={LABEL: me}, host_config=host)
    return made["Id"]


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # our reader went away; keep draining the container so it is not blocked
        pass


def _feed_stdin(raw) -> None:
    try:
        while chunk := os.read(0, 65536):
            raw.sendall(chunk)
        raw.shutdown(socket.SHUT_WR)
    except OSError:  # the command exited, or does not read its stdin
        pass


def _pump_output(sock) -> None:
    from docker.utils.socket import frames_iter
    try:
        for stream, data in frames_iter(sock, tty=False):
            _write(2 if stream == 2 else 1, data)
    except OSError:
        pass


def _run(client, spec: dict, argv: list[str], me: str) -> int:
    cid = _create(client, spec, argv, me)
    try:
        sock = client.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(None)  # a quiet command is not a dead one
        pump = threading.Thread(target=_pump_output, args=(sock,), daemon=True)
        pump.start()
        client.api.start(cid)
        threading.Thread(target=_feed_stdin, args=(raw,), daemon=True).start()
        code = client.api.wait(cid, timeout=None)["StatusCode"]
        pump.join(timeout=10)
        return code
    finally:
        _remove(_labelled(client, me))


def _stop(signum: int, _frame) -> None:
    raise _Stopped(signum)


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m orchestrator.core.sandbox_docker SPEC -- COMMAND...", file=sys.stderr)
        return 2
    spec, argv, me = json.loads(args[0]), args[2:], _identity(os.getpid())
    done = _watchdog(spec, me)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    import docker
    client = docker.from_env(environment=spec["docker_env"])
    try:
        _reap_stale(client)
        return _run(client, spec, argv, me)
    except _Stopped as stop:
        _remove(_labelled(client, me))
        return 128 + stop.signum
    except docker.errors.DockerException as exc:
        print(f"docker sandbox: {_first_line(exc)}", file=sys.stderr)
        return 125
    finally:
        os.write(done, b"done")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
