"""A scripted backend for `make bench` (`backend.kind = "tests.timed_backend:TimedReplay"`): the replay backend,
but each proposal first takes a set time, as a model would, and its start and end are logged from outside the
orchestrator's records, one line a proposal: `<start> <end> <iteration>` (time.time() seconds).

    [backend.options]
    patches = "patches"
    sleep_s = 2.0
    log = "/abs/backend-times.log"
"""

from __future__ import annotations

import time
from pathlib import Path

from agents.replay import ReplayAgent, ReplayOptions
from orchestrator.core.config import BackendConfig, parse_options
from orchestrator.core.contracts import Proposal, ProposalRequest

TICK_S = 0.05  # how often the wait looks for a requested stop


class TimedReplayOptions(ReplayOptions):
    sleep_s: float = 0.0
    log: Path


class TimedReplay(ReplayAgent):
    def __init__(self, config: BackendConfig, config_dir: Path):
        opts: TimedReplayOptions = parse_options(TimedReplayOptions, config.options, f"{config.where}.options")
        self.sleep_s, self.log = opts.sleep_s, (config_dir / opts.log).resolve()
        # The replay backend sees only its own options.
        super().__init__(config.model_copy(update={"options": {"patches": config.options["patches"]}}), config_dir)

    def propose(self, request: ProposalRequest) -> Proposal:
        start, t0 = time.time(), time.monotonic()
        while time.monotonic() < t0 + self.sleep_s and not (request.cancel and request.cancel.requested):
            time.sleep(min(TICK_S, max(t0 + self.sleep_s - time.monotonic(), 0.0)))
        try:
            proposal = super().propose(request)
        finally:
            with self.log.open("a") as fh:  # one short append a line: whole even with K proposals at once
                fh.write(f"{start:.6f} {time.time():.6f} {request.iteration}\n")
        proposal.duration_s = time.monotonic() - t0  # the wait is the backend's time, as a model's would be
        return proposal
