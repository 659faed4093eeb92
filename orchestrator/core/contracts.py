"""The plugin contracts: a coding agent (one request in, one proposal out) and a benchmark runner (task ids in,
one reward per task out), the records they exchange, and the `Check` lines they give `doctor`."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, ClassVar, Protocol, runtime_checkable

from orchestrator.core.cancel import Cancellation
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.sandbox import Sandbox


class ProposalStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    OVER_BUDGET = "over_budget"


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens


@dataclass
class ProposalRequest:
    worktree: Path
    prompt: str
    editable: list[str]
    timeout_s: float
    max_cost_usd: float
    env: dict[str, str] = field(default_factory=dict)
    iteration: int = 0                      # 1-based; the replay backend picks its patch by it
    transcript_path: Path | None = None     # where the backend tees its raw stream
    sandbox: Sandbox | None = None          # when set, every process the backend starts runs inside it
    cancel: Cancellation | None = None      # a backend checks it between turns: a forced stop ends the proposal


@dataclass
class Proposal:
    status: ProposalStatus
    summary: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None           # unknown is None, never 0
    transcript: Path | None = None
    duration_s: float = 0.0
    error: str = ""                         # set when status is not ok
    error_class: str = ""                   # rate_limit, overloaded, connection, timeout, auth, ...
    backend: str = ""
    model: str = ""


@dataclass
class Check:
    """One line of `autoharness doctor`."""

    name: str
    ok: bool
    detail: str
    fatal: bool = True  # a failing fatal check means the night would fail
    config: bool = False  # the failure is in the config or the input (a ConfigError): doctor exits 2


@runtime_checkable
class CodingAgent(Protocol):
    """Built from a `BackendConfig` (kind, model, timeout_s, max_cost_usd, options, env)."""

    def propose(self, request: ProposalRequest) -> Proposal: ...

    def check(self) -> list[Check]: ...


# Error classes of a result the benchmark did not judge (the evaluator may have counted it as reward 0).
UNSCORED = frozenset({"infra", "crash", "bad_output", "bad_reward", "missing", "dropped"})


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

    @property
    def unscorable(self) -> bool:
        """The benchmark could not judge the task: no reward, or the run crashed or printed no valid result."""
        return self.reward is None or self.error_class in UNSCORED


class BenchmarkRunner(ABC):
    """Built with the `[benchmark]` table and the folder relative paths in options are resolved against."""

    starter: ClassVar[Starter | None] = None   # what `autoharness init --benchmark KIND` writes
    # True when `run` starts one process (or more) per task and so costs the same run one task a call: the task
    # pool then hands it one task a job and checks the early stops as each result lands. False for a runner
    # whose one call starts a process for the whole batch (it gets batches, as many tasks as it can run at once).
    per_task: ClassVar[bool] = False

    def __init__(self, config: BenchmarkConfig, config_dir: Path):
        self.config = config
        self.config_dir = config_dir
        # Set by the orchestrator to drive progress bars; runners call `self.report` as tasks finish.
        self.on_result: Callable[[str, TaskResult], None] | None = None
        # Set by the orchestrator: its own folders (the records), read-only to a held-out run like the benchmark.
        self.protected: list[Path] = []

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
        that outlives this call: a runner that starts task processes runs them contained
        (benchmarks/containment.py), with `benchmark_files()` and `protected` read-only.
        """

    def default_split(self) -> dict[str, list[str]] | None:
        """Official split lists, if the benchmark has them (train/val/test keys); else None."""
        return None

    def private_paths(self) -> list[Path]:
        """Folders of the benchmark (answers, data) to hide from the coding agent when sandboxed."""
        return []

    def benchmark_files(self) -> list[Path]:
        """The benchmark's own folders (its code, tasks, answers): read-only in held-out runs, and checked
        unchanged around every run. Never a folder that holds the orchestrator's records."""
        return self.private_paths()

    def check(self) -> list[Check]:
        """Lines for `autoharness doctor`."""
        return []

    def agent_files(self) -> list[str]:
        """Target-relative paths of the agent code this benchmark loads: `doctor` checks they are committed on
        `target.base`, since the night scores base's commit, not the working tree. By default the starter
        agent's files, when the kind has a starter."""
        return list(self.starter.files) if self.starter is not None else []


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


@dataclass(frozen=True)
class Starter:
    """What `autoharness init --benchmark KIND` writes: the [benchmark] table, the editable globs, and the
    starter agent's files (target-relative path -> source file, None for an empty file)."""

    benchmark: dict[str, Any]
    editable: list[str]
    files: dict[str, Path | None] = field(default_factory=dict)

    def file_texts(self) -> dict[str, str]:
        return {rel: src.read_text() if src else "" for rel, src in self.files.items()}
