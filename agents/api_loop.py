"""The tool-use loop shared by the `anthropic` and `openai` backends.

A provider supplies a Session (`ask` one model turn, `answer` its tool calls); this module owns the rest:
limits, retries (tenacity, via agents.retry; the SDKs' own retries are off), tools, cost and the transcript.

Ends of the loop and their Proposal status:
  the model answers without a tool call      -> ok
  the turn limit (`max_turns`) is reached    -> ok, with `error` saying so: the edits so far still go
                                                through the gate, which is the judge of a change
  the wall clock (request.timeout_s) runs out -> timeout
  the cost reaches request.max_cost_usd      -> over_budget (unknown prices cannot be capped)
  a backend fault survives its retries       -> error, with error_class
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agents.pricing import Prices, cost_usd
from agents.retry import call_with_retries
from agents.tools import Toolbox, ToolResult
from orchestrator.core.config import BackendConfig, parse_options
from orchestrator.core.contracts import Check, Proposal, ProposalRequest, ProposalStatus, Usage
from orchestrator.core.errors import AuthFailed, BackendError, BackendTimeout, Refused
from orchestrator.core.proc import redact, secret_values

SYSTEM_PROMPT = (
    "You are an autonomous coding agent working alone in a git repository; nobody will answer questions. "
    "Use the tools to read and edit files and to run commands. Paths are relative to the repository root, "
    "which is also the working directory of bash. Work only inside the repository and do not commit. "
    "When you are done, reply with your final message and no tool call."
)


class ApiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = ""                                # an Anthropic- or OpenAI-compatible endpoint
    max_turns: int = Field(60, ge=1)                  # model requests per proposal
    max_tokens: int = Field(8192, ge=1)               # output tokens per request
    stream: bool = True
    prices: Prices | None = None                      # USD per million tokens, for models the table lacks
    retries: int = Field(6, ge=1)                     # attempts per request, the first included
    retry_max_wait_s: float = Field(60.0, gt=0)       # cap on one backoff or Retry-After sleep
    request_timeout_s: float = Field(600.0, gt=0)     # one HTTP request (also capped by the wall clock)
    bash_timeout_s: float = Field(300.0, gt=0)
    tool_output_chars: int = Field(20_000, ge=1000)   # tool output kept for the model (the tail)


@dataclass
class ToolCall:
    id: str
    name: str
    args: Any   # the parsed JSON object; the raw text when it did not parse


@dataclass
class Turn:
    text: str
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None   # None when the server reported none: the cost becomes unknown
    refused: bool = False


class Session(Protocol):
    def ask(self, timeout_s: float) -> Turn: ...

    def answer(self, results: list[tuple[ToolCall, ToolResult]]) -> None: ...


def parse_arguments(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text


class Transcript:
    """JSON lines, secrets redacted; every write is flushed so a killed run keeps what it had."""

    def __init__(self, path: Path | None, secrets: list[str]):
        self.path, self.secrets = path, secrets

    def write(self, event: str, **data: Any) -> None:
        if self.path is None:
            return
        line = redact(json.dumps({"t": round(time.time(), 3), "event": event, **data}, default=str), self.secrets)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class _Stop(Exception):
    def __init__(self, status: ProposalStatus, error: str, error_class: str = ""):
        super().__init__(error)
        self.status, self.error, self.error_class = status, error, error_class


class ApiAgent:
    """Base of the raw-API backends. Subclasses set the class attributes and `_session`."""

    kind = ""
    provider = ""          # the genai-prices provider id
    key_env = ""           # e.g. ANTHROPIC_API_KEY
    base_url_env = ""      # e.g. ANTHROPIC_BASE_URL
    default_model = ""
    sdk = ""               # the SDK's import name
    options_model: type[ApiOptions] = ApiOptions

    def __init__(self, config: BackendConfig, config_dir: Path):
        self.config = config
        self.options = parse_options(self.options_model, config.options, "backend.options")
        self.model = config.model or self.default_model

    # -- provider hooks
    def _session(self, request: ProposalRequest, key: str, base_url: str | None) -> Session:
        raise NotImplementedError

    def _default_base_url(self) -> str:
        raise NotImplementedError

    # -- shared
    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.config.env, **(extra or {})}

    def _endpoint(self, env: dict[str, str]) -> tuple[str | None, str | None]:
        """(api key, base URL or None for the SDK's default). A custom endpoint may need no key."""
        base_url = self.options.base_url or env.get(self.base_url_env) or None
        key = env.get(self.key_env) or None
        if key is None and base_url is not None:
            key = "not-set"  # local servers (vLLM, Ollama, a proxy) often check none; the SDK wants one
        return key, base_url

    def cost(self, usage: Usage) -> float | None:
        return cost_usd(usage, self.model, provider=self.provider, prices=self.options.prices)

    def propose(self, request: ProposalRequest) -> Proposal:
        start = time.monotonic()
        deadline = start + request.timeout_s
        env = self._env(request.env)
        log = Transcript(request.transcript_path, secret_values(env))
        usage, known = Usage(), True
        outcome = _Stop(ProposalStatus.OK, "")
        summary = ""
        log.write("start", backend=self.kind, model=self.model, options=self.options.model_dump(mode="json"),
                  system=SYSTEM_PROMPT, prompt=request.prompt, timeout_s=request.timeout_s,
                  max_cost_usd=request.max_cost_usd)
        try:
            key, base_url = self._endpoint(env)
            if key is None:
                raise AuthFailed(f"{self.key_env} is not set (environment or [backend.env])")
            session = self._session(request, key, base_url)
            tools = Toolbox(request.worktree, bash_timeout_s=self.options.bash_timeout_s,
                            output_chars=self.options.tool_output_chars, env={**self.config.env, **request.env},
                            sandbox=request.sandbox)
            for n in range(1, self.options.max_turns + 1):
                if request.cancel is not None and request.cancel.requested:
                    raise _Stop(ProposalStatus.ERROR, "cancelled: autoharness is stopping", "cancelled")
                turn = self._ask(session, n, deadline, log)
                if turn.usage is None:
                    known = False
                else:
                    usage.add(turn.usage)
                spent = self.cost(usage) if known else None
                log.write("response", turn=n, text=turn.text, calls=[asdict(c) for c in turn.calls],
                          usage=asdict(turn.usage) if turn.usage else None, cost_usd=spent)
                summary = turn.text.strip() or summary
                if turn.refused:
                    raise Refused(f"the model refused: {turn.text[:300]}")
                if spent is not None and spent >= request.max_cost_usd:
                    raise _Stop(ProposalStatus.OVER_BUDGET, f"cost ${spent:.4f} reached the cap of "
                                f"${request.max_cost_usd:.4f}", "over_budget")
                if not turn.calls:
                    break
                session.answer(self._run_tools(tools, turn.calls, n, deadline, log))
            else:
                outcome = _Stop(ProposalStatus.OK, f"stopped at the turn limit ({self.options.max_turns} turns)")
        except _Stop as stop:
            outcome = stop
        except BackendError as exc:
            late = time.monotonic() >= deadline - 0.05
            status = ProposalStatus.TIMEOUT if isinstance(exc, BackendTimeout) and late else ProposalStatus.ERROR
            outcome = _Stop(status, str(exc), exc.error_class)
        cost = self.cost(usage) if known else None
        duration = time.monotonic() - start
        log.write("end", status=outcome.status.value, error=outcome.error, error_class=outcome.error_class,
                  usage=asdict(usage), cost_usd=cost, duration_s=round(duration, 3))
        return Proposal(status=outcome.status, summary=summary, usage=usage, cost_usd=cost,
                        transcript=request.transcript_path, duration_s=duration, error=outcome.error,
                        error_class=outcome.error_class, backend=self.kind, model=self.model)

    def _ask(self, session: Session, n: int, deadline: float, log: Transcript) -> Turn:
        def once() -> Turn:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendTimeout("the wall clock ran out")
            log.write("request", turn=n, timeout_s=round(min(left, self.options.request_timeout_s), 3))
            return session.ask(min(left, self.options.request_timeout_s))

        def on_retry(err: BackendError, attempt: int, sleep_s: float) -> None:
            log.write("retry", turn=n, attempt=attempt, error_class=err.error_class, error=str(err)[:500],
                      sleep_s=round(sleep_s, 3))

        if time.monotonic() >= deadline:
            raise _Stop(ProposalStatus.TIMEOUT, "the wall clock ran out", "timeout")
        return call_with_retries(once, attempts=self.options.retries, max_wait_s=self.options.retry_max_wait_s,
                                 deadline=deadline, on_retry=on_retry)

    def _run_tools(self, tools: Toolbox, calls: list[ToolCall], n: int, deadline: float,
                   log: Transcript) -> list[tuple[ToolCall, ToolResult]]:
        results = []
        for call in calls:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Stop(ProposalStatus.TIMEOUT, "the wall clock ran out during a tool call", "timeout")
            result = tools.run(call.name, call.args, timeout_s=left)
            log.write("tool", turn=n, id=call.id, name=call.name, args=call.args, result=result.text[-4000:],
                      is_error=result.is_error)
            results.append((call, result))
        return results

    # -- doctor
    def check(self) -> list[Check]:
        checks: list[Check] = []
        try:
            module = __import__(self.sdk)
            checks.append(Check(f"{self.kind}: {self.sdk} SDK", True, f"{self.sdk} {module.__version__}"))
        except ImportError as exc:
            return [Check(f"{self.kind}: {self.sdk} SDK", False, f"cannot import {self.sdk}: {exc}")]
        env = self._env()
        key, base_url = self._endpoint(env)
        if env.get(self.key_env):
            checks.append(Check(f"{self.kind}: API key", True, f"{self.key_env} is set"))
        elif key is not None:
            checks.append(Check(f"{self.kind}: API key", True, f"{self.key_env} is not set; {base_url} gets none",
                                fatal=False))
        else:
            checks.append(Check(f"{self.kind}: API key", False, f"{self.key_env} is not set (environment or [backend.env])"))
        checks.append(endpoint_check(f"{self.kind}: endpoint", base_url or self._default_base_url()))
        if self.cost(Usage(input_tokens=1, output_tokens=1)) is None:
            checks.append(Check(f"{self.kind}: price", False, f"no price known for {self.model!r}: costs are unknown "
                                "and max_cost_usd cannot be enforced; set backend.options.prices", fatal=False))
        return checks


def endpoint_check(name: str, url: str, timeout_s: float = 5.0) -> Check:
    """Any HTTP answer, even 401 or 404, proves the endpoint is there."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout_s) as resp:
            return Check(name, True, f"{url} answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        return Check(name, True, f"{url} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check(name, False, f"{url} is not reachable: {getattr(exc, 'reason', exc)}")
