"""The bubblewrap sandbox around the real coding-agent CLIs (`.ci/install-clis.sh`): claude-code and codex,
driven by the scripted model server, see the worktree, not the benchmark, the records or the checkout."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from agents.scripted_server import ScriptedServer
from tests.helpers import agent_cli, need_bwrap
from tests.toy import SPLIT, TASKS, cli, make_toy, tsv


@pytest.fixture(autouse=True)
def _bwrap():
    need_bwrap()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["claude-code", "codex"])
def test_real_cli_in_the_sandbox(tmp_path, kind):
    binary = agent_cli("claude" if kind == "claude-code" else "codex")
    toy = make_toy(tmp_path, TASKS, SPLIT, backend='kind = "replay"')  # replaced below, once paths are known
    token = uuid.uuid4().hex[:6]
    peek = (f"cat {toy.bench / 'tasks.json'}; ls {toy.workspace}; cat {toy.target / 'README.md'}; "
            f"echo PROCS=$(ls -d /proc/[0-9]* | wc -l); setsid nohup sleep 3141.{token} >/dev/null 2>&1 &")
    final = {"text": "HYPOTHESIS: beta was missing.\nCHANGE: taught beta."}
    if kind == "claude-code":
        script = [
            {"tool_calls": [{"name": "Bash", "input": {"command": peek}}]},
            {"tool_calls": [{"name": "Read", "input": {"file_path": "agent/skills.py"}}]},
            {"tool_calls": [{"name": "Edit", "input": {"file_path": "agent/skills.py", "old_string": "['alpha']",
                                                       "new_string": "['alpha', 'beta']"}}]},
            final,
        ]
    else:
        script = [
            {"tool_calls": [{"name": "exec_command", "input": {"cmd": peek}}]},
            {"tool_calls": [{"name": "apply_patch", "input": "*** Begin Patch\n*** Update File: agent/skills.py\n@@\n"
                             "-KNOWN = ['alpha']\n+KNOWN = ['alpha', 'beta']\n*** End Patch\n"}]},
            final,
        ]
    with ScriptedServer(script) as srv:
        url, model = (srv.base_url, "claude-sonnet-4-5") if kind == "claude-code" else (srv.openai_base_url, "gpt-5.5")
        toy.config.write_text(toy.config.read_text().replace('kind = "replay"', (
            f'kind = "{kind}"\nmodel = "{model}"\n[backend.options]\n'
            f'binary = "{binary}"\nbase_url = "{url}"\nretry_max_wait_s = 1.0')))
        env = {"ANTHROPIC_API_KEY": "sk-sandbox-test-0123456789", "OPENAI_API_KEY": "sk-sandbox-test-0123456789"}
        cli(toy, "baseline", env=env)
        cli(toy, "run", "--once", env=env)
        sent = srv.completions()
    assert tsv(toy)[1]["decision"] == "accepted"
    assert toy.git("show", "autoharness:agent/skills.py").strip() == "KNOWN = ['alpha', 'beta']"
    seen = json.dumps(sent[1]["body"])
    assert "No such file" in seen and "tr-alpha-0" not in seen and "toy agent" not in seen
    # The CLI's own processes only, and nothing it started outlives it (setsid or not).
    assert int(re.search(r"PROCS=(\d+)", seen).group(1)) < 30
    assert not [p for p in Path("/proc").glob("[0-9]*") if f"3141.{token}".encode() in _cmdline(p)]


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
