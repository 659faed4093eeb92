"""Fixtures every tier may use. The tiers: unit/ (in-process, no subprocess: `make test-fast`),
integration/ (real git repos, benchmark subprocesses, the scripted server with the real SDKs), e2e/ (the
real coding-agent CLIs, real tau2 and harbor, daemons killed and restarted)."""

from __future__ import annotations

import pytest

from tests.toy import Toy, make_queued


@pytest.fixture
def queued(tmp_path) -> Toy:
    """The toy with a patch queue that meets every gate branch (tests.toy.make_queued)."""
    return make_queued(tmp_path)
