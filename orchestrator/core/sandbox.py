"""An optional filesystem sandbox for the coding agent (bubblewrap), so "it sees one worktree and the
train traces" is enforced, not only asked for.

Inside, the machine looks as usual (tools, interpreters, the network for the model API) except that the
run's records, the benchmark's files, the config folder and the target's own checkout are empty folders.
The candidate worktree and the target's git database stay visible and writable; anything else written in
a hidden folder lands in a throwaway tmpfs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.errors import ConfigError


@dataclass
class Sandbox:
    hide: list[Path]                                  # shown as empty folders
    bind: list[Path] = field(default_factory=list)    # stay visible and writable, even inside a hidden folder
    binary: str = "bwrap"

    def wrap(self, argv: list[str], writable: list[Path] = (), visible: list[Path] = ()) -> list[str]:
        """The argv that runs `argv` in the sandbox.

        `writable` adds the caller's own paths (a CLI's private home); a folder holding anything in
        `visible` (the CLI's own program) is not hidden, nor is `/`.
        """
        binds = [p.resolve() for p in [*self.bind, *writable]]
        keep = [p.resolve() for p in visible]
        args = [self.binary, "--die-with-parent", "--dev-bind", "/", "/"]
        for path in sorted({p.resolve() for p in self.hide}, key=lambda p: len(p.parts)):
            if path.exists() and path != Path("/") and not any(k.is_relative_to(path) for k in keep):
                args += ["--tmpfs", str(path)]
        for path in binds:  # after the tmpfs mounts, so a bound folder inside a hidden one shows again
            if path.exists():
                args += ["--bind", str(path), str(path)]
        return [*args, "--", *argv]


def build(kind: str, hide: list[Path], bind: list[Path]) -> Sandbox | None:
    """The sandbox `backend.sandbox` asks for: None for "none"."""
    if kind == "none":
        return None
    binary = shutil.which("bwrap")
    if binary is None:
        raise ConfigError("backend.sandbox: bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    return Sandbox(hide=hide, bind=bind, binary=binary)
