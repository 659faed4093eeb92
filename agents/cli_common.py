"""What the `claude-code` and `codex` backends share: one run of a coding-agent CLI per attempt.

A subclass says how to run its CLI (argv, environment) and how to read its JSON-lines stream; this
module owns the rest: a clean per-run home (no parent session, no personal settings), the raw stream
tee'd to the transcript, retries of transient failures (tenacity, via agents.retry), a snapshot of the
worktree so a retry or a failed proposal leaves it exactly as it was given, and `doctor` checks.

Ends of a proposal and their status:
  the CLI finishes its task                       -> ok (its final message is the summary)
  the CLI stops at its turn limit                 -> ok, with `error` saying so; the gate judges the edits
  request.timeout_s runs out                      -> timeout
  the cost reaches request.max_cost_usd           -> over_budget
  a fault survives its retries, or the CLI crashes -> error, with error_class
A proposal that is not ok leaves the worktree as it found it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.api_loop import Transcript, endpoint_check
from agents.pricing import Prices, cost_usd
from agents.retry import call_with_retries
from orchestrator.core.config import BackendConfig, parse_options
from orchestrator.core.contracts import Check, Proposal, ProposalRequest, ProposalStatus, Usage
from orchestrator.core.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadOutput,
    BadRequest,
    ConnectionFailed,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
)
from orchestrator.core.proc import ProcResult, run_process, secret_values

TAIL = 600  # characters of a CLI's own output quoted in an error


class CliOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    binary: str = ""                             # the CLI to run; default its usual name on PATH
    base_url: str = ""                           # an Anthropic- / OpenAI-compatible endpoint
    extra_args: list[str] = []                   # appended to the CLI's argv
    attempts: int = Field(3, ge=1)               # whole runs per proposal, the first included (transient faults only)
    retry_max_wait_s: float = Field(60.0, gt=0)  # cap on one backoff between runs
    prices: Prices | None = None                 # USD per million tokens, for models the price table lacks


class OverBudget(BackendError):
    error_class = "over_budget"


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
        line = line.strip()
        if not line.startswith("{"):
            return
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self.events += 1
            self.event(event)

    def event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self, res: ProcResult) -> Attempt:
        raise NotImplementedError


# ---------------------------------------------------------------- failure text -> BackendError

_AUTH = re.compile(r"\b40[13]\b|unauthori[sz]ed|invalid (x-)?api[ _-]?key|authentication|not logged in|/login"
                   r"|permission_error|forbidden", re.I)
_RATE = re.compile(r"\b429\b|rate.?limit|too many requests", re.I)
_QUOTA = re.compile(r"insufficient_quota|quota exceeded|credit balance|usage limit|billing|spend limit", re.I)
_CONTEXT = re.compile(r"context (length|window)|context_length|prompt is too long|prompt_too_long|maximum context"
                      r"|ran out of room|too many tokens|input is too long", re.I)
_OVERLOADED = re.compile(r"\b(50[0234]|529)\b|overloaded|high demand|server.?error|internal error|service unavailable"
                         r"|bad gateway", re.I)
_CONNECTION = re.compile(r"stream disconnected|connection (failed|refused|reset|error)|econnrefused|econnreset"
                         r"|network|error sending request|timed? ?out|socket|unable to connect", re.I)


def classify_failure(text: str, status: int | None = None) -> BackendError:
    """A CLI's error message (and the HTTP status it reports, when it does) as a typed BackendError."""
    message = " ".join(text.split())[:1000] or "failed without a message"
    if status in (401, 403) or (status is None and _AUTH.search(message)):
        return AuthFailed(message)
    if status == 402 or _QUOTA.search(message):
        err = RateLimited(message)
        err.transient = False  # a spent quota does not come back in a minute
        return err
    if status == 429 or (status is None and _RATE.search(message)):
        return RateLimited(message)
    if status == 413 or _CONTEXT.search(message):
        return ContextWindowExceeded(message)
    if (status is not None and status >= 500) or (status is None and _OVERLOADED.search(message)):
        return Overloaded(message)
    if status is None and _CONNECTION.search(message):
        return ConnectionFailed(message)
    if status is not None and 400 <= status < 500:
        return BadRequest(message)
    return BackendError(message)


def tail(text: str, n: int = TAIL) -> str:
    text = text.strip()
    return text if len(text) <= n else "…" + text[-n:]


# ---------------------------------------------------------------- the worktree, restorable

class WorktreeSnapshot:
    """The worktree's files (tracked and untracked, not ignored) as a git tree, restorable exactly.

    Taken with a private index, so the worktree's own index and objects it refers to are untouched.
    """

    def __init__(self, worktree: Path, scratch: Path):
        self.worktree, self.scratch = worktree, scratch
        self.tree = self.head = ""
        index = scratch / "snapshot.index"
        add = self._git(["add", "-A"], index)
        tree = self._git(["write-tree"], index)
        if add.ok and tree.ok:
            self.tree = tree.stdout.strip()
        head = self._git(["rev-parse", "--verify", "-q", "HEAD"])
        self.head = head.stdout.strip() if head.ok else ""

    @property
    def ok(self) -> bool:
        return bool(self.tree)

    def _git(self, args: list[str], index: Path | None = None) -> ProcResult:
        env = dict(os.environ)
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        return run_process(["git", *args], cwd=self.worktree, env=env, timeout_s=300)

    def restore(self) -> bool:
        """Put every file back as it was; files created since are removed (ignored ones stay)."""
        if not self.ok:
            return False
        now = self._git(["rev-parse", "--verify", "-q", "HEAD"])
        if self.head and now.stdout.strip() != self.head:
            self._git(["reset", "-q", self.head])  # the CLI committed: move back, keeping the files
        index = self.scratch / "restore.index"
        index.unlink(missing_ok=True)
        steps = (["read-tree", self.tree], ["checkout-index", "-a", "-f"], ["clean", "-fdq"])
        return all(self._git(step, index).ok for step in steps)


# ---------------------------------------------------------------- the backend

def _status(exc: BackendError, deadline: float) -> ProposalStatus:
    if isinstance(exc, OverBudget):
        return ProposalStatus.OVER_BUDGET
    if isinstance(exc, BackendTimeout) and time.monotonic() >= deadline - 0.05:
        return ProposalStatus.TIMEOUT
    return ProposalStatus.ERROR


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


class CliAgent:
    """Base of the CLI backends. Subclasses set the class attributes and the hooks below."""

    kind = ""
    default_binary = ""
    key_envs: tuple[str, ...] = ()   # any one of them authenticates
    default_endpoint = ""            # probed by `doctor` when no base_url is configured
    options_model: type[CliOptions] = CliOptions

    def __init__(self, config: BackendConfig, config_dir: Path):
        self.config = config
        self.config_dir = config_dir
        self.options = parse_options(self.options_model, config.options, "backend.options")
        self.model = config.model

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

    def propose(self, request: ProposalRequest) -> Proposal:
        start = time.monotonic()
        deadline = start + request.timeout_s
        env = self.env(request.env)
        if request.transcript_path is not None:
            request.transcript_path.parent.mkdir(parents=True, exist_ok=True)
        log = Transcript(request.transcript_path, secret_values(env))
        totals = Attempt(cost_usd=0.0)
        runs = 0
        status, error, error_class, note = ProposalStatus.OK, "", "", ""
        log.write("start", backend=self.kind, model=self.model, options=self.options.model_dump(mode="json"),
                  prompt=request.prompt, timeout_s=request.timeout_s, max_cost_usd=request.max_cost_usd)
        with tempfile.TemporaryDirectory(prefix="autoharness-snapshot-") as scratch:
            snapshot = WorktreeSnapshot(request.worktree, Path(scratch))

            def once() -> Attempt:
                nonlocal runs
                runs += 1
                if runs > 1 and not snapshot.restore():
                    raise BackendError("cannot restore the worktree for a retry")
                spent = totals.cost_usd or 0.0
                log.write("attempt", n=runs, budget_usd=round(request.max_cost_usd - spent, 6))
                got = self._run(request, deadline, request.max_cost_usd - spent)
                totals.usage.add(got.usage)
                totals.cost_usd = None if totals.cost_usd is None or got.cost_usd is None else totals.cost_usd + got.cost_usd
                if got.error is not None:
                    raise got.error
                return got

            def on_retry(err: BackendError, attempt: int, sleep_s: float) -> None:
                log.write("retry", attempt=attempt, error_class=err.error_class, error=str(err)[:500],
                          sleep_s=round(sleep_s, 3))

            try:
                if self.binary() is None:
                    raise BackendError(f"{self.options.binary or self.default_binary}: {self.kind} CLI not found")
                if self._auth_problem(env):
                    raise AuthFailed(self._auth_problem(env))
                done = call_with_retries(once, attempts=self.options.attempts,
                                         max_wait_s=self.options.retry_max_wait_s, deadline=deadline,
                                         on_retry=on_retry)
                totals.summary, note = done.summary, done.note
                if totals.cost_usd is not None and totals.cost_usd > request.max_cost_usd:
                    raise OverBudget(f"cost ${totals.cost_usd:.4f} exceeded the cap of ${request.max_cost_usd:.4f}")
            except BackendError as exc:
                status, error, error_class = _status(exc, deadline), str(exc), exc.error_class
                log.write("restored", ok=snapshot.restore())
        duration = time.monotonic() - start
        log.write("end", status=status.value, error=error or note, error_class=error_class, attempts=runs,
                  usage=asdict(totals.usage), cost_usd=totals.cost_usd, duration_s=round(duration, 3))
        return Proposal(status=status, summary=totals.summary, usage=totals.usage, cost_usd=totals.cost_usd,
                        transcript=request.transcript_path, duration_s=duration, error=error or note,
                        error_class=error_class, backend=self.kind, model=self.model)

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
                                  tee=request.transcript_path, on_line=reader.feed)
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
