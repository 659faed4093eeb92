"""The `codex` backend: OpenAI's Codex CLI, headless (`codex exec --json`), in the proposal's worktree.

One run: the prompt on stdin (`-` as the prompt argument), every event a JSON line tee'd to the
transcript, a fresh CODEX_HOME whose config.toml names the endpoint (a `model_providers` entry with
`wire_api = "responses"` and `env_key` when `base_url` is set), `--ephemeral` (no session files),
`--skip-git-repo-check`. Tokens come from `turn.completed` events and the price from agents.pricing;
the last `agent_message` is the summary.

Sandbox: `--sandbox workspace-write` (the default) lets commands write the worktree and /tmp only; it
works on this project's machines, as root included (`doctor` runs a probe under it). Where it cannot
start, `sandbox = "danger-full-access"` runs commands unconfined (the gate's guard still checks the diff).
Codex has no spending cap of its own: its cost is known when the run ends, and a run that cost more
than max_cost_usd is reported over_budget. When the endpoint cannot be reached codex waits for the
network without end; request.timeout_s bounds that.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

from agents.cli_common import Attempt, CliAgent, CliOptions, StreamReader, tail
from agents.retry import classify_failure
from orchestrator.core.contracts import Check, ProposalRequest, Usage
from orchestrator.core.errors import BackendTimeout, BadOutput
from orchestrator.core.proc import ProcResult, run_process

PROVIDER = "autoharness"


class CodexOptions(CliOptions):
    sandbox: Literal["workspace-write", "danger-full-access", "read-only"] = "workspace-write"


def _usage(data: dict[str, Any]) -> Usage:
    """OpenAI counts cached input inside input_tokens; Usage.input_tokens is the uncached part."""
    def num(name: str) -> int:
        value = data.get(name)
        return int(value) if isinstance(value, int | float) else 0

    cached, written = num("cached_input_tokens"), num("cache_write_input_tokens")
    return Usage(input_tokens=max(0, num("input_tokens") - cached - written), output_tokens=num("output_tokens"),
                 cache_read_tokens=cached, cache_write_tokens=written)


class CodexReader(StreamReader):
    def __init__(self, agent: CodexAgent):
        super().__init__()
        self.agent = agent
        self.usage = Usage()
        self.turns = 0
        self.message = ""
        self.failure = ""
        self.last_error = ""

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "turn.completed":
            self.turns += 1
            self.usage.add(_usage(event.get("usage") or {}))
        elif kind == "turn.failed":
            self.failure = str((event.get("error") or {}).get("message") or "the turn failed")
        elif kind == "error":
            self.last_error = str(event.get("message") or "")
        elif kind == "item.completed":
            item = event.get("item") or {}
            if item.get("type") == "agent_message" and str(item.get("text", "")).strip():
                self.message = str(item["text"]).strip()

    def finish(self, res: ProcResult) -> Attempt:
        # A failed turn reports no usage: what was refused cost nothing. A killed or crashed run may
        # have spent tokens nobody reported, so its cost is unknown.
        got = Attempt(summary=self.message, usage=self.usage, cost_usd=None)
        if res.timed_out:
            hint = f"; last error: {self.last_error}" if self.last_error else ""
            got.error = BackendTimeout(f"codex did not finish within the time limit{hint}")
            return got
        if self.failure:
            got.error = classify_failure(self.failure)
        elif not self.turns:
            said = tail(res.stderr) or tail(res.stdout) or "no output"
            got.error = BadOutput(f"codex exited {res.returncode} without completing a turn: {said}")
            return got
        got.cost_usd = self.agent.cost(self.usage, self.agent.model, "openai")
        return got


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class CodexAgent(CliAgent):
    kind = "codex"
    default_binary = "codex"
    key_envs = ("CODEX_API_KEY", "OPENAI_API_KEY")
    default_endpoint = "https://api.openai.com/v1"
    options_model = CodexOptions
    options: CodexOptions

    def _inherited(self, name: str) -> bool:
        # CODEX_HOME, CODEX_SANDBOX*, a parent session's ids: the run gets its own.
        return not name.startswith("CODEX_") or name == "CODEX_API_KEY"

    def _isolation(self, home: Path) -> dict[str, str]:
        # Codex refuses to put the helpers its sandbox runs (codex-linux-sandbox, started by bwrap when the
        # machine has it) under the temporary folder; a private TMPDIR keeps a home below /tmp usable.
        tmp = home / "tmp"
        tmp.mkdir(exist_ok=True)
        return {"CODEX_HOME": str(home), "TMPDIR": str(tmp)}

    def _env_endpoint(self, env: dict[str, str]) -> str:
        return env.get("OPENAI_BASE_URL") or self.default_endpoint

    def config_toml(self, env: dict[str, str]) -> str:
        """The run's config.toml; sets the key variable the provider reads in `env`."""
        lines = ["# written by autoharness for one run", "check_for_update_on_startup = false"]
        key = self.key(env)
        if self.options.base_url:
            if key is None:
                env["OPENAI_API_KEY"] = "not-set"  # a local endpoint may check none; codex wants one
                key = ("OPENAI_API_KEY", "not-set")
            lines += [f"model_provider = {_toml(PROVIDER)}", "", f"[model_providers.{PROVIDER}]",
                      f"name = {_toml(PROVIDER)}", f"base_url = {_toml(self.options.base_url)}",
                      f"env_key = {_toml(key[0])}", 'wire_api = "responses"']
        elif key is not None:
            env.setdefault("CODEX_API_KEY", key[1])  # what `codex exec` reads for OpenAI itself
        return "\n".join([*lines, "", "[analytics]", "enabled = false", ""])

    def _command(self, request: ProposalRequest, home: Path, env: dict[str, str], budget_usd: float) -> list[str]:
        (home / "config.toml").write_text(self.config_toml(env))
        argv = [self.binary() or self.default_binary, "exec", "--json", "--color", "never", "--skip-git-repo-check",
                "--ephemeral", "--sandbox", self._sandbox_mode(request)]
        if self.model:
            argv += ["--model", self.model]
        return [*argv, *self.options.extra_args, "-"]

    def _reader(self, request: ProposalRequest) -> StreamReader:
        return CodexReader(self)

    def _sandbox_mode(self, request: ProposalRequest) -> str:
        # Inside autoharness' own bubblewrap sandbox codex's nested one cannot start (its edits fail);
        # bwrap already confines it, so it runs unconfined there. Under "none" its own is all there is.
        confined = request.sandbox is not None and request.sandbox.kind != "none"
        return "danger-full-access" if confined else self.options.sandbox

    def check(self) -> list[Check]:
        checks = super().check()
        binary = self.binary()
        if binary is None or self.options.sandbox == "danger-full-access":
            return checks
        with tempfile.TemporaryDirectory(prefix="autoharness-codex-doctor-") as tmp:
            home, work = Path(tmp, "home"), Path(tmp, "work")
            home.mkdir()
            work.mkdir()
            probe = ["sh", "-c", "touch probe"] if self.options.sandbox == "workspace-write" else ["true"]
            res = run_process([binary, "sandbox", "-c", f"sandbox_mode={_toml(self.options.sandbox)}", "--", *probe],
                              cwd=work, env=self.env(home=home), timeout_s=60)
        detail = f"{self.options.sandbox} works here" if res.ok else (
            f"{self.options.sandbox} cannot run here ({tail(res.stderr or res.stdout, 200)}); "
            "set backend.options.sandbox = \"danger-full-access\" on a machine that is itself a sandbox")
        return [*checks, Check("codex: sandbox", res.ok, detail)]
