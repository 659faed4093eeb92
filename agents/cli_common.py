"""What the `claude-code` and `codex` backends share: one run of a coding-agent CLI per attempt.

A subclass says how to run its CLI (argv, environment) and how to read its JSON-lines stream; this
module owns the rest: a clean per-run home (no parent session, no personal settings), the raw stream
tee'd to the transcript, retries of transient failures (tenacity, via agents.retry), a snapshot of the
worktree (agents.worktree) so a retry or a failed proposal leaves it exactly as it was given, and
`doctor` checks. The frame of the proposal (clock, transcript, status) is agents.backend's.

Ends of a proposal and their status:
  the CLI finishes its task                       -> ok (its final message is the summary)
  the CLI stops at its turn limit                 -> ok, with `error` saying so; the gate judges the edits
  request.timeout_s runs out                      -> timeout
  the cost reaches request.max_cost_usd           -> over_budget
  a fault survives its retries, or the CLI crashes -> error, with error_class
A proposal that is not ok leaves the worktree as it found it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.backend import Backend, Run, endpoint_check
from agents.pricing import Prices, cost_usd
from agents.retry import call_with_retries
from agents.worktree import WorktreeSnapshot
from orchestrator.core.contracts import Check, ProposalRequest, Usage
from orchestrator.core.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadOutput,
    OverBudget,
    WorktreeError,
)
from orchestrator.core.jsonl import parse_json_line
from orchestrator.core.proc import ProcResult, run_process

TAIL = 600  # characters of a CLI's own output quoted in an error


class CliOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    binary: str = ""                             # the CLI to run; default its usual name on PATH
    base_url: str = ""                           # an Anthropic- / OpenAI-compatible endpoint
    extra_args: list[str] = []                   # appended to the CLI's argv
    attempts: int = Field(3, ge=1)               # whole runs per proposal, the first included (transient faults only)
    retry_max_wait_s: float = Field(60.0, gt=0)  # cap on one backoff between runs
    prices: Prices | None = None                 # USD per million tokens, for models the price table lacks


@dataclass
class Attempt:
    """What one run of the CLI produced. `error` set means the run failed."""

    summary: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    error: BackendError | None = None
    note: str = ""  # a caveat on a run that still counts (the turn limit)


class StreamReader:
    """Reads a CLI's JSON-lines stdout as it arrives (run_process's on_line)."""

    def __init__(self) -> None:
        self.events = 0

    def feed(self, line: str) -> None:
        event = parse_json_line(line)
        if event is not None:
            self.events += 1
            self.event(event)

    def event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self, res: ProcResult) -> Attempt:
        raise NotImplementedError


def tail(text: str, n: int = TAIL) -> str:
    text = text.strip()
    return text if len(text) <= n else "…" + text[-n:]


# ---------------------------------------------------------------- the backend

@contextmanager
def run_home(kind: str, request: ProposalRequest) -> Iterator[Path]:
    """A fresh, private home for one CLI run, removed afterwards.

    Beside the transcript when there is one: codex will not create its helper commands under /tmp.
    """
    base = request.transcript_path.parent if request.transcript_path else None
    path = Path(tempfile.mkdtemp(prefix=f".{kind}-home-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class CliAgent(Backend):
    """Base of the CLI backends. Subclasses set the class attributes and the hooks below."""

    default_binary = ""
    key_envs: tuple[str, ...] = ()   # any one of them authenticates
    default_endpoint = ""            # probed by `doctor` when no base_url is configured
    options_model: type[CliOptions] = CliOptions
    options: CliOptions

    # -- hooks
    def _command(self, request: ProposalRequest, home: Path, env: dict[str, str], budget_usd: float) -> list[str]:
        """The argv of one run; may add to `env` (the run's whole environment)."""
        raise NotImplementedError

    def _reader(self, request: ProposalRequest) -> StreamReader:
        raise NotImplementedError

    def _inherited(self, name: str) -> bool:
        """Whether a variable of the parent's environment reaches the CLI."""
        return True

    def _isolation(self, home: Path) -> dict[str, str]:
        """Variables that keep one run apart from the user's own setup ([backend.env] may override them)."""
        return {}

    # -- shared
    def binary(self) -> str | None:
        """The CLI's path, or None when it is not installed."""
        name = self.options.binary or self.default_binary
        if os.sep in name:
            path = Path(os.path.abspath(self.config_dir / Path(name).expanduser()))  # keep npm's .bin link
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        return shutil.which(name)

    def env(self, request_env: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if self._inherited(k)}
        isolation = self._isolation(home) if home is not None else {}
        return {**env, **isolation, **self.config.env, **(request_env or {})}

    def key(self, env: dict[str, str]) -> tuple[str, str] | None:
        """(variable, value) of the first key present."""
        for name in self.key_envs:
            if env.get(name):
                return name, env[name]
        return None

    def cost(self, usage: Usage, model: str, provider: str) -> float | None:
        return cost_usd(usage, model, provider=provider, prices=self.options.prices)

    def _work(self, request: ProposalRequest, env: dict[str, str], run: Run) -> None:
        if self.binary() is None:
            raise BackendError(f"{self.options.binary or self.default_binary}: {self.kind} CLI not found")
        if self._auth_problem(env):
            raise AuthFailed(self._auth_problem(env))
        run.end["attempts"] = 0
        with WorktreeSnapshot(request.worktree) as snapshot:
            def once() -> Attempt:
                n = run.end["attempts"] = run.end["attempts"] + 1
                if n > 1:
                    snapshot.restore()  # each attempt starts from the worktree as given
                spent = run.cost_usd or 0.0
                run.log.write("attempt", n=n, budget_usd=round(request.max_cost_usd - spent, 6))
                got = self._run(request, run.deadline, request.max_cost_usd - spent)
                run.usage.add(got.usage)
                run.cost_usd = None if run.cost_usd is None or got.cost_usd is None else run.cost_usd + got.cost_usd
                if got.error is not None:
                    raise got.error
                return got

            def on_retry(err: BackendError, attempt: int, sleep_s: float) -> None:
                run.log.write("retry", attempt=attempt, error_class=err.error_class, error=str(err)[:500],
                              sleep_s=round(sleep_s, 3))

            try:
                done = call_with_retries(once, attempts=self.options.attempts,
                                         max_wait_s=self.options.retry_max_wait_s, deadline=run.deadline,
                                         on_retry=on_retry)
                run.summary, run.note = done.summary, done.note
                if run.cost_usd is not None and run.cost_usd > request.max_cost_usd:
                    raise OverBudget(f"cost ${run.cost_usd:.4f} exceeded the cap of ${request.max_cost_usd:.4f}")
            except BackendError:
                try:
                    snapshot.restore()
                    run.log.write("restored", ok=True)
                except WorktreeError as exc:  # reported; the proposal's own failure is what it ends with
                    run.log.write("restored", ok=False, error=str(exc))
                raise

    def _run(self, request: ProposalRequest, deadline: float, budget_usd: float) -> Attempt:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendTimeout("the wall clock ran out")
        if budget_usd <= 0:
            raise OverBudget(f"the budget of ${request.max_cost_usd:.4f} is spent")
        with run_home(self.kind, request) as home:
            run_env = self.env(request.env, home)
            argv = self._command(request, home, run_env, budget_usd)
            if request.sandbox is not None:
                program = shutil.which(argv[0], path=run_env.get("PATH")) or argv[0]
                argv = request.sandbox.wrap(argv, writable=[home], visible=[Path(program).resolve()])
            reader = self._reader(request)
            try:
                res = run_process(argv, cwd=request.worktree, env=run_env, stdin=request.prompt, timeout_s=left,
                                  tee=request.transcript_path, on_line=reader.feed, secrets=self.handed(request))
            except OSError as exc:  # not executable, not a program, ...
                raise BadOutput(f"cannot run {argv[0]}: {exc}") from exc
        return reader.finish(res)

    # -- doctor
    def check(self) -> list[Check]:
        name = f"{self.kind}: "
        binary = self.binary()
        if binary is None:
            want = self.options.binary or self.default_binary
            return [Check(name + "CLI", False, f"{want} not found (install it, or set backend.options.binary)")]
        res = run_process([binary, "--version"], timeout_s=60)
        checks = [Check(name + "CLI", res.ok, f"{binary}: {tail(res.stdout or res.stderr, 200)}")]
        env = self.env()
        found, problem = self.key(env), self._auth_problem(env)
        if found:
            checks.append(Check(name + "API key", True, f"{found[0]} is set"))
        else:
            checks.append(Check(name + "API key", not problem, problem or f"none of {', '.join(self.key_envs)} "
                                "is set; the endpoint gets a placeholder or the provider's own credentials"))
        checks.append(endpoint_check(name + "endpoint", self.options.base_url or self._env_endpoint(env)))
        return checks

    def _env_endpoint(self, env: dict[str, str]) -> str:
        return self.default_endpoint

    def _auth_problem(self, env: dict[str, str]) -> str:
        """Why the run could not authenticate, or "" (a custom endpoint may need no key)."""
        if self.key(env) or self.options.base_url:
            return ""
        return f"none of {', '.join(self.key_envs)} is set in the environment or backend.env"
