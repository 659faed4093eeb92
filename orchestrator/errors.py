"""Exceptions that carry an outcome. The loop catches the base, records, and reverts."""

from __future__ import annotations


class AutoharnessError(Exception):
    """Base of every error the orchestrator knows how to report."""

    exit_code = 1


class ConfigError(AutoharnessError):
    """Bad config or usage: one line naming the key or file, exit code 2."""

    exit_code = 2


class LockedError(AutoharnessError):
    """Another daemon holds the workspace."""

    exit_code = 2


class GateFailed(AutoharnessError):
    """A candidate was rejected; `stage` is guard, suite or val."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


class NothingProposed(AutoharnessError):
    """The backend has nothing left to propose (the replay queue is empty)."""


class BudgetExceeded(AutoharnessError):
    """The run's budget is spent."""


class BenchmarkFailed(AutoharnessError):
    """The benchmark itself could not run (not a task failure)."""
