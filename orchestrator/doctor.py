"""`autoharness doctor`: every check a night would fail on, all of them, before the night."""

from __future__ import annotations

from collections.abc import Callable

from agents.fallback import build_agent
from orchestrator.core import registry, sandbox
from orchestrator.core.config import Config
from orchestrator.core.contracts import Check
from orchestrator.core.errors import AutoharnessError
from orchestrator.core.workspace import Workspace
from orchestrator.gitops import TargetRepo
from orchestrator.report import recorded_noise
from orchestrator.store import Store


def checks(cfg: Config) -> list[Check]:
    found = [Check("config", True, str(cfg.source)), *_collect("target", lambda: _target(cfg))]
    found += _collect("benchmark", lambda: registry.load("benchmark", cfg.benchmark.kind)(
        cfg.benchmark, cfg.config_dir).check())
    found += _collect("backend", lambda: build_agent(cfg.backend, cfg.config_dir).check())
    found += _collect("sandbox", lambda: _sandbox(cfg))
    found += _noise(cfg)
    return found


def _collect(label: str, make: Callable[[], list[Check]]) -> list[Check]:
    """Doctor reports; it does not stop at the first problem."""
    try:
        return make()
    except AutoharnessError as exc:
        return [Check(label, False, str(exc))]


def _target(cfg: Config) -> list[Check]:
    repo = TargetRepo(cfg.target.repo, cfg.target.base, cfg.target.branch)
    return [Check("target base", repo.sha(cfg.target.base) is not None, f"{cfg.target.base} in {cfg.target.repo}")]


def _sandbox(cfg: Config) -> list[Check]:
    """Which sandbox the night's coding agent will run in, and why; "none" passes, but says so."""
    kind, why = sandbox.choose(cfg.backend.sandbox, cfg.backend.sandbox_image)
    return [Check("sandbox", True, f"{kind}: {why}")]


def _noise(cfg: Config) -> list[Check]:
    """The benchmark's noise as the baseline measured it; each warning a non-fatal check ("warn"), so it is seen."""
    ws, runs = Workspace(cfg.workspace), cfg.gate.baseline_runs
    described = None
    if ws.db.exists():
        store = Store(ws.db, readonly=True)  # a daemon may be running
        try:
            described = recorded_noise(store, cfg.gate)
        finally:
            store.close()
    if described is None:
        return [Check("noise", True, f"not measured yet: the baseline's A/A check runs val {runs} times"
                      if runs > 1 else "will not be measured: gate.baseline_runs = 1 runs val once")]
    line, warnings = described
    return [Check("noise", True, line), *(Check("noise", False, w, fatal=False) for w in warnings)]
