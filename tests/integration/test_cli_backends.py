"""The claude-code and codex backends with a stand-in for the CLI binary, on a real git worktree: a binary
that cannot start, and a missing key that fails before any binary runs. The real CLIs: tests/e2e."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.claude_code import ClaudeCodeAgent
from agents.codex import CodexAgent
from orchestrator.core.config import BackendConfig
from orchestrator.core.contracts import ProposalStatus
from tests.cli_backends import ROOT, SECRET, UNTOUCHED, cli_repo, ours, request, status


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return cli_repo(tmp_path)


def test_a_binary_that_cannot_start_is_bad_output(repo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "not-a-program"
    fake.write_bytes(b"\x00\x01 no interpreter line")
    fake.chmod(0o755)
    agent = ClaudeCodeAgent(BackendConfig(kind="claude-code", options={"binary": str(fake)},
                                          env={"ANTHROPIC_API_KEY": SECRET}), ROOT)
    proposal = agent.propose(request(repo))
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "bad_output"
    assert "cannot run" in proposal.error and status(repo) == UNTOUCHED


@pytest.mark.parametrize("cls", [ClaudeCodeAgent, CodexAgent])
def test_a_missing_key_fails_fast_as_auth(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN",
                 "CODEX_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    fake = tmp_path / "never-run"
    fake.write_text("#!/bin/sh\ntouch \"$0.ran\"\n")
    fake.chmod(0o755)
    agent = cls(BackendConfig(kind=cls.kind, options={"binary": str(fake)}), ROOT)
    req = request(repo)
    proposal = agent.propose(req)
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "auth"
    assert "is set in the environment or backend.env" in proposal.error
    assert not Path(f"{fake}.ran").exists() and "attempt" not in ours(req)
    key_check = [c for c in agent.check() if c.name.endswith("API key")]
    assert [(c.ok, c.fatal) for c in key_check] == [(False, True)]
