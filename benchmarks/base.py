"""The benchmark interface: task ids in, one reward per task out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from agents.base import Check
from orchestrator.config import BenchmarkConfig


@dataclass
class TaskResult:
    """One task's outcome. `reward` None means an infrastructure error (see `error`).

    A timeout is reward 0.0 with error_class "timeout": a failure, never dropped.
    """

    reward: float | None
    duration_s: float = 0.0
    cost_usd: float | None = None
    error: str = ""
    error_class: str = ""     # "", "timeout", "infra", "failed", "crash", ...

    @property
    def infra_error(self) -> bool:
        return self.reward is None


class BenchmarkRunner(ABC):
    """Built with the `[benchmark]` table and the folder relative paths in options are resolved against."""

    def __init__(self, config: BenchmarkConfig, config_dir: Path):
        self.config = config
        self.config_dir = config_dir
        # Set by the orchestrator to drive progress bars; runners call `self.report` as tasks finish.
        self.on_result: Callable[[str, TaskResult], None] | None = None

    def report(self, task_id: str, result: TaskResult) -> None:
        if self.on_result is not None:
            self.on_result(task_id, result)

    @abstractmethod
    def tasks(self) -> list[str]:
        """Every task id the benchmark has."""

    @abstractmethod
    def run(self, agent_dir: Path, task_ids: list[str], *, traces_dir: Path | None) -> dict[str, TaskResult]:
        """Run each task `config.trials` times on the agent in `agent_dir`; reward = mean over trials.

        `traces_dir` is given for train tasks only; when it is None nothing may be written anywhere
        that outlives this call.
        """

    def default_split(self) -> dict[str, list[str]] | None:
        """Official split lists, if the benchmark has them (train/val/test keys); else None."""
        return None

    def private_paths(self) -> list[Path]:
        """Folders of the benchmark (answers, data) to hide from the coding agent when sandboxed."""
        return []

    def check(self) -> list[Check]:
        """Lines for `autoharness doctor`."""
        return []


def mean_of_trials(trials: list[TaskResult]) -> TaskResult:
    """Combine trials: infra errors are left out; all of them infra errors makes an infra error."""
    scored = [t for t in trials if t.reward is not None]
    duration = sum(t.duration_s for t in trials)
    costs = [t.cost_usd for t in trials]
    cost = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    if not scored:
        last = trials[-1]
        return TaskResult(None, duration, cost, last.error, last.error_class or "infra")
    worst = next((t for t in scored if t.error_class), scored[0])
    return TaskResult(fmean(t.reward for t in scored), duration, cost, worst.error, worst.error_class)
