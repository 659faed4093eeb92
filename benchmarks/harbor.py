"""Terminal-Bench 2.0 (and any harbor dataset) through `harbor run`, in harbor's own Python environment.

One `harbor run` per call: the agent under optimization as an import path (`options.agent`, importable
from the worktree, which goes on PYTHONPATH), the selected task names, `--n-concurrent`, `--n-attempts`
for trials, the model and the environment type (docker locally; daytona, modal, e2b, ... to scale out).
The job folder lives in a private temporary folder; each trial's `result.json` (harbor's TrialResult)
gives the verifier's reward, the agent's cost and any exception. Train trial folders are copied to the
traces folder; the job folder is deleted before `run` returns, whatever the split.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from benchmarks.containment import private_dir
from benchmarks.shims import agent_check, agent_paths, default_venv, provider_key, tail
from benchmarks.starters import STARTERS
from orchestrator.core.config import BenchmarkConfig, parse_options
from orchestrator.core.contracts import BenchmarkRunner, Check, Starter, TaskResult, mean_of_trials
from orchestrator.core.errors import ConfigError
from orchestrator.core.proc import run_process
from orchestrator.core.words import count

TESTED_VERSION = "0.24.0"
STARTUP_S = 600.0            # dataset download and image builds before the first trial runs
JOB = "job"
TRACE_PARTS = ("result.json", "exception.txt", "trial.log", "agent", "verifier")
HELP_ENV = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}   # rich must not wrap or colour flag names
_FLAG = re.compile(r"--[a-z][a-z0-9-]*")

# Exception types that are the agent's own doing: scored, not retried as infrastructure.
TIMEOUT_TYPES = {"AgentTimeoutError"}
AGENT_FAULT_TYPES = {"NonZeroAgentExitCodeError"}
# The credentials harbor's own start-up check (its environments' preflight) accepts for each remote environment
# type, read from its environment: any one of the ways, each the variables that must all be set, or a file
# ("~/..." under the HOME harbor gets) that stands for them.
ENV_CREDENTIALS: dict[str, list[tuple[str, ...]]] = {
    "daytona": [("DAYTONA_API_KEY",), ("DAYTONA_JWT_TOKEN", "DAYTONA_ORGANIZATION_ID")],
    "e2b": [("E2B_API_KEY",)],
    "modal": [("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"), ("~/.modal.toml",)],
    "runloop": [("RUNLOOP_API_KEY",)],
}


class HarborOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    harbor: str | None = None               # the `harbor` executable; default: `autoharness install harbor`'s, then PATH
    dataset: str = "terminal-bench@2.0"     # registry dataset (needs `tasks`), unless `path` is given
    path: str | None = None                 # a downloaded dataset: one folder per task
    tasks: list[str] | None = None          # task names; default: the folders under `path`
    agent: str = "agent.harbor_agent:Agent"  # module:Class, importable from the worktree root
    model: str = ""
    environment: str = "docker"             # harbor's --env: docker, daytona, modal, e2b, ...
    agent_kwargs: dict[str, str] = {}       # --agent-kwarg key=value
    extra_args: list[str] = []              # more `harbor run` flags, checked against its --help
    env: dict[str, str] = {}                # extra environment for harbor (keys, base URLs)


def glob_escape(name: str) -> str:
    """harbor matches --include-task-name with fnmatch: a literal name must escape its wildcards."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _seconds(start: Any, end: Any) -> float:
    try:
        return max(0.0, (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds())
    except (TypeError, ValueError):
        return 0.0


def _reward(verifier: Any) -> float | None | str:
    """The verifier's reward, None if it gave none, or an error text if it gave something unreadable."""
    if not isinstance(verifier, dict) or not verifier.get("rewards"):
        return None
    rewards = verifier["rewards"]
    if not isinstance(rewards, dict):
        return f"verifier rewards is not a mapping: {rewards!r}"
    value = rewards.get("reward", next(iter(rewards.values())) if len(rewards) == 1 else None)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        return f"verifier rewards {rewards!r} hold no reward in [0, 1]"
    return float(value)


def trial_result(data: Any, agent_module_file: str) -> tuple[str, TaskResult]:
    """(task name, outcome) of one harbor TrialResult; raises ValueError when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("task_name"), str):
        raise ValueError("not a harbor TrialResult (no task_name)")
    agent = data.get("agent_result") if isinstance(data.get("agent_result"), dict) else {}
    cost = agent.get("cost_usd")
    cost = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
    duration = _seconds(data.get("started_at"), data.get("finished_at"))
    reward = _reward(data.get("verifier_result"))
    exc = data.get("exception_info") if isinstance(data.get("exception_info"), dict) else None
    if isinstance(reward, str):
        return data["task_name"], TaskResult(None, duration, cost, reward, "bad_output")
    if exc is None:
        if reward is None:
            return data["task_name"], TaskResult(None, duration, cost, "harbor recorded no verifier reward", "infra")
        return data["task_name"], TaskResult(reward, duration, cost, "", "" if reward >= 1.0 else "failed")
    kind = str(exc.get("exception_type") or "Exception")
    text = f"{kind}: {exc.get('exception_message', '')}".strip()
    if kind in TIMEOUT_TYPES:
        return data["task_name"], TaskResult(0.0, duration, cost, text, "timeout")
    if kind in AGENT_FAULT_TYPES or (agent_module_file and agent_module_file in str(exc.get("exception_traceback"))):
        return data["task_name"], TaskResult(reward or 0.0, duration, cost, text, "agent_error")
    return data["task_name"], TaskResult(None, duration, cost, text, "infra")


MAX_REPORT_BYTES = 2_000_000
MAX_NAMED_TESTS = 5
_PYTEST_SUMMARY = re.compile(r"^(?:FAILED|ERROR) (\S+)(?: - (.*))?$", re.M)


def _read_report(path: Path) -> str | None:
    """A verifier file as text; None if absent, a symlink, or too large to be a report."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_REPORT_BYTES:
        return None
    return path.read_text(errors="replace")


def _ctrf_failures(text: str | None) -> tuple[list[tuple[str, str]], int] | None:
    """(failing test, why) and the number of tests, from a CTRF report (pytest --ctrf, as Terminal-Bench writes)."""
    try:
        tests = json.loads(text)["results"]["tests"] if text else None
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(tests, list):
        return None
    failed = []
    for t in (t for t in tests if isinstance(t, dict) and t.get("status") not in ("passed", "skipped", "pending")):
        raised = [ln.strip()[1:].strip() for ln in str(t.get("trace") or "").splitlines() if ln.startswith("E ")]
        failed.append((str(t.get("name")), raised[0] if raised else str(t.get("message") or t.get("status"))))
    return failed, len(tests)


def _stdout_failures(text: str | None) -> tuple[list[tuple[str, str]], int | None] | None:
    """(failing test, why) from pytest's short summary (`-rA`) in the verifier's stdout."""
    found = [(m[1], (m[2] or "").strip()) for m in _PYTEST_SUMMARY.finditer(text or "")]
    return (found, None) if found else None


def verifier_failures(verifier_dir: Path, reward: float) -> str:
    """The error text of a trial the verifier failed: first line the failing tests, then why each failed."""
    report = (_ctrf_failures(_read_report(verifier_dir / "ctrf.json"))
              or _stdout_failures(_read_report(verifier_dir / "test-stdout.txt")))
    if not report or not report[0]:
        return f"verifier gave reward {reward:g} and recorded no failing test (no ctrf.json or pytest summary)"
    failed, total = report
    names = [name.split("::", 1)[-1] for name, _ in failed]
    shown = ", ".join(names[:MAX_NAMED_TESTS]) + (f" and {len(names) - MAX_NAMED_TESTS} more"
                                                  if len(names) > MAX_NAMED_TESTS else "")
    tally = f"{len(failed)} of {total}" if total else str(len(failed))
    first = f"verifier: {tally} test{'' if (total or len(failed)) == 1 else 's'} failed: {shown}"
    return "\n".join([first, *(f"{name}: {why}" for name, (_, why) in zip(names, failed, strict=True) if why)])


def read_job(job_dir: Path, task_ids: list[str], agent_module_file: str) -> tuple[dict[str, list[TaskResult]], dict[str, Path]]:
    """Every trial in a job folder, by task; and each trial's folder (for traces)."""
    found: dict[str, list[TaskResult]] = {t: [] for t in task_ids}
    folders: dict[str, Path] = {}
    if not job_dir.is_dir():
        return found, folders
    for trial_dir in sorted(p for p in job_dir.iterdir() if p.is_dir()):
        path = trial_dir / "result.json"
        if not path.is_file():
            continue   # a trial harbor never finished: its task counts as missing
        try:
            task, result = trial_result(json.loads(path.read_text()), agent_module_file)
            if result.error_class == "failed" and not result.error and result.reward is not None:
                result = replace(result, error=verifier_failures(trial_dir / "verifier", result.reward))
        except (ValueError, json.JSONDecodeError) as exc:
            task = _task_of_folder(trial_dir.name, task_ids)
            if task is None:
                continue
            result = TaskResult(None, 0.0, None, f"{path.name} of {trial_dir.name} is malformed: {exc}", "bad_output")
        if task in found:
            found[task].append(result)
            folders[f"{task}/{trial_dir.name}"] = trial_dir
    return found, folders


def _task_of_folder(name: str, task_ids: list[str]) -> str | None:
    """harbor names a trial folder `<task name, 32 chars>__<random>`; map it back when unambiguous."""
    prefix = name.rsplit("__", 1)[0]
    matches = [t for t in task_ids if t.split("/")[-1][:32].rstrip("_-") == prefix]
    return matches[0] if len(matches) == 1 else None


class HarborRunner(BenchmarkRunner):
    starter = Starter(
        benchmark={"kind": "harbor", "trials": 1, "concurrency": 4, "task_timeout_s": 3600, "infra_error": "fail",
                   "options": {"path": "data/terminal-bench", "agent": "agent.harbor_agent:Agent",
                               "model": "anthropic/claude-sonnet-4-20250514", "environment": "docker"}},
        editable=["agent/**"],
        files={"agent/__init__.py": None, "agent/harbor_agent.py": STARTERS / "harbor_agent.py",
               "agent/harbor_prompt.txt": STARTERS / "harbor_prompt.txt"},
    )

    def __init__(self, config: BenchmarkConfig, config_dir: Path):
        super().__init__(config, config_dir)
        self.options: HarborOptions = parse_options(HarborOptions, config.options, "benchmark.options")

    # -- the executable and what it understands
    def harbor(self) -> Path:
        if self.options.harbor:
            path = Path(self.options.harbor).expanduser()
            path = Path(os.path.abspath(path if path.is_absolute() else self.config_dir / path))
            if not path.is_file():
                raise ConfigError(f"benchmark.options.harbor: {path} not found")
            return path
        default = default_venv("harbor") / "bin" / "harbor"
        if default.is_file():
            return default
        found = shutil.which("harbor")
        if found is None:
            raise ConfigError(f"benchmark.options.harbor: not set, no {default} and no `harbor` on PATH; "
                              "run `autoharness install harbor`, or `pip install harbor` into a Python 3.12 env")
        return Path(found)

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.options.env, **(extra or {})}

    @cached_property
    def version(self) -> str:
        res = run_process([str(self.harbor()), "--version"], env=self._env(HELP_ENV), timeout_s=60)
        return res.stdout.strip().split()[-1] if res.ok and res.stdout.strip() else "unknown"

    @cached_property
    def known_flags(self) -> set[str]:
        res = run_process([str(self.harbor()), "run", "--help"], env=self._env(HELP_ENV), timeout_s=60)
        if not res.ok:
            raise ConfigError(f"benchmark.options.harbor: `harbor run --help` failed (exit {res.returncode}): "
                              f"{tail(res.stderr or res.stdout, 300)}")
        return set(_FLAG.findall(res.stdout))

    def check_flags(self, argv: list[str]) -> None:
        for token in argv:
            flag = token.split("=", 1)[0]
            if _FLAG.fullmatch(flag) and flag not in self.known_flags:
                raise ConfigError(f"benchmark.options: harbor {self.version} does not understand {flag} "
                                  "(see `harbor run --help`)")

    # -- tasks
    def _dataset_path(self) -> Path | None:
        return (self.config_dir / Path(self.options.path).expanduser()).resolve() if self.options.path else None

    def tasks(self) -> list[str]:
        if self.options.tasks:
            return list(self.options.tasks)
        path = self._dataset_path()
        if path is None:
            raise ConfigError("benchmark.options: give `tasks` (task names of the dataset) or `path` (a dataset "
                              "downloaded with `harbor dataset download terminal-bench@2.0 -o DIR`)")
        if not path.is_dir():
            raise ConfigError(f"benchmark.options.path: {path} is not a folder")
        names = sorted(p.name for p in path.iterdir() if (p / "task.toml").is_file())
        if not names:
            raise ConfigError(f"benchmark.options.path: no task folders (with task.toml) in {path}")
        return names

    # -- running
    def argv(self, task_ids: list[str], jobs_dir: Path) -> list[str]:
        o = self.options
        path = self._dataset_path()
        argv = [str(self.harbor()), "run", *(["--path", str(path)] if path else ["--dataset", o.dataset]),
                "--agent", o.agent, "--env", o.environment, "--n-concurrent", str(self.config.concurrency),
                "--n-attempts", str(self.config.trials), "--jobs-dir", str(jobs_dir), "--job-name", JOB,
                "--yes", "--quiet"]
        if o.model:
            argv += ["--model", o.model]
        for key, value in o.agent_kwargs.items():
            argv += ["--agent-kwarg", f"{key}={value}"]
        for task_id in task_ids:
            argv += ["--include-task-name", glob_escape(task_id)]
        return argv + list(o.extra_args)

    def _agent_module_file(self) -> str:
        """How the agent's module file shows in a traceback (e.g. `agent/harbor_agent.py`); "" for a built-in."""
        return next(iter(self.agent_files()), "")

    def run(self, agent_dir: Path, task_ids: list[str], *, traces_dir: Path | None) -> dict[str, TaskResult]:
        if not task_ids:
            return {}
        rounds = math.ceil(len(task_ids) * self.config.trials / self.config.concurrency)
        budget = STARTUP_S + rounds * self.config.task_timeout_s
        with private_dir("autoharness-harbor-") as scratch:
            argv = self.argv(task_ids, scratch / "jobs")
            self.check_flags(argv)
            pythonpath = os.pathsep.join(p for p in (str(agent_dir), os.environ.get("PYTHONPATH", "")) if p)
            res = run_process(argv, cwd=scratch, env=self._env({"PYTHONPATH": pythonpath}), timeout_s=budget,
                              cap_chars=50_000)
            found, folders = read_job(scratch / "jobs" / JOB, task_ids, self._agent_module_file())
            if traces_dir is not None:
                copy_traces(folders, traces_dir)
        if res.timed_out:
            missing = TaskResult(0.0, res.duration_s, None, f"harbor run did not finish within {budget:g}s", "timeout")
        elif res.returncode != 0:
            missing = TaskResult(None, res.duration_s, None,
                                 f"harbor run exited {res.returncode}: {tail(res.stderr or res.stdout)}", "crash")
        else:
            missing = TaskResult(None, res.duration_s, None, "harbor wrote no result for the task", "bad_output")
        out = {}
        for task_id in task_ids:
            got = found[task_id][: self.config.trials]
            out[task_id] = mean_of_trials(got + [missing] * (self.config.trials - len(got)))
            self.report(task_id, out[task_id])
        return out

    # -- doctor
    def agent_files(self) -> list[str]:
        """The module of `options.agent` when it is an import path; none for one of harbor's built-in agents."""
        if self._builtin_agent():
            return []
        return agent_paths(self.options.agent, cls="required")

    def check(self) -> list[Check]:
        """Every independent thing a run needs, each on its own line: a missing harbor hides nothing else."""
        checks = self._harbor_checks() + [self._tasks_check(), self._agent_check(), *self._environment_checks()]
        key = provider_key(self.options.model) if self.options.model else None
        if key:
            have = bool(self._env().get(key))
            checks.append(Check("harbor model", have, f"{self.options.model}: {key} is set" if have else
                                f"{self.options.model}: {key} is not set (export it, or set it in benchmark.options.env)"))
        return checks

    def _harbor_checks(self) -> list[Check]:
        """The executable, then what only it can tell: its version and the flags it understands."""
        try:
            harbor = self.harbor()
        except ConfigError as exc:
            return [Check("harbor", False, str(exc), config=bool(self.options.harbor))]
        checks = [Check("harbor", True, str(harbor)),
                  Check("harbor version", self.version == TESTED_VERSION,
                        f"harbor {self.version}" + ("" if self.version == TESTED_VERSION else f" (tested with {TESTED_VERSION})"),
                        fatal=False)]
        try:
            self.check_flags(self.argv(["t"], Path("jobs")))
            checks.append(Check("harbor flags", True, "every flag autoharness passes is in `harbor run --help`"))
        except ConfigError as exc:
            checks.append(Check("harbor flags", False, str(exc), config=True))
        return checks

    def _tasks_check(self) -> Check:
        try:
            n = len(self.tasks())
            return Check("harbor tasks", True, count(n, 'task'))
        except ConfigError as exc:
            return Check("harbor tasks", False, str(exc), config=True)

    def _builtin_agent(self) -> bool:
        """A plain name (`terminus-2`, `oracle`) is one of harbor's own agents; a dotted one is an import path."""
        return not any(c in self.options.agent for c in ".:")

    def _agent_check(self) -> Check:
        if self._builtin_agent():
            return Check("harbor agent", True, f"{self.options.agent} (one of harbor's own agents)")
        return agent_check("harbor agent", self.options.agent, cls="required")

    def _environment_checks(self) -> list[Check]:
        kind = self.options.environment
        if kind == "docker":
            docker = shutil.which("docker")
            if docker is None:
                return [Check("docker", False, "docker not found on PATH (harbor's docker environment needs it)")]
            engine = run_process([docker, "info", "--format", "{{.ServerVersion}}"], timeout_s=30)
            compose = run_process([docker, "compose", "version"], timeout_s=30)
            return [Check("docker engine", engine.ok, f"server {engine.stdout.strip()}" if engine.ok
                          else f"not reachable: {tail(engine.stderr, 200)}"),
                    Check("docker compose", compose.ok, compose.stdout.strip() if compose.ok
                          else "the compose v2 plugin is missing (harbor's docker environment runs `docker compose`)")]
        check = credentials_check(kind, self._env())
        return [check] if check else []


def credentials_check(kind: str, env: dict[str, str]) -> Check | None:
    """Whether harbor will find the credentials of environment `kind`, and what to set when it will not."""
    ways = ENV_CREDENTIALS.get(kind)
    if not ways:
        return None
    home = Path(env.get("HOME") or Path.home())

    def there(name: str) -> bool:
        return (home / name[2:]).is_file() if name.startswith("~/") else bool(env.get(name))

    met = next((way for way in ways if all(map(there, way))), None)
    if met is not None:
        return Check(f"{kind} credentials", True, _said(met, True))
    it = "it" if len(ways) == 1 and len(ways[0]) == 1 else "them"
    need = "one of these" if len(ways) > 1 else it
    return Check(f"{kind} credentials", False, f"{', and '.join(_said(way, False) for way in ways)}: harbor --env {kind} "
                 f"needs {need} (export {it}, or set {it} in benchmark.options.env)")


def _said(way: tuple[str, ...], ok: bool) -> str:
    """`E2B_API_KEY is set`, `A and B are not set`, `~/.modal.toml is there`, `there is no ~/.modal.toml`."""
    if way[0].startswith("~/"):
        return f"{way[0]} is there" if ok else f"there is no {way[0]}"
    return f"{' and '.join(way)} {'is' if len(way) == 1 else 'are'}{'' if ok else ' not'} set"


def copy_traces(folders: dict[str, Path], traces_dir: Path) -> None:
    """Train trials: the parts of each trial folder worth reading, under `<task>/<trial>/`."""
    for rel, src in folders.items():
        dest = traces_dir / rel.replace("/", "_", rel.count("/") - 1)
        dest.mkdir(parents=True, exist_ok=True)
        for part in TRACE_PARTS:
            item = src / part
            if item.is_symlink():
                continue
            if item.is_dir():
                shutil.copytree(item, dest / part, symlinks=True, dirs_exist_ok=True)
            elif item.is_file():
                shutil.copyfile(item, dest / part)
