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

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from benchmarks import containment
from benchmarks.containment import TOKEN_ENV, Reports, conflict_result, new_token, task_space
from orchestrator.core.config import BenchmarkConfig, parse_options
from orchestrator.core.contracts import BenchmarkRunner, Check, Starter, TaskResult, mean_of_trials
from orchestrator.core.errors import ConfigError
from orchestrator.core.jsonl import parse_json_line
from orchestrator.core.proc import ProcResult, run_process
from orchestrator.core.taskids import check_ids, problem


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


def task_env(options_env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without our own variables, with the benchmark's `env` and `extra` over it."""
    env = dict(os.environ)
    for key in ("AUTOHARNESS_TRACES_DIR", "AUTOHARNESS_TASK_IDS", "AUTOHARNESS_AGENT_DIR", "AUTOHARNESS_LIST_TASKS",
                TOKEN_ENV):
        env.pop(key, None)
    env.update(options_env)
    env.update(extra)
    return env


@dataclass(frozen=True)
class TaskCommand:
    """One task run of the benchmark, and nothing of the runner: the same code runs it in this process and
    on a Ray worker (benchmarks/ray_executor.py), which sees its own environment under `env`."""

    cmd: list[str]
    cwd: Path
    env: dict[str, str]       # the benchmark's `env` option
    token: bool
    timeout_s: float
    read_only: list[Path]     # the benchmark's files and the orchestrator's records (the agent is added)

    def run(self, agent_dir: Path, task_id: str, traces_dir: Path | None) -> TaskResult:
        extra = {"AUTOHARNESS_AGENT_DIR": str(agent_dir), "AUTOHARNESS_TASK_IDS": task_id}
        if traces_dir is not None:
            extra["AUTOHARNESS_TRACES_DIR"] = str(traces_dir)
        reports = Reports(new_token() if self.token else None)
        if reports.token is not None:
            extra[TOKEN_ENV] = "stdin"
        read_only = [*self.read_only, agent_dir]
        with task_space(read_only=read_only, writable=[self.cwd], outputs=[traces_dir] if traces_dir else []) as space:
            res = run_process(space.argv(self.cmd), cwd=self.cwd, env=space.env(task_env(self.env, extra)),
                              stdin=f"{reports.token}\n" if reports.token else None,
                              timeout_s=self.timeout_s, cap_chars=100_000,
                              on_line=lambda line: read_line(reports, task_id, line))
        return self.result(res, reports, task_id)

    def result(self, res: ProcResult, reports: Reports, task_id: str) -> TaskResult:
        """The task's result from its process: its result line, else why there is none."""
        if res.timed_out:
            return TaskResult(0.0, res.duration_s, None, f"timed out after {self.timeout_s:g}s", "timeout")
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
            printed = json.dumps(reward)
            printed = printed if len(printed) <= 80 else printed[:80] + "…"
            return TaskResult(None, res.duration_s, cost, f"reward {printed} is not a number in [0, 1]", "bad_output")
        return TaskResult(float(reward), res.duration_s, cost, error, "" if reward >= 1.0 else "failed")


def parse_listing(stdout: str) -> list[str]:
    """The task ids a listing printed. When any line is a JSON object with a `task_id`, those objects are the
    listing and every other line is a log, as in a run's output; else each non-empty line must be one id, and
    the first that is not one is an error (a log line printed to stdout would otherwise become a task)."""
    where = "benchmark.options.cmd (its task listing)"
    lines = [(n, line.strip()) for n, line in enumerate(stdout.splitlines(), 1) if line.strip()]
    objects = [obj for _, line in lines if (obj := parse_json_line(line)) is not None and "task_id" in obj]
    if objects:
        ids = check_ids([str(obj["task_id"]) for obj in objects], where)
    else:
        for n, line in lines:
            why = problem(line)
            if why is not None:
                raise ConfigError(f"{where}: line {n}, {line[:120]!r}, is not a task id (it {why}); print one id a "
                                  "line (or JSON lines with a task_id) on stdout, and logs to stderr")
        ids = [line for _, line in lines]
    return list(dict.fromkeys(ids))  # listed twice is still one task


class CommandRunner(BenchmarkRunner):
    starter = Starter(
        benchmark={"kind": "command", "options": {"cmd": ["python3", "/path/to/your/eval.py"]}},
        editable=["agent/**"],
    )
    per_task = True  # one process per task (and trial) already

    def __init__(self, config: BenchmarkConfig, config_dir: Path):
        super().__init__(config, config_dir)
        self.options: CommandOptions = parse_options(CommandOptions, config.options, "benchmark.options")
        self.cwd = (config_dir / self.options.cwd).resolve() if self.options.cwd else config_dir
        if not self.cwd.is_dir():
            raise ConfigError(f"benchmark.options.cwd: {self.cwd} is not a folder")
        self._check_program()

    def _check_program(self) -> None:
        """`cmd`'s program must be there now, not fail every task of the night: a bare name is looked up on
        PATH (the one the benchmark gets), a path is relative to the working folder."""
        exe = self.options.cmd[0]
        where = "benchmark.options.cmd"
        if os.sep not in exe:
            if shutil.which(exe, path=self._env({}).get("PATH")) is None:
                here = " (there is one in the working folder: write './" + exe + "')" if (self.cwd / exe).is_file() else ""
                raise ConfigError(f"{where}: program {exe!r} not found on PATH{here}")
            return
        path = self.cwd / Path(exe).expanduser()
        if not path.is_file():
            raise ConfigError(f"{where}: program {exe!r} not found: no file {path}")
        if not os.access(path, os.X_OK):
            raise ConfigError(f"{where}: program {exe!r} is not executable ({path}); chmod +x it, or run it "
                              "through its interpreter")

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        return task_env(self.options.env, extra)

    def tasks(self) -> list[str]:
        """Every task id: the `tasks` option if given, else what `cmd` lists when AUTOHARNESS_LIST_TASKS=1 is set
        (`parse_listing`). With explicit split lists in the config the listing is optional: when it fails or
        prints no ids, there is no listing and the lists are the tasks (their union), so every id is written
        once; when it prints ids, the lists are checked against them."""
        if self.options.tasks is not None:
            return list(dict.fromkeys(check_ids(self.options.tasks, "benchmark.options.tasks")))
        split = self.config.split
        listed = self._listing(required=not split.explicit)
        if listed or not split.explicit:
            return listed
        ids = [i for name in ("train", "val", "test") for i in check_ids(getattr(split, name), f"benchmark.split.{name}")]
        return list(dict.fromkeys(ids))

    def _listing(self, *, required: bool) -> list[str]:
        """The ids the listing prints; [] when it fails and is not `required`."""
        res = run_process(self.options.cmd, cwd=self.cwd, env=self._env({"AUTOHARNESS_LIST_TASKS": "1"}),
                          timeout_s=self.config.task_timeout_s)
        if res.ok:
            ids = parse_listing(res.stdout)
        elif required:
            said = next(filter(None, map(str.strip, reversed((res.stderr or res.stdout).splitlines()))), "no output")
            ended = f"timed out after {self.config.task_timeout_s:g}s" if res.timed_out else f"exit {res.returncode}"
            raise ConfigError(f"benchmark.options.cmd: listing the tasks (AUTOHARNESS_LIST_TASKS=1) failed ({ended}): "
                              f"{said[:300]}")
        else:
            ids = []
        if not ids and required:
            raise ConfigError("benchmark.options: no tasks; give `tasks`, explicit split lists, or make cmd print one "
                              "id a line when AUTOHARNESS_LIST_TASKS=1")
        return ids

    def run(self, agent_dir: Path, task_ids: list[str], *, traces_dir: Path | None) -> dict[str, TaskResult]:
        command = self.task_command()
        return self.run_trials(task_ids, lambda task_id: command.run(agent_dir, task_id, traces_dir))

    def run_trials(self, task_ids: list[str], one: Callable[[str], TaskResult]) -> dict[str, TaskResult]:
        """Each task `trials` times through `one` (a run here, or on Ray), `concurrency` at once; reported as
        each task's last trial ends."""
        jobs = [t for t in task_ids for _ in range(self.config.trials)]
        trials: dict[str, list[TaskResult]] = {t: [] for t in task_ids}
        workers = min(self.config.concurrency, len(jobs))
        with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
            # One run at a time (the task pool's usual job: one task, one trial) needs no thread of its own.
            done = map if workers <= 1 else pool.map
            for task_id, result in done(lambda t: (t, one(t)), jobs):
                trials[task_id].append(result)
                if len(trials[task_id]) == self.config.trials:
                    self.report(task_id, mean_of_trials(trials[task_id]))
        return {t: mean_of_trials(r) for t, r in trials.items()}

    def task_command(self) -> TaskCommand:
        return TaskCommand(list(self.options.cmd), self.cwd, dict(self.options.env), self.options.token,
                           self.config.task_timeout_s, [*self.benchmark_files(), *self.protected])

    def benchmark_files(self) -> list[Path]:
        """The folders of the files `cmd` names (the evaluator, its tasks). Not the working folder, which by
        default is the config's folder, where the orchestrator keeps its records."""
        paths = ((self.cwd / arg).resolve() for arg in self.options.cmd[1:])
        return sorted({path.parent for path in paths if path.is_file()})

    def private_paths(self) -> list[Path]:
        """The benchmark's files and its working folder."""
        return [self.cwd, *self.benchmark_files()]

    def check(self) -> list[Check]:
        """The program was found when the runner was built (`_check_program`); doctor lists the tasks itself."""
        return [Check("benchmark command", True, f"{self.options.cmd[0]} found"), containment.check()]
