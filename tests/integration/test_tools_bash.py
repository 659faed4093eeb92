"""The bash tool of the worktree-confined toolbox: it runs in the worktree without secrets, with a
timeout and an output cap."""

from __future__ import annotations

import pytest

from agents.tools import BASH, Toolbox


def test_bash_runs_in_the_worktree_without_secrets(box: Toolbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("PLAIN_SETTING", "visible")
    box = Toolbox(box.root, env={"BACKEND_TOKEN": "tok-from-backend-env", "FROM_BACKEND": "yes"})
    result = box.run(BASH, {"command": "pwd; ls agent; echo ${ANTHROPIC_API_KEY:-none} ${BACKEND_TOKEN:-none} "
                                       "$PLAIN_SETTING $FROM_BACKEND; exit 3"})
    assert result.is_error and result.text.startswith("exit code: 3")
    lines = result.text.splitlines()
    assert lines[1] == str(box.root) and "main.py" in lines[2]
    assert lines[3] == "none none visible yes"


def test_bash_timeout_and_output_cap(box: Toolbox) -> None:
    slow = box.run(BASH, {"command": "echo started; sleep 30"}, timeout_s=5)  # bash starts and echoes in time
    assert slow.is_error and "timed out after 5s" in slow.text and "started" in slow.text
    big = box.run(BASH, {"command": "seq 1 100000"})
    assert len(big.text) < 2100 and big.text.rstrip().endswith("100000") and "characters cut" in big.text
    assert box.run(BASH, {}).is_error
