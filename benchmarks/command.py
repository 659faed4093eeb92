"""The `command` runner: any benchmark, in any language, that speaks JSON lines.

For each task (and trial) it runs `cmd` with AUTOHARNESS_AGENT_DIR, AUTOHARNESS_TASK_IDS and, for train
only, AUTOHARNESS_TRACES_DIR, and reads `{"task_id": ..., "reward": 0..1 | null, "error": "..."}` lines
from stdout. One process per task keeps the timeout exact and a crash local to its task.

The agent's code runs in that process and can print too, so (benchmarks/containment.py):
- a task reported twice with different results is `bad_output`, never last-wins;
- with `token = true`, each process gets a fresh token as the first line of its stdin (and
  AUTOHARNESS_RESULT_TOKEN=stdin in its environment); the benchmark reads it before it loads any agent
  code and puts it in every result line as `"token": ...`; a line without it is ignored;
- val and test runs are contained: the folders of the files `cmd` names (the benchmark's files) and the
  agent read-only, a private temporary folder, bubblewrap where it runs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from benchmarks import containment
from benchmarks.containment import TOKEN_ENV, Reports, conflict_result, new_token, task_space
from orchestrator.core.config import BenchmarkConfig, parse_options
from orchestrator.core.contracts import BenchmarkRunner, Check, Starter, TaskResult, mean_of_trials
from orchestrator.core.errors import ConfigError
from orchestrator.core.jsonl import parse_json_line
from orchestrator.core.proc import run_process


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cmd: list[str] = Field(min_length=1)
    tasks: list[str] | None = None          # else: the command lists them when AUTOHARNESS_LIST_TASKS=1
    cwd: Path | None = None
    env: dict[str, str] = {}
    token: bool = False                     # hand each process a token on stdin; result lines must carry it


def read_line(reports: Reports, task_id: str, line: str) -> None:
    """Keep a stdout line that is the task's result; other lines (logs, prints, other tasks) are ignored.
    Read as it arrives, so a flood of output cannot push the real result out of the kept tail."""
    obj = parse_json_line(line)
    if obj is not None and str(obj.get("task_id")) == task_id:
        reports.add(task_id, obj)


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
        for key in ("AUTOHARNESS_TRACES_DIR", "AUTOHARNESS_TASK_IDS", "AUTOHARNESS_AGENT_DIR", "AUTOHARNESS_LIST_TASKS",
                    TOKEN_ENV):
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
        reports = Reports(new_token() if self.options.token else None)
        if reports.token is not None:
            extra[TOKEN_ENV] = "stdin"
        read_only = [*self.benchmark_files(), agent_dir, *self.protected]
        with task_space(read_only=read_only, writable=[self.cwd], outputs=[traces_dir] if traces_dir else []) as space:
            res = run_process(space.argv(self.options.cmd), cwd=self.cwd, env=space.env(self._env(extra)),
                              stdin=f"{reports.token}\n" if reports.token else None,
                              timeout_s=self.config.task_timeout_s, cap_chars=100_000,
                              on_line=lambda line: read_line(reports, task_id, line))
        if res.timed_out:
            return TaskResult(0.0, res.duration_s, None, f"timed out after {self.config.task_timeout_s:g}s", "timeout")
        if task_id in reports.conflicts:
            return conflict_result(res.duration_s)
        line = reports.lines.get(task_id)
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

    def benchmark_files(self) -> list[Path]:
        """The folders of the files `cmd` names (the evaluator, its tasks). Not the working folder, which by
        default is the config's folder, where the orchestrator keeps its records."""
        paths = ((self.cwd / arg).resolve() for arg in self.options.cmd[1:])
        return sorted({path.parent for path in paths if path.is_file()})

    def private_paths(self) -> list[Path]:
        """The benchmark's files and its working folder."""
        return [self.cwd, *self.benchmark_files()]

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
        return [*checks, containment.check()]
