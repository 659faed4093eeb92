"""The coding-agent interface: one request in, one proposal out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from orchestrator.errors import AutoharnessError
from orchestrator.sandbox import Sandbox


class ProposalStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    OVER_BUDGET = "over_budget"


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens


@dataclass
class ProposalRequest:
    worktree: Path
    prompt: str
    editable: list[str]
    timeout_s: float
    max_cost_usd: float
    env: dict[str, str] = field(default_factory=dict)
    iteration: int = 0                      # 1-based; the replay backend picks its patch by it
    transcript_path: Path | None = None     # where the backend tees its raw stream
    sandbox: Sandbox | None = None          # when set, every process the backend starts runs inside it


@dataclass
class Proposal:
    status: ProposalStatus
    summary: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None           # unknown is None, never 0
    transcript: Path | None = None
    duration_s: float = 0.0
    error: str = ""                         # set when status is not ok
    error_class: str = ""                   # rate_limit, overloaded, connection, timeout, auth, ...
    backend: str = ""
    model: str = ""


@dataclass
class Check:
    """One line of `autoharness doctor`."""

    name: str
    ok: bool
    detail: str
    fatal: bool = True  # a failing fatal check means the night would fail


@runtime_checkable
class CodingAgent(Protocol):
    """Built from a `BackendConfig` (kind, model, timeout_s, max_cost_usd, options, env)."""

    def propose(self, request: ProposalRequest) -> Proposal: ...

    def check(self) -> list[Check]: ...


class BackendError(AutoharnessError):
    """A backend fault, classified so the caller knows whether to retry."""

    error_class = "error"
    transient = False

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(BackendError):
    error_class, transient = "rate_limit", True


class Overloaded(BackendError):
    error_class, transient = "overloaded", True


class ConnectionFailed(BackendError):
    error_class, transient = "connection", True


class BackendTimeout(BackendError):
    error_class, transient = "timeout", True


class AuthFailed(BackendError):
    error_class = "auth"


class BadRequest(BackendError):
    error_class = "bad_request"


class ContextWindowExceeded(BackendError):
    error_class = "context_window"


class Refused(BackendError):
    error_class = "refusal"


class BadOutput(BackendError):
    error_class = "bad_output"


class NothingToPropose(AutoharnessError):
    """Raised by a backend with nothing left to propose (the replay queue is empty)."""
