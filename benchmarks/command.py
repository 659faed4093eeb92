"""The `command` runner: any benchmark, in any language, that speaks JSON lines.

For each task (and trial) it runs `cmd` with AUTOHARNESS_AGENT_DIR, AUTOHARNESS_TASK_IDS and, for train
only, AUTOHARNESS_TRACES_DIR, and reads `{"task_id": ..., "reward": 0..1 | null, "error": "..."}` lines
from stdout. One process per task keeps the timeout exact and a crash local to its task.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.config import BenchmarkConfig, parse_options
from orchestrator.core.contracts import BenchmarkRunner, Check, Starter, TaskResult, mean_of_trials
from orchestrator.core.errors import ConfigError
from orchestrator.core.jsonl import json_objects, parse_json_line
from orchestrator.core.proc import run_process


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cmd: list[str] = Field(min_length=1)
    tasks: list[str] | None = None          # else: the command lists them when AUTOHARNESS_LIST_TASKS=1
    cwd: Path | None = None
    env: dict[str, str] = {}


def parse_lines(stdout: str) -> dict[str, dict]:
    """The JSON objects on stdout that name a task; other lines (logs, prints) are ignored."""
    return {str(obj["task_id"]): obj for obj in json_objects(stdout) if "task_id" in obj}


class CommandRunner(BenchmarkRunner):
    starter = Starter(
        benchmark={"kind": "command", "options": {"cmd": ["python3", "/path/to/your/eval.py"]}},
        editable=["agent/**"],
    )

    def __init__(self, config: BenchmarkConfig, config_dir: Path):
        super().__init__(config, config_dir)
        self.options: CommandOptions = parse_options(CommandOptions, config.options, "benchmark.options")
        self.cwd = (config_dir / self.options.cwd).resolve() if self.options.cwd else config_dir

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("AUTOHARNESS_TRACES_DIR", "AUTOHARNESS_TASK_IDS", "AUTOHARNESS_AGENT_DIR", "AUTOHARNESS_LIST_TASKS"):
            env.pop(key, None)
        env.update(self.options.env)
        env.update(extra)
        return env

    def tasks(self) -> list[str]:
        if self.options.tasks is not None:
            return list(self.options.tasks)
        res = run_process(self.options.cmd, cwd=self.cwd, env=self._env({"AUTOHARNESS_LIST_TASKS": "1"}),
                          timeout_s=self.config.task_timeout_s)
        if not res.ok:
            raise ConfigError(f"benchmark.options.cmd: listing tasks failed (exit {res.returncode}): "
                              f"{res.stderr.strip().splitlines()[-1:] or ''}")
        # One id a line, bare or as a result-shaped JSON object.
        ids = []
        for line in filter(None, map(str.strip, res.stdout.splitlines())):
            obj = parse_json_line(line)
            ids.append(str(obj["task_id"]) if obj is not None and "task_id" in obj else line)
        if not ids:
            raise ConfigError("benchmark.options: no tasks; give `tasks` or make cmd list them when AUTOHARNESS_LIST_TASKS=1")
        return ids

    def run(self, agent_dir: Path, task_ids: list[str], *, traces_dir: Path | None) -> dict[str, TaskResult]:
        jobs = [(t, k) for t in task_ids for k in range(self.config.trials)]
        trials: dict[str, list[TaskResult]] = {t: [] for t in task_ids}
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            for task_id, result in pool.map(lambda job: (job[0], self._one(agent_dir, job[0], traces_dir)), jobs):
                trials[task_id].append(result)
                if len(trials[task_id]) == self.config.trials:
                    self.report(task_id, mean_of_trials(trials[task_id]))
        return {t: mean_of_trials(r) for t, r in trials.items()}

    def _one(self, agent_dir: Path, task_id: str, traces_dir: Path | None) -> TaskResult:
        extra = {"AUTOHARNESS_AGENT_DIR": str(agent_dir), "AUTOHARNESS_TASK_IDS": task_id}
        if traces_dir is not None:
            extra["AUTOHARNESS_TRACES_DIR"] = str(traces_dir)
        res = run_process(self.options.cmd, cwd=self.cwd, env=self._env(extra), timeout_s=self.config.task_timeout_s,
                          cap_chars=100_000)
        if res.timed_out:
            return TaskResult(0.0, res.duration_s, None, f"timed out after {self.config.task_timeout_s:g}s", "timeout")
        line = parse_lines(res.stdout).get(task_id)
        if line is None:
            tail = (res.stderr.strip() or res.stdout.strip())[-2000:]
            if res.returncode != 0:
                return TaskResult(None, res.duration_s, None, f"exit {res.returncode}: {tail}", "crash")
            return TaskResult(None, res.duration_s, None, f"no result line for the task: {tail}", "bad_output")
        reward = line.get("reward")
        error = str(line.get("error") or "")
        cost = line.get("cost_usd")
        cost = float(cost) if isinstance(cost, int | float) else None
        if reward is None:
            return TaskResult(None, res.duration_s, cost, error or "the benchmark reported an infra error", "infra")
        if not isinstance(reward, int | float) or isinstance(reward, bool) or not 0.0 <= reward <= 1.0:
            return TaskResult(None, res.duration_s, cost, f"reward out of range: {reward!r}", "bad_output")
        return TaskResult(float(reward), res.duration_s, cost, error, "" if reward >= 1.0 else "failed")

    def private_paths(self) -> list[Path]:
        """The folders of the files `cmd` names (the evaluator, its tasks), and its working folder."""
        folders = [self.cwd]
        for arg in self.options.cmd[1:]:
            path = (self.cwd / arg).resolve()
            if path.is_file():
                folders.append(path.parent)
        return folders

    def check(self) -> list[Check]:
        exe = self.options.cmd[0]
        from shutil import which
        found = which(exe) or (Path(exe).is_file() and os.access(exe, os.X_OK))
        checks = [Check("benchmark command", bool(found), f"{exe} {'found' if found else 'not found'}")]
        try:
            n = len(self.tasks())
            checks.append(Check("benchmark tasks", n > 0, f"{n} tasks"))
        except ConfigError as exc:
            checks.append(Check("benchmark tasks", False, str(exc)))
        return checks
