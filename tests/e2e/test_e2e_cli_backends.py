"""End to end through autoharness's own CLI: `baseline` then `run --once`, with the claude-code and codex
backends running the real coding-agent CLIs against the scripted model server, whose tool calls (the CLIs'
own Bash/Read/Edit, exec_command/apply_patch) make the change the gate accepts."""

from __future__ import annotations

import json

import pytest

from agents.scripted_server import ScriptedServer
from tests.helpers import agent_cli
from tests.toy import cli, make_toy, tsv

TASKS = {"tr-alpha-0": "alpha", "tr-beta-1": "beta", "va-alpha-0": "alpha", "va-beta-1": "beta",
         "te-beta-0": "beta", "te-alpha-1": "alpha"}
SPLIT = {"train": ["tr-alpha-0", "tr-beta-1"], "val": ["va-alpha-0", "va-beta-1"], "test": ["te-beta-0", "te-alpha-1"]}
HELD_OUT = ("va-alpha-0", "va-beta-1", "te-beta-0", "te-alpha-1", "SECRET-DETAIL-va", "SECRET-DETAIL-te")
KEY = "sk-e2e-secret-0123456789"
FINAL = "HYPOTHESIS: the agent lacks the beta skill.\nCHANGE: taught it beta."
READ_TRACES = "ls .autoharness/traces && cat .autoharness/traces/*.json"

SCRIPTS = {
    "claude-code": [
        {"text": "Reading the traces first.", "tool_calls": [{"name": "Bash", "input": {"command": READ_TRACES}}]},
        {"tool_calls": [{"name": "Read", "input": {"file_path": "agent/skills.py"}}]},
        {"tool_calls": [{"name": "Edit", "input": {"file_path": "agent/skills.py", "old_string": "['alpha']",
                                                   "new_string": "['alpha', 'beta']"}}]},
        {"text": FINAL},
    ],
    "codex": [
        {"text": "Reading the traces first.", "tool_calls": [{"name": "exec_command", "input": {"cmd": READ_TRACES}}]},
        {"tool_calls": [{"name": "apply_patch", "input": "*** Begin Patch\n*** Update File: agent/skills.py\n@@\n"
                         "-KNOWN = ['alpha']\n+KNOWN = ['alpha', 'beta']\n*** End Patch\n"}]},
        {"text": FINAL},
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["claude-code", "codex"])
def test_cli_backend_tool_calls_become_an_accepted_commit(tmp_path, kind: str) -> None:
    binary = agent_cli("claude" if kind == "claude-code" else "codex")
    with ScriptedServer(SCRIPTS[kind], usage={"input_tokens": 2000, "output_tokens": 300}) as srv:
        url = srv.base_url if kind == "claude-code" else srv.openai_base_url
        model = "claude-sonnet-4-5" if kind == "claude-code" else "gpt-5.5"
        options = f'binary = "{binary}"\nbase_url = "{url}"\nretry_max_wait_s = 1.0'
        if kind == "codex":
            options += "\nprices = {input_per_mtok = 3.0, output_per_mtok = 15.0}"
        toy = make_toy(tmp_path, TASKS, SPLIT, backend=f'kind = "{kind}"\nmodel = "{model}"\n'
                                                          f'[backend.options]\n{options}')
        env = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY}
        cli(toy, "baseline", env=env)
        cli(toy, "run", "--once", env=env)
        sent = srv.completions()

    row = tsv(toy)[1]
    assert row["decision"] == "accepted", row
    assert row["backend"] == kind
    steps = len(SCRIPTS[kind])
    if kind == "claude-code":
        assert float(row["cost_usd"]) > 0  # Claude Code's own total_cost_usd
    else:
        assert float(row["cost_usd"]) == pytest.approx(steps * (2000 * 3 + 300 * 15) / 1e6)
    # The commit on the branch is the model's edit, and only that.
    assert toy.git("show", "autoharness:agent/skills.py").strip() == "KNOWN = ['alpha', 'beta']"
    assert toy.git("diff", "--name-only", "main", "autoharness").splitlines() == ["agent/skills.py"]
    assert toy.git("show", "main:agent/skills.py").strip() == "KNOWN = ['alpha']"
    assert FINAL.splitlines()[0] in (toy.workspace / "learnings.md").read_text()

    assert len(sent) == steps
    first = json.dumps(sent[0]["body"])
    assert "tr-beta-1" in first and "does not know the skill" in first  # the train failure digest
    # The model read a train trace through the CLI's shell tool: its content came back in the next request.
    unescaped = [json.dumps(r["body"]).replace('\\"', '"') for r in sent]
    assert '"need": "beta"' not in unescaped[0] and '"need": "beta"' in unescaped[1]
    everything = json.dumps([r["body"] for r in sent])
    for held_out in HELD_OUT:
        assert held_out not in everything, held_out
    transcript = (toy.workspace / "iterations" / "1" / "transcript.jsonl").read_text()
    assert '"event": "end"' in transcript and KEY not in transcript
