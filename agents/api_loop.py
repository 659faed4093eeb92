"""The tool-use loop shared by the `anthropic` and `openai` backends.

A provider supplies a Session (`ask` one model turn, `answer` its tool calls); this module owns the loop:
limits, retries (tenacity, via agents.retry; the SDKs' own retries are off), tools and cost. The frame
of the proposal (clock, transcript, status) is agents.backend's.

Ends of the loop and their Proposal status:
  the model answers without a tool call      -> ok
  the turn limit (`max_turns`) is reached    -> ok, with `error` saying so: the edits so far still go
                                                through the gate, which is the judge of a change
  the wall clock (request.timeout_s) runs out -> timeout
  the cost reaches request.max_cost_usd      -> over_budget (unknown prices cannot be capped)
  a backend fault survives its retries       -> error, with error_class
  autoharness is stopping (request.cancel)   -> error, error_class "cancelled", checked at each turn
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agents.backend import Backend, Run, endpoint_check
from agents.pricing import Prices, cost_usd
from agents.retry import call_with_retries
from agents.tools import Toolbox, ToolResult
from orchestrator.core.contracts import Check, ProposalRequest, Usage
from orchestrator.core.errors import AuthFailed, BackendError, BackendTimeout, OverBudget, Refused

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


class ApiAgent(Backend):
    """Base of the raw-API backends. Subclasses set the class attributes and `_session`."""

    provider = ""          # the genai-prices provider id
    key_env = ""           # e.g. ANTHROPIC_API_KEY
    base_url_env = ""      # e.g. ANTHROPIC_BASE_URL
    sdk = ""               # the SDK's import name
    options_model: type[ApiOptions] = ApiOptions
    options: ApiOptions

    # -- provider hooks
    def _session(self, request: ProposalRequest, key: str, base_url: str | None) -> Session:
        raise NotImplementedError

    def _default_base_url(self) -> str:
        raise NotImplementedError

    # -- shared
    def env(self, request_env: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.config.env, **(request_env or {})}

    def _endpoint(self, env: dict[str, str]) -> tuple[str | None, str | None]:
        """(api key, base URL or None for the SDK's default). A custom endpoint may need no key."""
        base_url = self.options.base_url or env.get(self.base_url_env) or None
        key = env.get(self.key_env) or None
        if key is None and base_url is not None:
            key = "not-set"  # local servers (vLLM, Ollama, a proxy) often check none; the SDK wants one
        return key, base_url

    def cost(self, usage: Usage) -> float | None:
        return cost_usd(usage, self.model, provider=self.provider, prices=self.options.prices)

    def _start(self) -> dict[str, Any]:
        return {"system": SYSTEM_PROMPT}

    def _work(self, request: ProposalRequest, env: dict[str, str], run: Run) -> None:
        known = True  # a turn without usage makes the cost unknown
        try:
            key, base_url = self._endpoint(env)
            if key is None:
                raise AuthFailed(f"{self.key_env} is not set (environment or [backend.env])")
            session = self._session(request, key, base_url)
            tools = Toolbox(request.worktree, bash_timeout_s=self.options.bash_timeout_s,
                            output_chars=self.options.tool_output_chars, env={**self.config.env, **request.env},
                            sandbox=request.sandbox)
            for n in range(1, self.options.max_turns + 1):
                run.checkpoint()
                turn = self._ask(session, n, run)
                if turn.usage is None:
                    known = False
                else:
                    run.usage.add(turn.usage)
                spent = self.cost(run.usage) if known else None
                run.log.write("response", turn=n, text=turn.text, calls=[asdict(c) for c in turn.calls],
                              usage=asdict(turn.usage) if turn.usage else None, cost_usd=spent)
                run.summary = turn.text.strip() or run.summary
                if turn.refused:
                    raise Refused(f"the model refused: {turn.text[:300]}")
                if spent is not None and spent >= request.max_cost_usd:
                    raise OverBudget(f"cost ${spent:.4f} reached the cap of ${request.max_cost_usd:.4f}")
                if not turn.calls:
                    return
                session.answer(self._run_tools(tools, turn.calls, n, run))
            run.note = f"stopped at the turn limit ({self.options.max_turns} turns)"
        finally:
            run.cost_usd = self.cost(run.usage) if known else None

    def _ask(self, session: Session, n: int, run: Run) -> Turn:
        def once() -> Turn:
            left = run.deadline - time.monotonic()
            if left <= 0:
                raise BackendTimeout("the wall clock ran out")
            run.log.write("request", turn=n, timeout_s=round(min(left, self.options.request_timeout_s), 3))
            return session.ask(min(left, self.options.request_timeout_s))

        def on_retry(err: BackendError, attempt: int, sleep_s: float) -> None:
            run.log.write("retry", turn=n, attempt=attempt, error_class=err.error_class, error=str(err)[:500],
                          sleep_s=round(sleep_s, 3))

        if time.monotonic() >= run.deadline:
            raise BackendTimeout("the wall clock ran out")
        return call_with_retries(once, attempts=self.options.retries, max_wait_s=self.options.retry_max_wait_s,
                                 deadline=run.deadline, on_retry=on_retry)

    def _run_tools(self, tools: Toolbox, calls: list[ToolCall], n: int, run: Run) -> list[tuple[ToolCall, ToolResult]]:
        results = []
        for call in calls:
            left = run.deadline - time.monotonic()
            if left <= 0:
                raise BackendTimeout("the wall clock ran out during a tool call")
            result = tools.run(call.name, call.args, timeout_s=left)
            run.log.write("tool", turn=n, id=call.id, name=call.name, args=call.args, result=result.text[-4000:],
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
        env = self.env()
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
