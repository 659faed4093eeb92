"""Nothing a task run or a proposal starts outlives the daemon.

run_process gives each child the parent-death signal, which reaches that child only: a shell that runs its
task without `exec`, or a tool that double-forks into a session of its own, leaves processes the kernel
hands to PID 1 when the daemon dies. Process groups, sessions and environment tags cannot find them again
(setsid and `env -i` leave those behind). A PID namespace can: when its first process dies, the kernel kills
every process in it, and none can leave it. So every untrusted command runs in a namespace whose first
process dies with the daemon:

- bubblewrap's (`--unshare-pid --die-with-parent`), in the sandboxes of sandbox.py and the benchmark runs'
  of benchmarks/containment.py, where bubblewrap runs;
- else util-linux's `unshare --pid --fork --kill-child` (as root, or inside a user namespace that maps our
  own uid): `contain`. The command runs under a shell that waits for it, since a namespace's first process
  ignores the SIGTERM of a timeout; its exit code is the command's, 128 + N when signal N ended it;
- else none can be made, and only the command's own process dies with the daemon (`guarantee` says so,
  and `doctor` shows it).

A docker sandbox's container lives in the engine, outside all of these: its runner's watchdog removes it
when the runner dies, and `sweep` removes at restart the containers whose runner is gone.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

# The namespace's first process: waits for the command (a lone command would be exec'd in its place).
WAITER = ("/bin/sh", "-c", '"$@"; exit $?', "sh")
# A /proc of its own: pids read there must be the namespace's (bubblewrap, inside, writes a child's uid_map
# by the pid it knows). Without privileges, a user namespace that maps our own uid too.
OPTIONS = (("--pid", "--mount-proc"), ("--user", "--map-current-user", "--pid", "--mount-proc"))


@lru_cache(maxsize=1)
def namespace_prefix() -> tuple[str, ...]:
    """The argv prefix that runs a command in a PID namespace of its own here, () when none can be made."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    for options in OPTIONS:
        prefix = (unshare, *options, "--fork", "--kill-child", "--", *WAITER)
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            return ()
    return ()


def contain(argv: list[str]) -> list[str]:
    """The argv that runs `argv` so that nothing it starts outlives it or the daemon, where a namespace can
    be made (else `argv` itself)."""
    return [*namespace_prefix(), *argv]


def guarantee() -> tuple[bool, str]:
    """Whether what an unsandboxed command starts dies with the daemon, and how (for doctor)."""
    if namespace_prefix():
        return True, "every process started there dies with the daemon (a PID namespace, by unshare)"
    return False, ("only each command's own process dies with the daemon: what it starts in a session of its "
                   "own can outlive it (install bubblewrap, or util-linux's unshare with user namespaces)")


def sweep(sandbox_kind: str) -> list[str]:
    """At restart: end what a killed daemon's sandbox left behind, and say what was ended. Processes need
    nothing (their namespace died with the daemon); a docker container whose runner is gone is removed."""
    if sandbox_kind != "docker":
        return []
    from orchestrator.core import sandbox_docker  # the docker SDK is imported only when it is used
    return sandbox_docker.remove_stale()
