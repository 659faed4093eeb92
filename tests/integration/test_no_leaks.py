"""Secrets and held-out ids never flow back: what a coding agent says, streams or tries to commit passes the
scrubber before it is written anywhere (records, learnings, the next prompt, commit messages, transcripts,
diffs, the report). Played through the real loop (`baseline`, then `run --once`), with a toy backend that
repeats what it was handed and with the anthropic backend whose model (the scripted server) does the same."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agents.claude_code import ClaudeCodeAgent
from agents.scripted_server import ScriptedServer
from orchestrator.core.config import BackendConfig
from orchestrator.core.contracts import Proposal, ProposalStatus
from orchestrator.core.proc import run_process
from orchestrator.core.scrub import HELD_OUT, REDACTED
from tests.cli_backends import ROOT, cli_repo, request
from tests.toy import SPLIT, TASKS, Toy, cli, make_toy, skills_file, tsv

GATEWAY = "gw-9f8e7d6c5b4a"          # handed in [backend.env] under a name that does not say "secret"
KEY = "sk-toy-0123456789abcdef"      # an API key in the environment: a secret by name
MARK = "LEAKED-ID:"                  # what the agent writes right before a val task id
LEAKED_ID = MARK + "va-beta-1"
ENV = {"TOY_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}
GATEWAY_ENV = f'[backend.env]\nGATEWAY_AUTH = "{GATEWAY}"\n'


class LeakyAgent:
    """A coding agent that repeats what it should not, in its final message, its raw stream and its error:
    the gateway value it was handed and a val task id. In iteration 1 its diff also adds the API key (the guard
    rejects it); iteration 2 is a real improvement (accepted, so committed); iteration 3 fails."""

    def __init__(self, config, config_dir):
        self.gateway = config.env["GATEWAY_AUTH"]

    def propose(self, request):
        said = f"HYPOTHESIS: beta is missing; the gateway {self.gateway} says {LEAKED_ID} fails.\nCHANGE: taught beta."
        # A backend that redacts nothing itself, as a raw CLI stream tee'd to the transcript would be.
        request.transcript_path.write_text(json.dumps({"type": "assistant", "text": said}) + "\n")
        if request.iteration == 3:
            return Proposal(ProposalStatus.ERROR, error=f"gateway {self.gateway} refused {LEAKED_ID}",
                            error_class="bad_output", transcript=request.transcript_path)
        skills = skills_file("alpha", "beta")
        if request.iteration == 1:
            skills += f"TOKEN = {os.environ['TOY_API_KEY']!r}  # via {self.gateway}\n"
        (request.worktree / "agent" / "skills.py").write_text(skills)
        return Proposal(ProposalStatus.OK, summary=said, cost_usd=0.0, transcript=request.transcript_path)

    def check(self):
        return []


def leaks(toy: Toy, needles: list[str]) -> list[str]:
    """Where any needle is kept: every file of the workspace (state.db and its WAL as bytes) and everything
    the target's git holds (every ref's messages and patches)."""
    found = [f"{p.relative_to(toy.workspace)}: {n}" for p in sorted(toy.workspace.rglob("*")) if p.is_file()
             for n in needles if n.encode() in p.read_bytes()]
    history = toy.git("log", "--all", "-p", "--format=%H%n%B")
    return found + [f"git history: {n}" for n in needles if n in history]


def test_what_the_agent_repeats_is_kept_nowhere(tmp_path: Path) -> None:
    toy = make_toy(tmp_path, TASKS, SPLIT, backend='kind = "tests.integration.test_no_leaks:LeakyAgent"\n'
                                                    + GATEWAY_ENV)
    cli(toy, "baseline", env=ENV)
    for _ in range(3):
        cli(toy, "run", "--once", env=ENV)
    cli(toy, "report", env=ENV)

    assert [r["decision"] for r in tsv(toy)] == ["baseline", "rejected", "accepted", "error"]
    assert "secret" in tsv(toy)[1]["reason"]  # the guard saw the key in the diff
    assert leaks(toy, [GATEWAY, KEY, LEAKED_ID]) == []
    # The texts did flow, scrubbed: learnings, the next prompts, the commit message, the transcript, the diff.
    scrubbed = f"the gateway {REDACTED} says {MARK}{HELD_OUT} fails"
    ws = toy.workspace
    assert scrubbed in (ws / "learnings.md").read_text()
    assert all(scrubbed in (ws / "iterations" / n / "prompt.md").read_text() for n in ("2", "3"))
    assert scrubbed in toy.git("log", "-1", "--format=%B", "autoharness")
    assert scrubbed in (ws / "iterations" / "1" / "transcript.jsonl").read_text()
    assert f"TOKEN = '{REDACTED}'  # via {REDACTED}" in (ws / "iterations" / "1" / "diff.patch").read_text()
    assert f"gateway {REDACTED} refused {MARK}{HELD_OUT}" in tsv(toy)[3]["reason"]
    assert scrubbed in (ws / "report.html").read_text()


SCRIPT = [
    {"tool_calls": [{"name": "bash", "input": {"command": "echo gateway=$GATEWAY_AUTH"}}]},
    {"tool_calls": [{"name": "str_replace_based_edit_tool", "input": {
        "command": "str_replace", "path": "agent/skills.py", "old_str": "['alpha']", "new_str": "['alpha', 'beta']"}}]},
    {"text": f"HYPOTHESIS: beta is missing ({LEAKED_ID} shows it).\nCHANGE: taught beta. "
             f"Key {KEY}, gateway {GATEWAY}."},
]


def test_a_model_that_repeats_its_key_through_the_anthropic_backend(tmp_path: Path) -> None:
    with ScriptedServer(SCRIPT) as srv:
        toy = make_toy(tmp_path, TASKS, SPLIT, backend=(
            f'kind = "anthropic"\nmodel = "scripted-model"\n[backend.options]\nbase_url = "{srv.base_url}"\n'
            f'prices = {{input_per_mtok = 3.0, output_per_mtok = 15.0}}\n' + GATEWAY_ENV))
        cli(toy, "baseline", env=ENV)
        cli(toy, "run", "--once", env=ENV)
        sent = json.dumps([r["body"] for r in srv.completions()])

    assert tsv(toy)[1]["decision"] == "accepted", tsv(toy)[1]
    assert f"gateway={GATEWAY}" in sent  # the model's shell saw the value: it is the model's to repeat
    assert leaks(toy, [GATEWAY, KEY, LEAKED_ID]) == []
    message = toy.git("log", "-1", "--format=%B", "autoharness")
    assert f"({MARK}{HELD_OUT} shows it)" in message and f"Key {REDACTED}, gateway {REDACTED}." in message
    assert f"gateway={REDACTED}" in (toy.workspace / "iterations" / "1" / "transcript.jsonl").read_text()


def test_the_live_tee_hides_the_values_it_is_given(tmp_path: Path) -> None:
    tee = tmp_path / "transcript.jsonl"
    res = run_process(["sh", "-c", "echo gateway=$GATEWAY_AUTH"], env={**os.environ, "GATEWAY_AUTH": GATEWAY},
                      tee=tee, secrets=[GATEWAY])
    assert res.stdout == tee.read_text() == f"gateway={REDACTED}\n"


def test_a_cli_backend_tees_its_stream_without_the_values_it_was_handed(tmp_path: Path) -> None:
    """Before the orchestrator rewrites the transcript: a killed run's transcript is safe too."""
    fake = tmp_path / "claude"
    fake.write_text('#!/bin/sh\necho "{\\"type\\": \\"system\\", \\"note\\": \\"$GATEWAY_AUTH\\"}"\n')
    fake.chmod(0o755)
    agent = ClaudeCodeAgent(BackendConfig(kind="claude-code", options={"binary": str(fake), "attempts": 1},
                                          env={"ANTHROPIC_API_KEY": KEY, "GATEWAY_AUTH": GATEWAY}), ROOT)
    req = request(cli_repo(tmp_path))
    proposal = agent.propose(req)
    transcript = req.transcript_path.read_text()
    assert f'"note": "{REDACTED}"' in transcript and GATEWAY not in transcript
    assert GATEWAY not in proposal.error
