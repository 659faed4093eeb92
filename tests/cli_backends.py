"""What the claude-code and codex backend tests share (tests/unit, integration and e2e): the worktree they
edit, the request, and readers of the transcript the backends write."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.core.contracts import ProposalRequest
from tests.helpers import REPO as ROOT
from tests.toy import git, greet_repo

__all__ = ["PROMPT", "ROOT", "SECRET", "UNTOUCHED", "cli_repo", "events", "ours", "request", "status"]

SECRET = "sk-test-secret-0123456789"
PROMPT = "Make the agent greet politely. Failure digest: task t1 says 'rude greeting'."
UNTOUCHED = {"?? context/trace.json"}


def cli_repo(tmp_path: Path) -> Path:
    """The greet agent repo, plus what the orchestrator puts there before a proposal (untracked, kept)."""
    root = greet_repo(tmp_path / "worktree", {"notes.txt": "notes\n"})
    (root / "context").mkdir()
    (root / "context" / "trace.json").write_text("{}\n")
    return root


def request(repo: Path, *, timeout_s: float = 90, max_cost_usd: float = 5.0, prompt: str = PROMPT) -> ProposalRequest:
    return ProposalRequest(worktree=repo, prompt=prompt, editable=["agent/**"], timeout_s=timeout_s,
                           max_cost_usd=max_cost_usd, transcript_path=repo.parent / "iteration" / "transcript.jsonl")


def status(repo: Path) -> set[str]:
    return set(git(repo, "status", "--porcelain", "--untracked-files=all").splitlines())


def events(req: ProposalRequest) -> list[dict]:
    assert req.transcript_path is not None
    # The CLI's stdout is tee'd raw: a crashed CLI's garbage is kept too, and skipped here.
    return [json.loads(line) for line in req.transcript_path.read_text().splitlines() if line.startswith("{")]


def ours(req: ProposalRequest) -> list[str]:
    """The transcript's own markers (start, attempt, retry, restored, end), between the CLI's events."""
    return [e["event"] for e in events(req) if "event" in e]
