"""What every coding-agent backend shares: the frame of one proposal, and the endpoint probe of `doctor`.

A backend subclasses `Backend` and writes `_work`, its own part of a proposal; `propose` owns the rest:
the wall clock, the transcript's `start` and `end` events, a forced stop asked for before the work
starts (a backend with turns calls `Run.checkpoint` at each one), the status a BackendError ends in,
and the Proposal.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agents.transcript import Transcript
from orchestrator.core.config import BackendConfig, parse_options
from orchestrator.core.contracts import Check, Proposal, ProposalRequest, ProposalStatus, Usage
from orchestrator.core.errors import BackendError, BackendTimeout, OverBudget


class StopRequested(BackendError):
    error_class = "cancelled"


@dataclass
class Run:
    """One proposal in the making: its clock and transcript, and what the backend's part found."""

    request: ProposalRequest
    log: Transcript
    start: float = field(default_factory=time.monotonic)
    summary: str = ""
    note: str = ""                         # a caveat on a proposal that still counts (the turn limit)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0           # None: unknown
    end: dict[str, Any] = field(default_factory=dict)   # more fields for the `end` event

    @property
    def deadline(self) -> float:
        """A time.monotonic() value."""
        return self.start + self.request.timeout_s

    def checkpoint(self) -> None:
        """A safe point: stop here when autoharness is stopping."""
        if self.request.cancel is not None and self.request.cancel.requested:
            raise StopRequested("cancelled: autoharness is stopping")

    def status(self, exc: BackendError) -> ProposalStatus:
        if isinstance(exc, OverBudget):
            return ProposalStatus.OVER_BUDGET
        # A timeout before the wall clock ran out is one request's, and an error like any other.
        if isinstance(exc, BackendTimeout) and time.monotonic() >= self.deadline - 0.05:
            return ProposalStatus.TIMEOUT
        return ProposalStatus.ERROR


class Backend:
    """Base of the API and CLI backends. Subclasses set the class attributes, `env` and `_work`."""

    kind = ""
    default_model = ""     # used when backend.model is empty
    options_model: type[BaseModel] = BaseModel

    def __init__(self, config: BackendConfig, config_dir: Path):
        self.config = config
        self.config_dir = config_dir
        self.options = parse_options(self.options_model, config.options, f"{config.where}.options")
        self.model = config.model or self.default_model

    def env(self, request_env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment the work sees (its secrets are kept out of the transcript)."""
        raise NotImplementedError

    def handed(self, request: ProposalRequest) -> list[str]:
        """The values of the env tables this backend hands its work: kept out of the transcript by value,
        whatever the variables are called."""
        return [*self.config.env.values(), *request.env.values()]

    def _start(self) -> dict[str, Any]:
        """More fields for the `start` event."""
        return {}

    def _work(self, request: ProposalRequest, env: dict[str, str], run: Run) -> None:
        """The backend's own part: edit request.worktree, fill in `run`, raise a BackendError on failure."""
        raise NotImplementedError

    def propose(self, request: ProposalRequest) -> Proposal:
        env = self.env(request.env)
        run = Run(request, Transcript(request.transcript_path, env, self.handed(request)))
        run.log.write("start", backend=self.kind, model=self.model, options=self.options.model_dump(mode="json"),
                      **self._start(), prompt=request.prompt, timeout_s=request.timeout_s,
                      max_cost_usd=request.max_cost_usd)
        status, error, error_class = ProposalStatus.OK, "", ""
        try:
            run.checkpoint()
            self._work(request, env, run)
        except BackendError as exc:
            status, error, error_class = run.status(exc), str(exc), exc.error_class
        error = error or run.note
        duration = time.monotonic() - run.start
        run.log.write("end", status=status.value, error=error, error_class=error_class, **run.end,
                      usage=asdict(run.usage), cost_usd=run.cost_usd, duration_s=round(duration, 3))
        return Proposal(status=status, summary=run.summary, usage=run.usage, cost_usd=run.cost_usd,
                        transcript=request.transcript_path, duration_s=duration, error=error,
                        error_class=error_class, backend=self.kind, model=self.model)


def endpoint_check(name: str, url: str, timeout_s: float = 5.0) -> Check:
    """Any HTTP answer, even 401 or 404, proves the endpoint is there."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout_s) as resp:
            return Check(name, True, f"{url} answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        return Check(name, True, f"{url} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check(name, False, f"{url} is not reachable: {getattr(exc, 'reason', exc)}")
