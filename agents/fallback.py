"""The primary backend and its `[[backend.fallback]]`s, tried in order while a backend is down."""

from __future__ import annotations

from pathlib import Path

from agents import backend_class
from agents.base import Check, CodingAgent, Proposal, ProposalRequest, ProposalStatus

DOWN = {"rate_limit", "overloaded", "connection", "timeout", "auth"}


class FallbackChain:
    def __init__(self, agents: list[CodingAgent]):
        self.agents = agents

    def propose(self, request: ProposalRequest) -> Proposal:
        proposal: Proposal | None = None
        for agent in self.agents:
            proposal = agent.propose(request)
            if proposal.status is ProposalStatus.OK or proposal.error_class not in DOWN:
                return proposal
        assert proposal is not None
        return proposal

    def check(self) -> list[Check]:
        return [c for agent in self.agents for c in agent.check()]


def build_agent(section, config_dir: Path) -> CodingAgent:
    agents = [backend_class(c.kind)(c, config_dir) for c in [section, *section.fallback]]
    return agents[0] if len(agents) == 1 else FallbackChain(agents)
