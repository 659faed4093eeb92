"""The primary backend and its `[[backend.fallback]]`s, tried in order while a backend is down.

"Down" means the backend could not do the work (rate limit, overload, connection, timeout, auth), not
that the work was bad: a bad request, a refusal or a spent budget ends the chain. Before the next backend
starts, the worktree goes back to how the request found it (agents.worktree): files the failed backend
changed are restored, files it added removed; the orchestrator's context folder stays. The returned
Proposal names the backend that produced it and carries the usage, cost and time of every attempt,
since the failed ones were paid for too.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from agents.transcript import Transcript
from agents.worktree import WorktreeSnapshot
from orchestrator.core.config import BackendConfig, BackendSection
from orchestrator.core.contracts import Check, CodingAgent, Proposal, ProposalRequest, ProposalStatus, Usage
from orchestrator.core.registry import load

DOWN = {"rate_limit", "overloaded", "connection", "timeout", "auth"}


def _merge(final: Proposal, spent: list[Proposal]) -> Proposal:
    usage = Usage()
    for p in spent:
        usage.add(p.usage)
    known = [p.cost_usd for p in spent if p.cost_usd is not None]
    cost = sum(known) if known else None  # unknown attempts add nothing they could be charged for
    return replace(final, usage=usage, cost_usd=cost, duration_s=sum(p.duration_s for p in spent))


class FallbackChain:
    def __init__(self, agents: list[CodingAgent], kinds: list[str]):
        self.agents, self.kinds = agents, kinds

    def propose(self, request: ProposalRequest) -> Proposal:
        log = Transcript(request.transcript_path, {**os.environ, **request.env}, request.env.values())
        spent: list[Proposal] = []
        with WorktreeSnapshot(request.worktree) as snapshot:
            for i, agent in enumerate(self.agents):
                if spent:
                    snapshot.restore()
                    log.write("fallback", **{"from": self.kinds[i - 1]}, to=self.kinds[i],
                              error_class=spent[-1].error_class, error=spent[-1].error[:500])
                proposal = agent.propose(request)
                proposal.backend = proposal.backend or self.kinds[i]
                spent.append(proposal)
                if not (proposal.status is ProposalStatus.ERROR and proposal.error_class in DOWN):
                    break  # done, or failed in a way another backend would not fix (a used-up wall clock too)
        return _merge(spent[-1], spent)

    def check(self) -> list[Check]:
        checks = list(self.agents[0].check())
        for i, agent in enumerate(self.agents[1:], 1):
            # A broken fallback does not stop a night whose primary works: a warning, not a failure.
            checks += [replace(c, name=f"fallback {i}: {c.name}", fatal=False) for c in agent.check()]
        return checks


def build_agent(section: BackendSection, config_dir: Path) -> CodingAgent:
    configs: list[BackendConfig] = section.chain()
    agents = [load("backend", c.kind, where=f"{c.where}.kind")(c, config_dir) for c in configs]
    return agents[0] if len(agents) == 1 else FallbackChain(agents, [c.kind for c in configs])
