"""What one run holds while it works: the config, the workspace and its store, the target repo, the benchmark
(behind the evaluator and its cache), the coding agent, the frozen splits, the phase tracer and the
cancellation the pipeline checks at its safe points. Built by the run driver; read by the pipeline."""

from __future__ import annotations

import copy
import hashlib
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from agents.fallback import build_agent
from orchestrator.core import registry, sandbox
from orchestrator.core.cancel import Cancellation
from orchestrator.core.config import Config, resolve_path
from orchestrator.core.contracts import BenchmarkRunner, CodingAgent
from orchestrator.core.errors import BudgetExceeded
from orchestrator.core.gittree import ObjectStore
from orchestrator.core.scrub import Scrubber
from orchestrator.core.workspace import Workspace
from orchestrator.evaluate import Evaluator, Progress, code_hash
from orchestrator.flights import Flights
from orchestrator.gitops import TargetRepo
from orchestrator.logs import Phases
from orchestrator.pool import TaskPool, build_executor
from orchestrator.splits import Splits, load_or_freeze, make_splits
from orchestrator.store import Store


@dataclass
class RunContext:
    cfg: Config
    phases: Phases
    on_progress: Progress | None = None
    cancel: Cancellation = field(default_factory=Cancellation)

    def __post_init__(self) -> None:
        self.ws = Workspace(self.cfg.workspace).ensure()
        self.store = Store(self.ws.db)
        self.repo = TargetRepo(self.cfg.target.repo, self.cfg.target.base, self.cfg.target.branch)
        self.repo.check_ref_locks()
        self.runner: BenchmarkRunner = registry.load("benchmark", self.cfg.benchmark.kind)(
            self.cfg.benchmark, self.cfg.config_dir)
        _ = self.agent  # built now, so a bad backend table is one line before any work, not after the baseline
        self.flights = Flights(self.cfg.loop.parallel)
        # One pool of `concurrency` slots for every run of every candidate in flight.
        self.pool = TaskPool(self.cfg.benchmark.concurrency, build_executor(self.cfg.benchmark, self.runner))
        self.evaluator = Evaluator(self.runner, self.store, self.ws.traces_train, self.cfg.benchmark,
                                   self.on_progress, self.cancel, self.pool)
        # Worktrees live outside the workspace and the target: one folder per workspace.
        key = hashlib.sha256(str(self.ws.root).encode()).hexdigest()[:12]
        self.worktree_root = Path(tempfile.gettempdir()) / "autoharness-worktrees" / key

    @cached_property
    def agent(self) -> CodingAgent:
        return build_agent(self.cfg.backend, self.cfg.config_dir)

    @cached_property
    def splits(self) -> Splits:
        wanted = make_splits(self.cfg.benchmark.split, self.runner.tasks(), self.runner.default_split())
        return load_or_freeze(self.ws.splits, wanted)

    @cached_property
    def scrubber(self) -> Scrubber:
        """What every text a backend returns passes before it is written: once per run, since what the backend
        is handed comes from the config and the held-out ids from the frozen splits."""
        return Scrubber.build(self.splits.held_out(), self.cfg.backend)

    def step(self, name: str, n: int, **fields: object) -> None:
        """Enter a phase of the pipeline: a safe point, where a requested cancel takes effect."""
        self.cancel.check()
        self.phases.enter(name, iteration=n, **fields)

    def for_worker(self) -> RunContext:
        """The same run for another thread of work (a candidate in flight): everything shared but the phase
        tracer, which follows one thread."""
        _ = self.splits, self.scrubber  # built once, here, and shared
        worker = copy.copy(self)
        worker.phases = self.phases.fork()
        return worker

    def hash_of(self, store: ObjectStore, treeish: str) -> str:
        """The cache key of a commit or a candidate's tree."""
        entries = [(e.path, e.sha) for e in store.entries(treeish)]
        return code_hash(entries, self.cfg.target.editable, self.cfg.benchmark)

    def budget_left(self) -> float:
        spend = self.store.spend_usd()
        if spend >= self.cfg.loop.budget_usd:
            raise BudgetExceeded(f"spent ${spend:.2f} of the ${self.cfg.loop.budget_usd:.2f} budget")
        return self.cfg.loop.budget_usd - spend

    @cached_property
    def sandbox_kind(self) -> str:
        """The sandbox this run's coding agent gets ("none" only when chosen explicitly); ConfigError when
        the one asked for cannot run here."""
        return sandbox.choose(self.cfg.backend.sandbox, self.cfg.backend.sandbox_image)[0]

    def sandbox(self, worktree: Path) -> sandbox.Sandbox | None:
        """Show the coding agent its checkout (writable) and the target's objects (read-only: its history);
        hide the records, the config folder, the target's checkout, the benchmark and the user's home."""
        cfg = self.cfg
        hide = [self.ws.root, cfg.config_dir, cfg.target.repo, self.repo.common_dir, Path.home(),
                *self.runner.private_paths(), *(resolve_path(cfg, p) for p in cfg.backend.sandbox_hide)]
        return sandbox.build(self.sandbox_kind, hide, [worktree], [self.repo.objects], image=cfg.backend.sandbox_image,
                             mounts=[resolve_path(cfg, p) for p in cfg.backend.sandbox_mounts])

    def close(self) -> None:
        self.pool.close()
        self.store.close()
        for folder in (self.worktree_root, self.worktree_root.parent):
            try:
                folder.rmdir()  # only when empty: another workspace's worktrees may live beside ours
            except OSError:
                pass
