"""Sandboxes for the processes autoharness does not trust: the coding agent's, and a candidate's code during
held-out benchmark runs.

One interface, `Sandbox.wrap(argv) -> argv`, so every caller keeps running its command through `run_process`
(timeouts, output caps, kills) whatever the kind:

- `Bwrap` (bubblewrap): its own PID and IPC namespaces with a fresh `/proc`, so nothing inside sees the
  processes outside (their `/proc/<pid>/root` and `/proc/<pid>/environ`), and every process started
  inside dies with the namespace's first process, `setsid` or not; a private `/tmp`; the host read-only
  (or writable, for a benchmark that writes its own outputs), hidden folders shown empty, and only the
  folders the caller binds writable.
- `Docker` (orchestrator/core/sandbox_docker.py): a container through the docker SDK, for machines
  without user namespaces.
- `Unconfined` ("none"): the host as it is, but what the command starts still dies with it and with the
  daemon where a PID namespace can be made (orchestrator/core/reaper.py).

`backend.sandbox = "auto"` takes bubblewrap when it runs here, else docker when its engine answers and the
image is there, else refuses: running the coding agent unconfined is an explicit choice ("none").
"""

from __future__ import annotations

import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from orchestrator.core.errors import ConfigError
from orchestrator.core.reaper import contain, guarantee

KINDS = ("auto", "bwrap", "docker", "none")


class Sandbox(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def wrap(self, argv: list[str], writable: Sequence[Path] = (), visible: Sequence[Path] = ()) -> list[str]:
        """The argv that runs `argv` inside. `writable` adds the caller's own folders (a CLI's private
        home); `visible` names files that must stay readable (the CLI's own program)."""


@dataclass
class Bwrap(Sandbox):
    kind: ClassVar[str] = "bwrap"
    hide: list[Path] = field(default_factory=list)       # shown as empty folders
    bind: list[Path] = field(default_factory=list)       # writable, even inside a hidden folder
    read_only: list[Path] = field(default_factory=list)  # readable, even inside a hidden folder
    host_writable: bool = False                          # the rest of the host: read-only unless set
    binary: str = "bwrap"

    def wrap(self, argv: list[str], writable: Sequence[Path] = (), visible: Sequence[Path] = ()) -> list[str]:
        keep = [p.resolve() for p in visible]
        args = [self.binary, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session",
                "--bind" if self.host_writable else "--ro-bind", "/", "/",
                "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for path in sorted({p.resolve() for p in self.hide}, key=lambda p: len(p.parts)):
            if path.exists() and path != Path("/") and not any(k.is_relative_to(path) for k in keep):
                args += ["--tmpfs", str(path)]
        # After the tmpfs mounts, so a bound folder inside a hidden one shows again; parents before children.
        # A visible program's own folder is bound read-only too: it may live under the private /tmp.
        shown = [*self.read_only, *(k if k.is_dir() else program_folder(k) for k in keep)]
        mounts = {p.resolve(): "--bind" for p in [*self.bind, *writable]}
        mounts.update({p.resolve(): "--ro-bind" for p in shown if p.resolve() not in mounts})
        for path in sorted(mounts, key=lambda p: len(p.parts)):
            if path.exists():
                args += [mounts[path], str(path), str(path)]
        return [*args, "--", *by_real_path(argv, visible)]


class Unconfined(Sandbox):
    kind: ClassVar[str] = "none"

    def wrap(self, argv: list[str], writable: Sequence[Path] = (), visible: Sequence[Path] = ()) -> list[str]:
        return contain(argv)


def program_folder(program: Path) -> Path:
    """The folder a program needs: its own, or the whole npm tree it was installed in (codex's launcher
    loads its platform binary from a sibling package)."""
    real = program.resolve()
    if "node_modules" in real.parts:
        return Path(*real.parts[: real.parts.index("node_modules") + 1])
    return real.parent


def by_real_path(argv: list[str], visible: Sequence[Path]) -> list[str]:
    """Call a program by its real path when that is what `visible` shows: npm's `.bin/claude` is a link
    whose own folder may not be there inside."""
    found = (argv[0] if os.sep in argv[0] else shutil.which(argv[0])) if argv else None
    if found and Path(found).resolve() in {p.resolve() for p in visible}:
        return [str(Path(found).resolve()), *argv[1:]]
    return argv


@lru_cache(maxsize=1)
def bwrap_problem() -> str:
    """Why bubblewrap cannot run its namespaces here ("" when it can)."""
    binary = shutil.which("bwrap")
    if binary is None:
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        res = subprocess.run(Bwrap(binary=binary).wrap(["true"]), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot start: {exc}"
    if res.returncode != 0:
        return f"bwrap cannot create its namespaces here: {(res.stderr.strip() or '?').splitlines()[-1][:200]}"
    return ""


def choose(kind: str, image: str) -> tuple[str, str]:
    """The sandbox kind a run will use and why, or ConfigError when the one asked for cannot run here."""
    from orchestrator.core import sandbox_docker  # the docker SDK is imported only when asked for

    if kind == "none":
        return "none", (f"chosen explicitly (backend.sandbox = \"none\"): the coding agent runs unconfined; "
                        f"{guarantee()[1]}")
    if kind in ("auto", "bwrap"):
        problem = bwrap_problem()
        if not problem:
            return "bwrap", "bubblewrap: own PID, IPC and mount namespaces, host read-only"
        if kind == "bwrap":
            raise ConfigError(f"backend.sandbox: {problem}")
    problem = sandbox_docker.problem(image)
    if not problem:
        return "docker", f"docker container from image {image!r}"
    if kind == "docker":
        raise ConfigError(f"backend.sandbox: {problem}")
    raise ConfigError(f"backend.sandbox = \"auto\": no sandbox can run here ({bwrap_problem()}; {problem}); "
                      "install bubblewrap, or start docker with the image, or set backend.sandbox = \"none\"")


def build(kind: str, hide: list[Path], bind: list[Path], read_only: list[Path] = (), *, image: str = "",
          mounts: list[Path] = ()) -> Sandbox:
    """The sandbox of a kind `choose` resolved ("bwrap", "docker" or "none")."""
    if kind == "none":
        return Unconfined()
    if kind == "bwrap":
        return Bwrap(hide=list(hide), bind=list(bind), read_only=list(read_only), binary=shutil.which("bwrap") or "bwrap")
    from orchestrator.core.sandbox_docker import Docker
    return Docker(bind=list(bind), read_only=list(read_only), image=image, mounts=list(mounts))
