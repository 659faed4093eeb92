"""A scripted backend for the parallel-candidate tests (`backend.kind = "tests.slow_replay:SlowReplay"`): the
replay backend, but it waits a set time before it applies its patch, so that the tests decide in which order
candidates in flight finish, and it can report a price, so that the budget rule has money to count.

    [backend.options]
    patches = "patches"
    cost_usd = 4.0              # what each proposal spends (at most its cap: a backend stops at its cap)
    [backend.options.delays]    # seconds before iteration N applies patch N; others do not wait
    "1" = 2.0
"""

from __future__ import annotations

import time
from pathlib import Path

from agents.replay import ReplayAgent, ReplayOptions
from orchestrator.core.config import BackendConfig, parse_options
from orchestrator.core.contracts import Proposal, ProposalRequest

TICK_S = 0.05  # how often the wait looks for a requested stop


class SlowReplayOptions(ReplayOptions):
    delays: dict[int, float] = {}
    cost_usd: float = 0.0


class SlowReplay(ReplayAgent):
    def __init__(self, config: BackendConfig, config_dir: Path):
        opts: SlowReplayOptions = parse_options(SlowReplayOptions, config.options, f"{config.where}.options")
        self.delays, self.cost_usd = opts.delays, opts.cost_usd
        # The replay backend sees only its own options.
        super().__init__(config.model_copy(update={"options": {"patches": config.options["patches"]}}), config_dir)

    def propose(self, request: ProposalRequest) -> Proposal:
        start = time.monotonic()
        end = start + self.delays.get(request.iteration, 0.0)
        while time.monotonic() < end and not (request.cancel and request.cancel.requested):
            time.sleep(TICK_S)
        proposal = super().propose(request)
        proposal.cost_usd = min(self.cost_usd, request.max_cost_usd)
        proposal.duration_s = time.monotonic() - start  # the wait is the backend's time, as a model's would be
        return proposal
