"""The primary backend and its `[[backend.fallback]]`s, tried in order while a backend is down.

"Down" means the backend could not do the work (rate limit, overload, connection, timeout, auth), not
that the work was bad: a bad request, a refusal or a spent budget ends the chain. Before the next backend
starts, the worktree goes back to how the request found it: tracked files reset to the starting commit,
files the failed backend added removed. Files that were already untracked (the orchestrator's context
folder) are kept. The returned Proposal names the backend that produced it and carries the usage, cost
and time of every attempt, since the failed ones were paid for too.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from orchestrator.core.config import BackendConfig, BackendSection
from orchestrator.core.contracts import Check, CodingAgent, Proposal, ProposalRequest, ProposalStatus, Usage
from orchestrator.core.errors import BackendError
from orchestrator.core.proc import run_process
from orchestrator.core.registry import load

DOWN = {"rate_limit", "overloaded", "connection", "timeout", "auth"}


class WorktreeError(BackendError):
    error_class = "worktree"


def _git(worktree: Path, *args: str) -> str:
    res = run_process(["git", "-C", str(worktree), *args], timeout_s=120)
    if not res.ok:
        raise WorktreeError(f"git {' '.join(args)} failed in {worktree}: {res.stderr.strip()[-300:]}")
    return res.stdout


class Snapshot:
    """What a worktree looked like before a backend ran, so a failed attempt can be undone."""

    def __init__(self, worktree: Path):
        self.worktree = worktree.resolve()
        top = Path(_git(self.worktree, "rev-parse", "--show-toplevel").strip()).resolve()
        if top != self.worktree:  # never clean a repository the request does not own whole
            raise WorktreeError(f"{worktree} is not the top of a git worktree (that is {top})")
        self.head = _git(self.worktree, "rev-parse", "HEAD").strip()
        # Untracked entries, ignored ones included, folders collapsed: these were there before.
        listing = _git(self.worktree, "ls-files", "--others", "--directory", "-z")
        self.untracked = [p for p in listing.split("\0") if p]

    def restore(self) -> None:
        _git(self.worktree, "reset", "--hard", "-q", self.head)
        keep = [arg for p in self.untracked for arg in ("-e", "/" + p.rstrip("/"))]
        _git(self.worktree, "clean", "-fdxq", *keep)


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
        snapshot = Snapshot(request.worktree)
        spent: list[Proposal] = []
        for i, agent in enumerate(self.agents):
            if spent:
                snapshot.restore()
                _note(request, {"event": "fallback", "from": self.kinds[i - 1], "to": self.kinds[i],
                                "error_class": spent[-1].error_class, "error": spent[-1].error[:500]})
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


def _note(request: ProposalRequest, event: dict) -> None:
    if request.transcript_path is not None:
        with request.transcript_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")


def build_agent(section: BackendSection, config_dir: Path) -> CodingAgent:
    configs: list[BackendConfig] = [section, *section.fallback]
    agents = [load("backend", c.kind)(c, config_dir) for c in configs]
    return agents[0] if len(agents) == 1 else FallbackChain(agents, [c.kind for c in configs])
