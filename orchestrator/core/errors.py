"""The one error tree, and the closed sets of outcomes every record, report and prompt speaks of.

Exceptions carry outcomes: a gate stage rejects a candidate by raising `Rejected(stage, reason)`, a
backend fault is a typed `BackendError` that says whether a retry may help, the loop's ordinary ends
are `NothingToPropose` and `BudgetExceeded`, and a stop asked for by a signal surfaces as `Cancelled` at
the next safe point.
"""

from __future__ import annotations

import enum
from typing import Any


class Decision(enum.StrEnum):
    BASELINE = "baseline"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ERROR = "error"       # the candidate could not be judged (the backend failed, git failed on it)


class Stage(enum.StrEnum):
    """Where a candidate ended; NONE for the baseline and accepted ones."""

    NONE = ""
    BACKEND = "backend"   # the proposal itself failed (error, timeout, over budget)
    GUARD = "guard"
    SUITE = "suite"
    VAL = "val"
    PROMOTE = "promote"   # never fails: train tasks that now pass count towards joining the suite
    CONFLICT = "conflict"  # another candidate was accepted first, and this one's change does not apply on it
    GIT = "git"           # git failed on the candidate's worktree (the coding agent broke it)
    ERROR = "error"       # another known fault while judging it


class AutoharnessError(Exception):
    """Base of every error autoharness knows how to report."""

    exit_code = 1


class ConfigError(AutoharnessError):
    """Bad config or usage: one line naming the key or file, exit code 2."""

    exit_code = 2


class LockedError(AutoharnessError):
    """Another daemon holds the workspace."""

    exit_code = 2


class GitError(AutoharnessError):
    """A git command failed (or timed out)."""


class BenchmarkFailed(AutoharnessError):
    """The benchmark itself could not run (not a task failure)."""


class BenchmarkChanged(BenchmarkFailed):
    """The benchmark's own files changed during a run (a candidate's code, or anything else writing there): no
    score from it can be trusted, and the night ends until someone looks."""


class NothingToPropose(AutoharnessError):
    """The backend has nothing left to propose (the replay queue is empty): the loop ends."""


class BudgetExceeded(AutoharnessError):
    """The run's budget is spent: the loop ends."""


class Cancelled(BaseException):
    """A stop was requested and the grace is over: raised at the next safe point, never into a random frame.

    Not an Exception, so no handler of ordinary errors swallows it; the iteration in flight is not recorded
    and is redone at the next start.
    """


class Rejected(AutoharnessError):
    """A candidate ended before acceptance. `decision` is REJECTED for a gate stage's verdict, ERROR when the
    candidate could not be judged."""

    def __init__(self, stage: Stage, reason: str, decision: Decision = Decision.REJECTED, verdict: Any = None,
                 best: Any = None):
        super().__init__(f"{stage}: {reason}")
        self.stage, self.reason, self.decision = stage, reason, decision
        self.verdict = verdict  # what the gate learned before it stopped (orchestrator.gate.Verdict), if it ran
        self.best = best        # the best it was judged against, when another candidate's acceptance moved it


# -- backend faults, classified so the caller knows whether to retry ---------------------------------------

class BackendError(AutoharnessError):
    error_class = "error"
    transient = False

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(BackendError):
    error_class, transient = "rate_limit", True


class QuotaExhausted(RateLimited):
    """A spent quota or credit balance: does not come back in a minute (a fallback backend may help)."""

    transient = False


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


class OverBudget(BackendError):
    error_class = "over_budget"


class WorktreeError(BackendError):
    error_class = "worktree"
