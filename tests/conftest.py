"""Fixtures every tier may use. The tiers: unit/ (in-process, no subprocess: `make test-fast`),
integration/ (real git repos, benchmark subprocesses, the scripted server with the real SDKs), e2e/ (the
real coding-agent CLIs, real tau2 and harbor, daemons killed and restarted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.tools import Toolbox
from tests.toy import Toy, make_queued


@pytest.fixture
def queued(tmp_path) -> Toy:
    """The toy with a patch queue that meets every gate branch (tests.toy.make_queued)."""
    return make_queued(tmp_path)


@pytest.fixture
def box(tmp_path: Path) -> Toolbox:
    """The raw-API backends' two tools on a small worktree."""
    root = tmp_path / "wt"
    (root / "agent").mkdir(parents=True)
    (root / "agent" / "main.py").write_text("def run():\n    return 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return Toolbox(root, bash_timeout_s=10, output_chars=2000)
