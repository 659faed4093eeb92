"""End to end through the real CLI: `baseline` then `run --once`, with the anthropic and openai backends
driving the real SDKs against the scripted model server, whose tool calls make the change the gate accepts."""

from __future__ import annotations

import json

import pytest

from agents.scripted_server import ScriptedServer
from tests.toy import cli, make_toy, tsv

TASKS = {"tr-alpha-0": "alpha", "tr-beta-1": "beta", "va-alpha-0": "alpha", "va-beta-1": "beta",
         "te-beta-0": "beta", "te-alpha-1": "alpha"}
SPLIT = {"train": ["tr-alpha-0", "tr-beta-1"], "val": ["va-alpha-0", "va-beta-1"], "test": ["te-beta-0", "te-alpha-1"]}
KEY = "sk-e2e-secret-0123456789"

SCRIPT = [
    {"text": "Reading the traces first.",
     "tool_calls": [{"name": "bash", "input": {"command": "ls .autoharness/traces && cat .autoharness/traces/*.json"}}]},
    {"tool_calls": [{"name": "str_replace_based_edit_tool", "input": {"command": "view", "path": "agent/skills.py"}}]},
    {"tool_calls": [{"name": "str_replace_based_edit_tool", "input": {
        "command": "str_replace", "path": "agent/skills.py", "old_str": "['alpha']", "new_str": "['alpha', 'beta']"}}]},
    {"text": "HYPOTHESIS: the agent lacks the beta skill.\nCHANGE: taught it beta."},
]


@pytest.mark.parametrize("backend", ["anthropic", "openai-responses", "openai-chat"])
def test_model_tool_calls_become_an_accepted_commit(tmp_path, backend: str) -> None:
    with ScriptedServer(SCRIPT, usage={"input_tokens": 2000, "output_tokens": 300}) as srv:
        kind, _, api = backend.partition("-")
        url = srv.base_url if kind == "anthropic" else srv.openai_base_url
        options = f'base_url = "{url}"\nprices = {{input_per_mtok = 3.0, output_per_mtok = 15.0}}\nretry_max_wait_s = 1.0'
        if api:
            options += f'\napi = "{api}"'
        toy = make_toy(tmp_path, TASKS, SPLIT, backend=f'kind = "{kind}"\nmodel = "scripted-model"\n'
                                                          f'[backend.options]\n{options}')
        env = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY}
        cli(toy, "baseline", env=env)
        cli(toy, "run", "--once", env=env)
        sent = srv.completions()

    row = tsv(toy)[1]
    assert row["decision"] == "accepted", row
    assert row["backend"] == kind and float(row["cost_usd"]) == pytest.approx(4 * (2000 * 3 + 300 * 15) / 1e6)
    # The commit on the branch is the model's edit, and only that.
    assert toy.git("show", "autoharness:agent/skills.py").strip() == "KNOWN = ['alpha', 'beta']"
    assert toy.git("diff", "--name-only", "main", "autoharness").splitlines() == ["agent/skills.py"]
    assert toy.git("show", "main:agent/skills.py").strip() == "KNOWN = ['alpha']"

    assert len(sent) == 4
    first = json.dumps(sent[0]["body"])
    assert "tr-beta-1" in first and "does not know the skill" in first  # the train failure digest
    everything = json.dumps([r["body"] for r in sent])
    assert '"tr-beta-1"' in everything or "tr-beta-1.json" in everything  # the model read a train trace
    for held_out in ("va-", "te-", "SECRET-DETAIL-va", "SECRET-DETAIL-te"):
        assert held_out not in everything, held_out
    transcript = (toy.workspace / "iterations" / "1" / "transcript.jsonl").read_text()
    assert '"event": "end"' in transcript and KEY not in transcript
