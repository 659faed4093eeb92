"""The crash tests' fault injection, kept out of the product: runs the `autoharness` CLI and SIGKILLs it the
moment a named phase begins.

    python -m tests.kill_at PHASE:N autoharness-args...     e.g.  gate:3 --config x.toml run
"""

from __future__ import annotations

import os
import signal
import sys

from orchestrator import logs
from orchestrator.cli import main


def kill_at(point: str) -> None:
    enter = logs.Phases.enter

    def enter_then_die(self: logs.Phases, name: str, **fields: object) -> object:
        bound = enter(self, name, **fields)  # logged and shown in the heartbeat first, as a real crash would find it
        if f"{name}:{fields.get('iteration')}" == point:
            os.kill(os.getpid(), signal.SIGKILL)
        return bound

    logs.Phases.enter = enter_then_die  # type: ignore[method-assign]


if __name__ == "__main__":
    kill_at(sys.argv[1])
    sys.argv = ["autoharness", *sys.argv[2:]]
    main()
