"""`autoharness run`: one session from now until a stop condition (the scheduled window comes with #4)."""

from __future__ import annotations

from rich.console import Console

from orchestrator.config import Config
from orchestrator.lock import WorkspaceLock
from orchestrator.loop import Orchestrator
from orchestrator.session import run_session


def run_daemon(cfg: Config, console: Console) -> int:
    with WorkspaceLock(cfg.workspace / "run.lock"):
        orch = Orchestrator(cfg)
        try:
            def show(rec):
                console.print(f"iteration {rec.n}: {rec.decision} {rec.stage + ': ' if rec.stage else ''}{rec.reason}",
                              highlight=False)
            reason = run_session(orch, on_iteration=show)
        finally:
            orch.close()
    console.print(f"stopped: {reason}")
    return 0
