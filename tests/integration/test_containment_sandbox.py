"""Attacks on the sandbox, played by a model through the real anthropic SDK and the API loop's bash tool
(scripted model server): with the default sandbox it sees no other process (no `/proc/<pid>/root` into
hidden folders, no `/proc/<pid>/environ` with the daemon's key), writes nothing outside its checkout, and
nothing it starts outlives the proposal, `setsid` or not."""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path

from agents.scripted_server import ScriptedServer
from tests.helpers import need_bwrap
from tests.toy import SPLIT, TASKS, cli, make_toy, tsv

KEY = "sk-ant-containment-0123456789abcdef"


def probes(toy, token: str) -> str:
    return f"""
echo "PROCS=$(ls -d /proc/[0-9]* | wc -l)"
for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done | grep -c sk-ant- || true
cat /proc/*/root{toy.bench}/tasks.json 2>&1 | head -c 300
cat {toy.bench}/tasks.json {toy.workspace}/splits.json 2>&1 | head -c 300
echo pwned > {toy.target}/pwned-{token} 2>&1
echo pwned > {toy.workspace}/pwned-{token} 2>&1
echo pwned > $HOME/pwned-{token} 2>&1
echo pwned > /tmp/pwned-{token} 2>&1
ls /tmp
setsid nohup sleep 3141.{token[:4]} > /dev/null 2>&1 &
nohup sleep 2718.{token[:4]} > /dev/null 2>&1 &
echo "DONE""PROBING"
"""


def sleepers(token: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and (f"3141.{token[:4]}".encode() in cmd or f"2718.{token[:4]}".encode() in cmd):
            found.append(proc.name)
    return found


def test_a_model_with_a_shell_stays_inside(tmp_path):
    need_bwrap()
    token = uuid.uuid4().hex
    (Path("/tmp") / f"host-marker-{token}").write_text("the host's /tmp")
    try:
        toy = make_toy(tmp_path, TASKS, SPLIT, backend='kind = "anthropic"\nmodel = "scripted-model"\n'
                                                       '[backend.options]\nbase_url = "BASE"\nretry_max_wait_s = 1.0')
        script = [
            {"tool_calls": [{"name": "bash", "input": {"command": probes(toy, token)}}]},
            {"tool_calls": [{"name": "str_replace_based_edit_tool", "input": {
                "command": "str_replace", "path": "agent/skills.py", "old_str": "['alpha']", "new_str": "['alpha', 'beta']"}}]},
            {"text": "HYPOTHESIS: beta was missing. CHANGE: taught beta."},
        ]
        with ScriptedServer(script) as srv:
            toy.config.write_text(toy.config.read_text().replace("BASE", srv.base_url))
            env = {"ANTHROPIC_API_KEY": KEY}
            cli(toy, "baseline", env=env)
            cli(toy, "run", "--once", env=env)
            sent = srv.completions()
        row = tsv(toy)[1]
        assert row["decision"] == "accepted", row
        seen = json.dumps(sent[1]["body"])  # the request after the probes: what the shell printed
        assert "DONEPROBING" in seen
        assert int(re.search(r"PROCS=(\d+)", seen).group(1)) <= 10  # its own few processes, not the host's
        assert KEY not in json.dumps([r["body"] for r in sent])
        assert "SECRET-DETAIL-va" not in seen and "SECRET-DETAIL-te" not in seen and '"va-' not in seen and f"host-marker-{token}" not in seen
        for folder in (toy.target, toy.workspace, Path.home(), Path("/tmp")):
            assert not (folder / f"pwned-{token}").exists(), folder
        time.sleep(0.5)
        assert sleepers(token) == []
    finally:
        (Path("/tmp") / f"host-marker-{token}").unlink(missing_ok=True)
        for folder in (Path.home(), Path("/tmp")):
            (folder / f"pwned-{token}").unlink(missing_ok=True)
        for pid in sleepers(token):
            import os
            import signal
            os.kill(int(pid), signal.SIGKILL)


def test_doctor_status_and_report_name_the_sandbox(tmp_path):
    need_bwrap()
    toy = make_toy(tmp_path, TASKS, SPLIT)
    toy.add_patch("0001.patch", {"agent/skills.py": "KNOWN = ['alpha', 'beta']\n"})
    assert "bwrap: bubblewrap" in cli(toy, "doctor").stdout
    cli(toy, "baseline")
    assert "sandbox: bwrap" in cli(toy, "status").stdout
    # "none" is a choice the records show, in red in the report.
    toy.config.write_text(toy.config.read_text().replace('kind = "replay"', 'kind = "replay"\nsandbox = "none"'))
    assert "none: chosen explicitly" in cli(toy, "doctor").stdout
    cli(toy, "run", "--once", check=False)
    assert "sandbox: none (the coding agent runs unconfined" in " ".join(cli(toy, "status").stdout.split())
    cli(toy, "report")
    assert "ran unconfined, by choice" in (toy.workspace / "report.html").read_text()


def test_auto_with_no_sandbox_here_refuses_in_one_line(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    bindir = tmp_path / "bin"  # a PATH with git but no bwrap, and no docker engine
    bindir.mkdir()
    (bindir / "git").symlink_to(shutil.which("git"))
    res = cli(toy, "baseline", check=False, env={"PATH": str(bindir), "DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no sandbox can run here" in lines[0] and 'sandbox = "none"' in lines[0]
    assert "no baseline yet" in cli(toy, "status").stdout
