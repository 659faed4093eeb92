"""The `claude-code` backend: Claude Code's CLI, headless (`claude -p`), in the proposal's worktree.

One run: the prompt on stdin, `--output-format stream-json --verbose` (every event a JSON line, tee'd to
the transcript), edits accepted without asking, `--max-budget-usd` from the proposal's cap. The run sees
neither a parent Claude Code session (CLAUDECODE and CLAUDE_CODE_* are dropped, but for CLAUDE_CODE_USE_*
and CLAUDE_CODE_OAUTH_TOKEN) nor the user's own settings, memory or MCP servers: a fresh HOME and
CLAUDE_CONFIG_DIR, `--setting-sources project`, `--strict-mcp-config`, `--no-session-persistence`.
Credentials therefore come from the environment or [backend.env] (ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN,
CLAUDE_CODE_OAUTH_TOKEN, or a cloud provider's variables), never from a login stored in the user's home.
Cost and usage come from the final `result` event.

Permissions: `--permission-mode acceptEdits` plus `--allowedTools` (Bash included) works as root;
`bypassPermissions` / `--dangerously-skip-permissions` refuse to run as root unless IS_SANDBOX=1 is in
[backend.env] — only for a machine that is itself a sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from agents.cli_common import Attempt, CliAgent, CliOptions, StreamReader, tail
from agents.retry import classify_failure
from orchestrator.core.contracts import ProposalRequest, Usage
from orchestrator.core.errors import BackendTimeout, BadOutput, OverBudget, Refused
from orchestrator.core.proc import ProcResult

KEEP = ("CLAUDE_CODE_USE_", "CLAUDE_CODE_OAUTH_TOKEN")  # CLAUDE_CODE_USE_BEDROCK / _VERTEX / _FOUNDRY
DEFAULT_TOOLS = ["Bash", "Edit", "Write", "MultiEdit", "NotebookEdit", "Read", "Glob", "Grep"]


class ClaudeCodeOptions(CliOptions):
    max_turns: int | None = Field(None, ge=1)        # the CLI's --max-turns; None: its own default
    permission_mode: Literal["acceptEdits", "bypassPermissions", "auto", "dontAsk"] = "acceptEdits"
    allowed_tools: list[str] = DEFAULT_TOOLS         # --allowedTools: run without asking
    setting_sources: str = "project"                 # --setting-sources; never "user": the run stays the user's own


def _usage(data: dict[str, Any]) -> Usage:
    """Usage from a result's `usage` or one `modelUsage` entry (the two spell it differently)."""
    def pick(*names: str) -> int:
        return next((int(data[n]) for n in names if isinstance(data.get(n), int | float)), 0)

    return Usage(input_tokens=pick("input_tokens", "inputTokens"), output_tokens=pick("output_tokens", "outputTokens"),
                 cache_read_tokens=pick("cache_read_input_tokens", "cacheReadInputTokens"),
                 cache_write_tokens=pick("cache_creation_input_tokens", "cacheCreationInputTokens"))


class ClaudeReader(StreamReader):
    def __init__(self, agent: ClaudeCodeAgent):
        super().__init__()
        self.agent = agent
        self.result: dict[str, Any] | None = None
        self.last_text = ""
        self.last_api_error = ""

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "result":
            self.result = event
        elif kind == "assistant":
            content = (event.get("message") or {}).get("content") or []
            text = "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
            self.last_text = text.strip() or self.last_text
        elif kind == "system" and event.get("subtype") == "api_retry":
            self.last_api_error = f"HTTP {event.get('error_status')} {event.get('error', '')}".strip()

    def cost(self, result: dict[str, Any], usage: Usage) -> float | None:
        """The CLI's own figure, unless it had to guess a price (an unknown model) or prices are configured."""
        per_model = result.get("modelUsage") or {}
        guessed = any(isinstance(m, dict) and m.get("costBasis") == "unknown" for m in per_model.values())
        reported = result.get("total_cost_usd")
        if not guessed and self.agent.options.prices is None and isinstance(reported, int | float):
            return float(reported)
        if not per_model:
            return self.agent.cost(usage, self.agent.model, "anthropic")
        costs = [self.agent.cost(_usage(m), name, "anthropic") for name, m in per_model.items()]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def finish(self, res: ProcResult) -> Attempt:
        if res.timed_out:
            hint = f"; last API error: {self.last_api_error}" if self.last_api_error else ""
            return Attempt(error=BackendTimeout(f"claude gave no result within the time limit{hint}"))
        result = self.result
        if result is None:
            said = tail(res.stderr) or tail(res.stdout) or "no output"
            return Attempt(error=BadOutput(f"claude exited {res.returncode} without a result event: {said}"))
        usage = _usage(result.get("usage") or {})
        got = Attempt(summary=str(result.get("result") or self.last_text).strip(), usage=usage,
                      cost_usd=self.cost(result, usage))
        subtype = str(result.get("subtype", ""))
        errors = "; ".join(str(e) for e in result.get("errors") or [])
        text = " ".join(p for p in (str(result.get("result") or ""), errors) if p)
        if subtype == "error_max_budget_usd" or result.get("terminal_reason") == "budget_exhausted":
            got.error = OverBudget(errors or "claude reached its budget")
        elif subtype == "error_max_turns":
            got.summary, got.note = self.last_text, errors or "claude stopped at its turn limit"
        elif result.get("stop_reason") == "refusal":
            got.error = Refused(f"the model refused: {text[:300]}")
        elif result.get("is_error") or subtype.startswith("error"):
            status = result.get("api_error_status")
            if result.get("terminal_reason") == "prompt_too_long":
                text = f"prompt is too long: {text}"
            got.error = classify_failure(text or subtype, status if isinstance(status, int) else None)
        return got


class ClaudeCodeAgent(CliAgent):
    kind = "claude-code"
    default_binary = "claude"
    key_envs = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
    default_endpoint = "https://api.anthropic.com"
    options_model = ClaudeCodeOptions
    options: ClaudeCodeOptions

    def _inherited(self, name: str) -> bool:
        # A parent Claude Code session marks its children with CLAUDECODE and CLAUDE_CODE_*; the run must
        # start afresh. Kept: the choice of provider and an explicit OAuth token, which are the user's setup.
        if name in ("CLAUDECODE", "CLAUDE_CONFIG_DIR"):
            return False
        return not name.startswith("CLAUDE_CODE_") or name.startswith(KEEP)

    def _isolation(self, home: Path) -> dict[str, str]:
        return {
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }

    def _env_endpoint(self, env: dict[str, str]) -> str:
        return env.get("ANTHROPIC_BASE_URL") or self.default_endpoint

    def _auth_problem(self, env: dict[str, str]) -> str:
        # Bedrock, Vertex and Foundry bring their own credentials; a base URL may need no key.
        if env.get("ANTHROPIC_BASE_URL") or any(k.startswith("CLAUDE_CODE_USE_") and v for k, v in env.items()):
            return ""
        return super()._auth_problem(env)

    def _command(self, request: ProposalRequest, home: Path, env: dict[str, str], budget_usd: float) -> list[str]:
        opts = self.options
        if opts.base_url:
            env["ANTHROPIC_BASE_URL"] = opts.base_url
        if self.key(env) is None and env.get("ANTHROPIC_BASE_URL"):
            env["ANTHROPIC_API_KEY"] = "not-set"  # a local endpoint may check none; the CLI wants one
        argv = [self.binary() or self.default_binary, "-p", "--output-format", "stream-json", "--verbose",
                "--permission-mode", opts.permission_mode, "--setting-sources", opts.setting_sources,
                "--strict-mcp-config", "--no-session-persistence", "--max-budget-usd", f"{budget_usd:.4f}"]
        if opts.allowed_tools:
            argv += ["--allowedTools", ",".join(opts.allowed_tools)]
        if opts.max_turns:
            argv += ["--max-turns", str(opts.max_turns)]
        if self.model:
            argv += ["--model", self.model]
        return argv + opts.extra_args

    def _reader(self, request: ProposalRequest) -> StreamReader:
        return ClaudeReader(self)
