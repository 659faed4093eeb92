"""BIRD-Interact (a-interact) through the official Google-ADK implementation, BIRD-Interact-ADK.

The user keeps a checkout of BIRD-Interact-ADK (`options.adk_dir`: its `.env`, its dataset with the gold
SQL and test cases, PostgreSQL running in Docker) and a Python environment with its requirements
(`options.python`). `shims/bird_interact_shim.py` serves the three ADK services with the agent under
optimization (`options.agent`, a worktree module with `build_agent(mode)`) in place of the ADK's own, and
runs the ADK's a-interact pipeline on the selected tasks; the reward is each task's `total_reward`
(0.7 for phase 1, 0.3 for the follow-up). Train results (dialogue and tool trajectory) become traces;
val and test ones are never written, and held-out runs are contained (benchmarks/containment.py).
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from benchmarks import containment
from benchmarks.containment import conflict_result
from benchmarks.shims import agent_check, agent_paths, provider_key, resolve_python, run_shim, tail
from benchmarks.starters import STARTERS
from orchestrator.core.config import BenchmarkConfig, parse_options
from orchestrator.core.contracts import BenchmarkRunner, Check, Starter, TaskResult, mean_of_trials
from orchestrator.core.errors import ConfigError
from orchestrator.core.jsonl import parse_json_line
from orchestrator.core.proc import run_process

SHIM = "bird_interact_shim.py"
PYTHON_HINT = ("point it at a Python 3.10+ env with BIRD-Interact-ADK's requirements.txt installed "
               "(docs/benchmarks/bird-interact.md)")
STARTUP_S = 180.0
# The public dataset has neither: the gold SQL and test cases are mailed on request and merged by a script.
def has_gold(row: dict[str, Any]) -> bool:
    return bool(row.get("sol_sql")) and "test_cases" in row


class BirdInteractOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    python: str | None = None                   # the ADK env's interpreter; default <tools home>/bird-interact-venv
    adk_dir: str = "BIRD-Interact-ADK"          # checkout of BIRD-Interact-ADK (its .env is read from there)
    dataset: Literal["lite", "full"] = "lite"
    data: str | None = None                     # default <adk_dir>/bird-interact-<dataset>/bird_interact_data.jsonl
    agent: str = "agent.bird_agent"             # worktree module with build_agent(mode)
    env: dict[str, str] = {}                    # extra environment (keys, SYSTEM_AGENT_MODEL, PG_HOST, ...)


def read_tasks(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"benchmark.options.data: {path} not found (download the dataset: see docs/benchmarks/bird-interact.md)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            row = parse_json_line(line)
            if row is None:
                raise ConfigError(f"benchmark.options.data: {path} line {n} is not a JSON object")
            rows.append(row)
    return rows


def failed_phase(event: dict[str, Any]) -> str:
    """The error text of a task BIRD-Interact scored below 1: which phase failed (the first question, or the
    follow-up after it), and whether the budget of bird-coins ran out; the spend on the next line."""
    if event.get("phase1_passed"):
        if not event.get("has_follow_up", True):
            return "phase 1 passed; the task has no follow-up question, so phase 2's share cannot be earned"
        kind = "phase 2 failed: the follow-up question was not solved"
    else:
        kind = "phase 1 failed: the first question was not solved"
    used, left = event.get("budget_used"), event.get("budget_remaining")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (used, left))
    if numbers and left <= 0:
        kind += " (budget spent)"
    return kind + (f"\nbudget: used {used:g} of {used + left:g} bird-coins" if numbers else "")


def to_task_result(event: dict[str, Any]) -> TaskResult:
    """One task as the shim reported it; a failed one carries the phase that failed as its error text."""
    reward = event.get("reward")
    duration = float(event.get("duration_s") or 0.0)
    error, error_class = str(event.get("error") or ""), str(event.get("error_class") or "")
    if reward is None:
        return TaskResult(None, duration, None, error or "BIRD-Interact gave no total_reward", error_class or "infra")
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not 0.0 <= reward <= 1.0:
        return TaskResult(None, duration, None, f"total_reward out of range: {reward!r}", "bad_output")
    if reward < 1.0 and not error:
        error = failed_phase(event)
    return TaskResult(float(reward), duration, None, error, error_class or ("" if reward >= 1.0 else "failed"))


class BirdInteractRunner(BenchmarkRunner):
    starter = Starter(
        benchmark={"kind": "bird-interact", "trials": 1, "concurrency": 3, "task_timeout_s": 1800, "infra_error": "fail",
                   "options": {"adk_dir": "BIRD-Interact-ADK", "agent": "agent.bird_agent"}},
        editable=["agent/**"],
        files={"agent/__init__.py": None, "agent/bird_agent.py": STARTERS / "bird_agent.py"},
    )

    def __init__(self, config: BenchmarkConfig, config_dir: Path):
        super().__init__(config, config_dir)
        self.options: BirdInteractOptions = parse_options(BirdInteractOptions, config.options, "benchmark.options")

    def adk_dir(self) -> Path:
        path = (self.config_dir / Path(self.options.adk_dir).expanduser()).resolve()
        if not (path / "orchestrator" / "ainteract.py").is_file():
            raise ConfigError(f"benchmark.options.adk_dir: {path} is not a BIRD-Interact-ADK checkout "
                              "(no orchestrator/ainteract.py)")
        return path

    def data_path(self) -> Path:
        if self.options.data:
            return (self.config_dir / Path(self.options.data).expanduser()).resolve()
        return self.adk_dir() / f"bird-interact-{self.options.dataset}" / "bird_interact_data.jsonl"

    def tasks(self) -> list[str]:
        ids = [str(row.get("instance_id")) for row in read_tasks(self.data_path()) if row.get("instance_id")]
        if not ids:
            raise ConfigError(f"benchmark.options.data: no tasks in {self.data_path()}")
        return ids

    def private_paths(self) -> list[Path]:
        """The ADK checkout (its services, the gold SQL and test cases) and the dataset's folder."""
        return [self.adk_dir(), self.data_path().parent]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "DATASET": self.options.dataset, **self.options.env, "PYTHONDONTWRITEBYTECODE": "1",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def run(self, agent_dir: Path, task_ids: list[str], *, traces_dir: Path | None) -> dict[str, TaskResult]:
        if not task_ids:
            return {}
        trials: dict[str, list[TaskResult]] = {t: [] for t in task_ids}
        for _ in range(self.config.trials):
            for task_id, result in self._run_once(agent_dir, task_ids, traces_dir).items():
                trials[task_id].append(result)
        out = {t: mean_of_trials(r) for t, r in trials.items()}
        for task_id, result in out.items():
            self.report(task_id, result)
        return out

    def _run_once(self, agent_dir: Path, task_ids: list[str], traces_dir: Path | None) -> dict[str, TaskResult]:
        got: dict[str, TaskResult] = {}
        fatal: dict[str, Any] = {}

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "fatal":
                fatal.update(event)
            elif event["event"] == "result" and str(event.get("task_id")) in trials_left:
                got[str(event["task_id"])] = to_task_result(event)
                trials_left.discard(str(event["task_id"]))

        trials_left = set(task_ids)
        rounds = math.ceil(len(task_ids) / self.config.concurrency)
        budget = STARTUP_S + rounds * (self.config.task_timeout_s + 5.0)
        request = {"op": "run", "agent_dir": str(agent_dir), "agent": self.options.agent, "data": str(self.data_path()),
                   "task_ids": task_ids, "concurrency": self.config.concurrency,
                   "task_timeout_s": self.config.task_timeout_s,
                   "save_dir": str(traces_dir) if traces_dir is not None else None}
        python = resolve_python(self.options.python, self.config_dir, "bird-interact", PYTHON_HINT)
        if traces_dir is not None:
            traces_dir.mkdir(parents=True, exist_ok=True)
        call = run_shim(python, SHIM, request, env=self._env(), cwd=self.adk_dir(), timeout_s=budget,
                        on_event=on_event, outputs=[traces_dir] if traces_dir else [],
                        read_only=[*self.benchmark_files(), agent_dir, *self.protected])
        res = call.result
        if fatal.get("error_class") == "agent_error":
            missing = TaskResult(0.0, 0.0, None, str(fatal.get("error")), "agent_error")
        elif fatal:
            missing = TaskResult(None, res.duration_s, None, f"bird-interact: {fatal.get('error')}", "infra")
        elif res.timed_out:
            missing = TaskResult(None, res.duration_s, None, f"bird-interact shim killed after {budget:g}s", "infra")
        else:
            missing = TaskResult(None, res.duration_s, None, f"bird-interact shim exited {res.returncode} without a "
                                 f"result: {tail(res.stderr)}", "crash")
        return {t: conflict_result(res.duration_s) if t in call.conflicts else got.get(t, missing) for t in task_ids}

    # -- doctor
    def _dotenv(self) -> dict[str, str]:
        """The ADK checkout's .env (KEY=VALUE lines), which its services load: models, keys, PG_*."""
        try:
            lines = (self.adk_dir() / ".env").read_text().splitlines()
        except (ConfigError, OSError):
            return {}
        pairs = (ln.split("#", 1)[0].strip().partition("=") for ln in lines if "=" in ln and not ln.lstrip().startswith("#"))
        return {k.strip(): v.strip().strip('"').strip("'") for k, _, v in pairs if k.strip()}

    def agent_files(self) -> list[str]:
        """The module of `options.agent` (e.g. agent/bird_agent.py): what the shim imports from the worktree."""
        return agent_paths(self.options.agent, cls="none")

    def check(self) -> list[Check]:
        """Every independent thing a run needs, each on its own line: a missing checkout hides nothing else."""
        return [self._python_check(), *self._checkout_checks(), self._agent_check(), *self._service_checks()]

    def _python_check(self) -> Check:
        try:
            python = resolve_python(self.options.python, self.config_dir, "bird-interact", PYTHON_HINT)
        except ConfigError as exc:
            return Check("bird-interact python", False, str(exc), config=bool(self.options.python))
        probe = run_process([str(python), "-c", "import google.adk, fastapi, uvicorn, httpx, psycopg2, litellm"],
                            timeout_s=120)
        return Check("bird-interact python", probe.ok, str(python) if probe.ok else
                     f"{python} lacks the ADK requirements ({tail(probe.stderr, 300)}); `pip install -r "
                     "requirements.txt` of the ADK checkout into it")

    def _checkout_checks(self) -> list[Check]:
        """The ADK checkout, and the dataset with its gold answers (found in the checkout unless `data` is set)."""
        checks = []
        try:
            checks.append(Check("bird-interact ADK checkout", True, str(self.adk_dir())))
        except ConfigError as exc:
            checks.append(Check("bird-interact ADK checkout", False, str(exc), config=True))
        try:
            rows = read_tasks(self.data_path())
        except ConfigError as exc:
            return checks + [Check("bird-interact data", False, str(exc), config=True)]
        gold = sum(1 for r in rows if has_gold(r))
        checks.append(Check("bird-interact data", bool(rows), f"{len(rows)} tasks in {self.data_path()}"))
        checks.append(Check("bird-interact gold", gold == len(rows) and gold > 0,
                            f"{gold}/{len(rows)} tasks carry sol_sql and test_cases" + (
                                "" if gold == len(rows) and gold else
                                "; request the GT file by email and merge it (docs/benchmarks/bird-interact.md)")))
        return checks

    def _agent_check(self) -> Check:
        return agent_check("bird-interact agent", self.options.agent, cls="none")

    def _service_checks(self) -> list[Check]:
        checks = []
        env = {**self._dotenv(), **os.environ, **self.options.env}
        host, port = env.get("PG_HOST", "127.0.0.1"), env.get("PG_PORT", "5432")
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                checks.append(Check("bird-interact postgresql", True, f"{host}:{port} accepts connections"))
        except (OSError, ValueError) as exc:
            checks.append(Check("bird-interact postgresql", False, f"{host}:{port}: {exc} (docker compose up -d postgresql "
                                "in the ADK checkout)"))
        for role, var in (("agent", "SYSTEM_AGENT_MODEL"), ("user simulator", "USER_SIM_MODEL")):
            model = env.get(var, "")
            key = provider_key(model) if model else None
            if key:
                checks.append(Check(f"bird-interact {role} model", bool(env.get(key)),
                                    f"{model}: {key} {'is set' if env.get(key) else 'is not set'}"))
        return [*checks, containment.check()]
