"""The subprocess function the loop runs everything through: a timeout kills the whole process group,
output is capped and redacted, stdin is fed."""

from __future__ import annotations

import os
import time

from orchestrator.core.proc import run_process


def test_timeout_kills_the_whole_group(tmp_path):
    marker = tmp_path / "child.pid"
    # 3 s: bash has started its child and written the marker well before; the child would live 60 s.
    res = run_process(["bash", "-c", f"sleep 60 & echo $! > {marker}; wait"], timeout_s=3)
    assert res.timed_out and res.returncode is None
    pid = int(marker.read_text())
    end = time.monotonic() + 10  # SIGKILL is delivered when the child next runs: on a loaded machine, not at once
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    assert not alive(pid)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for an init that does not reap."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_output_cap_keeps_tail_and_redacts(tmp_path):
    env = {**os.environ, "MY_API_KEY": "sk-verysecret-123"}
    tee = tmp_path / "t.jsonl"
    res = run_process(["bash", "-c", "for i in $(seq 1 5000); do echo line$i; done; echo $MY_API_KEY"], env=env,
                      cap_chars=1000, tee=tee)
    assert res.ok and len(res.stdout) <= 1000
    assert "line5000" in res.stdout and "line1\n" not in res.stdout
    assert "sk-verysecret-123" not in res.stdout and "[REDACTED]" in res.stdout
    assert "sk-verysecret-123" not in tee.read_text()


def test_stdin_is_fed():
    assert run_process(["cat"], stdin="hello\n").stdout == "hello\n"
