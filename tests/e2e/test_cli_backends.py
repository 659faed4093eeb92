"""The claude-code and codex backends: the real CLIs (`.ci/install-clis.sh`) against the scripted server,
editing a real git worktree through the CLIs' own tools (Claude Code's Read/Edit/Write/Bash, codex's
apply_patch and exec_command)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agents.claude_code import ClaudeCodeAgent
from agents.codex import CodexAgent
from agents.scripted_server import ScriptedServer
from orchestrator.core.config import BackendConfig
from orchestrator.core.contracts import ProposalRequest, ProposalStatus
from tests.cli_backends import ROOT, SECRET, UNTOUCHED, cli_repo, events, ours, request, status
from tests.helpers import agent_cli

FINAL = "HYPOTHESIS: the greeting was rude.\nCHANGE: greet with hello."
PRICES = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return cli_repo(tmp_path)


def survivors(marker: str) -> list[int]:
    """Processes whose environment carries the marker: the CLI and anything it started."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def propose_watching(agent, req: ProposalRequest, marker: str):
    """Propose, noting meanwhile whether a `sleep 600` the model started was seen running (with the marker)."""
    seen: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(agent.propose, req)
        while not future.done():
            seen += [pid for pid in survivors(marker) if b"sleep\x00600" in cmdline(pid)]
            time.sleep(0.2)
        return future.result(), bool(seen)


def claude(srv: ScriptedServer | None, *, model: str = "", env: dict | None = None, **options) -> ClaudeCodeAgent:
    opts = {"binary": agent_cli("claude"), "retry_max_wait_s": 0.5, **options}
    if srv is not None:
        opts.setdefault("base_url", srv.base_url)
    # The CLI's own retries off, so a scripted fault reaches the backend's retry policy.
    keys = {"ANTHROPIC_API_KEY": SECRET, "CLAUDE_CODE_MAX_RETRIES": "0", **(env or {})}
    return ClaudeCodeAgent(BackendConfig(kind="claude-code", model=model, options=opts, env=keys), ROOT)


def codex(srv: ScriptedServer | None, *, model: str = "gpt-5.5", env: dict | None = None, retries: bool = False,
          **options) -> CodexAgent:
    opts = {"binary": agent_cli("codex"), "retry_max_wait_s": 0.5, **options}
    if srv is not None:
        opts.setdefault("base_url", srv.openai_base_url)
    if not retries:  # the CLI's own retries off, so a scripted fault reaches the backend's retry policy
        opts["extra_args"] = [*opts.get("extra_args", []), "-c", "model_providers.autoharness.request_max_retries=0",
                              "-c", "model_providers.autoharness.stream_max_retries=0"]
    keys = {"OPENAI_API_KEY": SECRET, **(env or {})}
    return CodexAgent(BackendConfig(kind="codex", model=model, options=opts, env=keys), ROOT)


def always(step: dict):
    return lambda api, body: step


# ------------------------------------------------------------------ claude-code


@pytest.mark.slow
def test_claude_code_edits_through_its_own_tools(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A parent Claude Code session's variables must not reach the run (the CLI sets its own for its tools).
    monkeypatch.setenv("CLAUDE_CODE_ENTRYPOINT", "parent-session")
    monkeypatch.setenv("CLAUDE_CODE_SSE_PORT", "54321")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(repo.parent / "users-own-claude-config"))
    greet = str(repo / "agent" / "greet.py")
    script = [
        {"text": "Looking first.", "tool_calls": [{"name": "Read", "input": {"file_path": greet}}]},
        {"tool_calls": [{"name": "Edit", "input": {"file_path": greet, "old_string": "'hey'", "new_string": "'hello'"}}]},
        {"tool_calls": [{"name": "Write", "input": {"file_path": str(repo / "agent" / "polite.py"),
                                                    "content": "WORD = 'please'\n"}}]},
        {"tool_calls": [{"name": "Bash", "input": {"command": "python3 -c 'import agent.greet as g; print(g.greet())'"
                                                   " > agent/out.txt && env > agent/env.txt"}}]},
        {"text": FINAL + f" (the key was {SECRET})", "usage": {"input_tokens": 1000, "output_tokens": 200}},
    ]
    req = request(repo)
    with ScriptedServer(script) as srv:
        agent = claude(srv, model="claude-sonnet-4-5", max_turns=10, env={"MY_SERVICE_TOKEN": "tok-secret-987654"})
        proposal = agent.propose(req)
        sent = srv.completions("anthropic")
    assert proposal.status is ProposalStatus.OK, proposal.error
    assert (repo / "agent" / "greet.py").read_text() == "def greet():\n    return 'hello'\n"
    assert (repo / "agent" / "polite.py").read_text() == "WORD = 'please'\n"
    assert (repo / "agent" / "out.txt").read_text() == "hello\n"  # Bash ran in the worktree
    assert proposal.summary == FINAL + f" (the key was {SECRET})"
    assert proposal.usage.input_tokens == 4 * 100 + 1000 and proposal.usage.output_tokens == 4 * 20 + 200
    assert isinstance(proposal.cost_usd, float) and proposal.cost_usd > 0  # the CLI's total_cost_usd
    assert (proposal.backend, proposal.model) == ("claude-code", "claude-sonnet-4-5")
    assert len(sent) == 5 and all(r["body"]["model"] == "claude-sonnet-4-5" for r in sent)
    assert "rude greeting" in json.dumps(sent[0]["body"]["messages"])
    assert "return 'hey'" in json.dumps(sent[1]["body"]["messages"])  # the Read result went back
    child_env = dict(line.split("=", 1) for line in (repo / "agent" / "env.txt").read_text().splitlines()
                     if "=" in line)
    assert child_env.get("CLAUDE_CODE_ENTRYPOINT") != "parent-session" and "CLAUDE_CODE_SSE_PORT" not in child_env
    # A fresh home and config dir: none of the user's settings, memory or MCP servers; gone afterwards.
    assert Path(child_env["HOME"]).name.startswith(".claude-code-home-") and not Path(child_env["HOME"]).exists()
    assert child_env["CLAUDE_CONFIG_DIR"] == child_env["HOME"] + "/.claude"
    assert not (repo.parent / "users-own-claude-config").exists()
    log = req.transcript_path.read_text()
    assert SECRET not in log and "tok-secret-987654" not in log and "[REDACTED]" in log
    assert ours(req) == ["start", "attempt", "end"]
    assert [e["type"] for e in events(req) if "type" in e][-1] == "result"
    assert {" M agent/greet.py", "?? agent/polite.py", "?? agent/out.txt"} <= status(repo)


@pytest.mark.slow
def test_claude_code_stops_at_the_budget_and_restores_the_worktree(repo: Path) -> None:
    script = [{"tool_calls": [{"name": "Bash", "input": {"command": "echo spent >> notes.txt"}}],
               "usage": {"input_tokens": 2_000_000, "output_tokens": 1000}},
              {"text": "never reached"}]
    req = request(repo, max_cost_usd=0.5)
    with ScriptedServer(script) as srv:
        proposal = claude(srv).propose(req)
    assert proposal.status is ProposalStatus.OVER_BUDGET and proposal.error_class == "over_budget"
    assert proposal.cost_usd is not None and proposal.cost_usd > 0.5
    assert status(repo) == UNTOUCHED and (repo / "notes.txt").read_text() == "notes\n"
    assert ours(req)[-2:] == ["restored", "end"]


@pytest.mark.slow
def test_claude_code_turn_limit_keeps_the_edits_for_the_gate(repo: Path) -> None:
    script = [{"text": "First step.", "tool_calls": [{"name": "Bash", "input": {"command": "echo one >> notes.txt"}}]},
              {"tool_calls": [{"name": "Bash", "input": {"command": "echo two >> notes.txt"}}]},
              {"text": "never reached"}]
    with ScriptedServer(script) as srv:
        proposal = claude(srv, max_turns=1).propose(request(repo))
    assert proposal.status is ProposalStatus.OK and "turns" in proposal.error
    assert proposal.summary == "First step."
    assert (repo / "notes.txt").read_text() == "notes\none\n"


@pytest.mark.slow
def test_claude_code_retries_transient_faults_from_a_clean_worktree(repo: Path) -> None:
    append = {"tool_calls": [{"name": "Bash", "input": {"command": "echo once >> notes.txt && touch agent/new.py"}}]}
    script = [{"fault": "429"}, append, {"fault": "500"}, append, {"text": "done"}]
    req = request(repo)
    with ScriptedServer(script) as srv:
        proposal = claude(srv, attempts=3).propose(req)
    assert proposal.status is ProposalStatus.OK, proposal.error
    # The second attempt's edit was undone before the third: one line, not two.
    assert (repo / "notes.txt").read_text() == "notes\nonce\n"
    assert status(repo) == UNTOUCHED | {" M notes.txt", "?? agent/new.py"}
    marks = ours(req)
    assert marks.count("attempt") == 3 and marks.count("retry") == 2
    assert [e["error_class"] for e in events(req) if e.get("event") == "retry"] == ["rate_limit", "overloaded"]


@pytest.mark.slow
def test_claude_code_persistent_server_errors_end_in_error_with_the_worktree_as_given(repo: Path) -> None:
    append = {"tool_calls": [{"name": "Bash", "input": {"command": "echo once >> notes.txt"}}]}
    with ScriptedServer([append, {"fault": "500"}, {"fault": "500"}]) as srv:
        proposal = claude(srv, attempts=2).propose(request(repo))
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "overloaded"
    assert "500" in proposal.error
    assert status(repo) == UNTOUCHED


@pytest.mark.slow
def test_claude_code_auth_failure_is_not_retried(repo: Path) -> None:
    req = request(repo)
    with ScriptedServer(responder=always({"fault": "401"})) as srv:
        proposal = claude(srv, attempts=3).propose(req)
        n_requests = len(srv.completions())
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "auth"
    assert ours(req).count("attempt") == 1 and n_requests == 1
    assert proposal.cost_usd == 0.0  # a refused request costs nothing, and the CLI says so


@pytest.mark.slow
def test_claude_code_context_overflow_is_classified(repo: Path) -> None:
    with ScriptedServer([{"fault": "context"}]) as srv:
        proposal = claude(srv).propose(request(repo))
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "context_window"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["server", "tool"])
def test_claude_code_timeout_leaves_no_process_behind(repo: Path, where: str) -> None:
    marker = f"AUTOHARNESS_TEST_{uuid.uuid4().hex}"
    first = {"fault": "hang"} if where == "server" else \
        {"tool_calls": [{"name": "Bash", "input": {"command": "echo started >> notes.txt; sleep 600"}}]}
    req = request(repo, timeout_s=20)  # node starts, asks, runs the tool well inside it, even loaded
    with ScriptedServer([first, {"text": "late"}]) as srv:
        proposal, slept = propose_watching(claude(srv, env={marker: "1"}), req, marker)
        assert survivors(marker) == []  # the CLI and the sleep it started are gone
    assert slept == (where == "tool")
    assert proposal.status is ProposalStatus.TIMEOUT and proposal.error_class == "timeout"
    assert proposal.cost_usd is None  # a killed run's spending is unknown
    assert status(repo) == UNTOUCHED
    assert ours(req) == ["start", "attempt", "restored", "end"]


@pytest.mark.slow
def test_claude_code_crash_is_bad_output(repo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake-claude"
    fake.write_text("#!/bin/sh\necho 'garbage {not json'\necho 'Segmentation fault' >&2\nexit 1\n")
    fake.chmod(0o755)
    req = request(repo)
    proposal = claude(None, binary=str(fake), base_url="http://127.0.0.1:9").propose(req)
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "bad_output"
    assert "exited 1" in proposal.error and "Segmentation fault" in proposal.error
    assert ours(req).count("attempt") == 1  # a crash is not transient
    assert "garbage {not json" in req.transcript_path.read_text()  # the raw stream is kept for the morning


@pytest.mark.slow
def test_claude_code_doctor(repo: Path) -> None:
    with ScriptedServer() as srv:
        checks = {c.name: c for c in claude(srv).check()}
    assert all(c.ok for c in checks.values()), checks
    assert "(Claude Code)" in checks["claude-code: CLI"].detail
    missing = ClaudeCodeAgent(BackendConfig(kind="claude-code", options={"binary": "no-such-claude"}), ROOT).check()
    assert [(c.ok, c.fatal) for c in missing] == [(False, True)]


# ------------------------------------------------------------------ codex

PATCH = """*** Begin Patch
*** Update File: agent/greet.py
@@
 def greet():
-    return 'hey'
+    return 'hello'
*** Add File: agent/polite.py
+WORD = 'please'
*** End Patch
"""


@pytest.mark.slow
def test_codex_edits_through_apply_patch_and_exec_command(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_HOME", str(repo.parent / "users-own-codex-home"))  # must not be used
    script = [
        {"text": "Patching.", "tool_calls": [{"name": "apply_patch", "input": PATCH}]},
        {"tool_calls": [{"name": "exec_command", "input": {
            "cmd": "python3 -c 'import agent.greet as g; print(g.greet())' > agent/out.txt"}}]},
        {"text": FINAL + f" (the key was {SECRET})",
         "usage": {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 4000}},
    ]
    req = request(repo)
    with ScriptedServer(script) as srv:
        proposal = codex(srv, prices=PRICES).propose(req)
        sent = srv.completions("responses")
    assert proposal.status is ProposalStatus.OK, proposal.error
    assert (repo / "agent" / "greet.py").read_text() == "def greet():\n    return 'hello'\n"
    assert (repo / "agent" / "polite.py").read_text() == "WORD = 'please'\n"
    assert (repo / "agent" / "out.txt").read_text() == "hello\n"
    assert proposal.summary == FINAL + f" (the key was {SECRET})"
    assert proposal.usage.input_tokens == 2 * 100 + 1000 and proposal.usage.cache_read_tokens == 4000
    assert proposal.usage.output_tokens == 2 * 20 + 200
    assert proposal.cost_usd == pytest.approx((1200 * 3.0 + 4000 * 3.0 + 240 * 15.0) / 1e6)
    assert len(sent) == 3 and all(r["body"]["model"] == "gpt-5.5" for r in sent)
    assert "rude greeting" in json.dumps(sent[0]["body"]["input"])
    assert not (repo.parent / "users-own-codex-home").exists()
    log = req.transcript_path.read_text()
    assert SECRET not in log and "[REDACTED]" in log
    assert ours(req) == ["start", "attempt", "end"]
    kinds = [e.get("type") for e in events(req)]
    assert "turn.completed" in kinds and kinds.count("item.completed") >= 3
    assert {" M agent/greet.py", "?? agent/polite.py", "?? agent/out.txt"} <= status(repo)


@pytest.mark.slow
def test_codex_cost_from_the_price_table_or_none(repo: Path) -> None:
    with ScriptedServer([{"text": "a"}, {"text": "b"}], usage={"input_tokens": 1000, "output_tokens": 100}) as srv:
        known = codex(srv, model="gpt-5").propose(request(repo))
        unknown = codex(srv, model="my-local-model").propose(request(repo, max_cost_usd=1e-9))
    assert known.status is ProposalStatus.OK and known.cost_usd is not None and known.cost_usd > 0
    # Unknown stays None, never 0, and a cap it cannot measure does not stop the work.
    assert unknown.status is ProposalStatus.OK and unknown.cost_usd is None and unknown.summary == "b"


@pytest.mark.slow
def test_codex_over_budget_restores_the_worktree(repo: Path) -> None:
    script = [{"tool_calls": [{"name": "exec_command", "input": {"cmd": "echo spent >> notes.txt"}}]},
              {"text": "done", "usage": {"input_tokens": 1_000_000, "output_tokens": 10}}]
    with ScriptedServer(script) as srv:
        proposal = codex(srv, prices=PRICES).propose(request(repo, max_cost_usd=1.0))
    assert proposal.status is ProposalStatus.OVER_BUDGET and proposal.cost_usd == pytest.approx(3.0 + 30 * 15e-6, rel=1e-3)
    assert status(repo) == UNTOUCHED


@pytest.mark.slow
def test_codex_retries_transient_faults_from_a_clean_worktree(repo: Path) -> None:
    append = {"tool_calls": [{"name": "exec_command", "input": {"cmd": "echo once >> notes.txt"}}]}
    script = [{"fault": "429"}, append, {"fault": "cut"}, append, {"text": "done"}]
    req = request(repo)
    with ScriptedServer(script) as srv:
        proposal = codex(srv, attempts=3).propose(req)
    assert proposal.status is ProposalStatus.OK, proposal.error
    assert (repo / "notes.txt").read_text() == "notes\nonce\n"
    assert [e["error_class"] for e in events(req) if e.get("event") == "retry"] == ["rate_limit", "connection"]


@pytest.mark.slow
def test_codex_own_retries_absorb_a_short_outage(repo: Path) -> None:
    with ScriptedServer([{"fault": "500"}, {"fault": "429"}, {"text": "done"}]) as srv:
        proposal = codex(srv, retries=True).propose(req := request(repo))
    assert proposal.status is ProposalStatus.OK and proposal.summary == "done"
    assert ours(req).count("attempt") == 1


@pytest.mark.slow
def test_codex_persistent_errors_end_in_error(repo: Path) -> None:
    with ScriptedServer(responder=always({"fault": "overloaded"})) as srv:
        proposal = codex(srv, attempts=2).propose(request(repo))
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "overloaded"
    assert status(repo) == UNTOUCHED


@pytest.mark.slow
def test_codex_auth_failure_is_not_retried(repo: Path) -> None:
    req = request(repo)
    with ScriptedServer(responder=always({"fault": "401"})) as srv:
        proposal = codex(srv, attempts=3).propose(req)
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "auth"
    assert ours(req).count("attempt") == 1


@pytest.mark.slow
def test_codex_timeout_leaves_no_process_behind(repo: Path) -> None:
    marker = f"AUTOHARNESS_TEST_{uuid.uuid4().hex}"
    script = [{"tool_calls": [{"name": "exec_command", "input": {"cmd": "echo started >> notes.txt; sleep 600",
                                                                  "yield_time_ms": 500}}]},
              {"fault": "hang"}]
    req = request(repo, timeout_s=20)  # codex starts, asks, runs the tool well inside it, even loaded
    with ScriptedServer(script) as srv:
        proposal, slept = propose_watching(codex(srv, env={marker: "1"}), req, marker)
        assert survivors(marker) == []  # codex and the sleep it started in its sandbox are gone
    assert slept
    assert proposal.status is ProposalStatus.TIMEOUT and proposal.cost_usd is None
    assert status(repo) == UNTOUCHED


@pytest.mark.slow
def test_codex_crash_is_bad_output(repo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake-codex"
    fake.write_text("#!/bin/sh\necho '{\"type\": \"thread.started\"'\necho 'panic: boom' >&2\nexit 1\n")
    fake.chmod(0o755)
    proposal = codex(None, binary=str(fake), base_url="http://127.0.0.1:9").propose(request(repo))
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "bad_output"
    assert "panic: boom" in proposal.error


@pytest.mark.slow
def test_codex_doctor_checks_the_sandbox(repo: Path) -> None:
    with ScriptedServer() as srv:
        checks = {c.name: c for c in codex(srv).check()}
    assert all(c.ok for c in checks.values()), checks
    assert checks["codex: sandbox"].detail == "workspace-write works here"
