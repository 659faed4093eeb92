"""The core layer: what a backend or benchmark plugin needs, from one place.

`agents/` and `benchmarks/` import from here and nowhere else in `orchestrator`; this package imports
neither of them (tests/unit/test_layers.py reads the imports and fails on an edge that runs back up).
"""

from orchestrator.core.config import BackendConfig, BenchmarkConfig, parse_options
from orchestrator.core.contracts import (
    BenchmarkRunner,
    Check,
    CodingAgent,
    Proposal,
    ProposalRequest,
    ProposalStatus,
    Starter,
    TaskResult,
    Usage,
    mean_of_trials,
)
from orchestrator.core.errors import (
    AuthFailed,
    AutoharnessError,
    BackendError,
    BackendTimeout,
    BadOutput,
    BadRequest,
    BenchmarkFailed,
    ConfigError,
    ConnectionFailed,
    ContextWindowExceeded,
    NothingToPropose,
    OverBudget,
    Overloaded,
    QuotaExhausted,
    RateLimited,
    Refused,
    WorktreeError,
)
from orchestrator.core.jsonl import json_objects, parse_json_line
from orchestrator.core.proc import ProcResult, git, redact, run_process, secret_values
from orchestrator.core.sandbox import Sandbox

__all__ = [
    "AuthFailed", "AutoharnessError", "BackendConfig", "BackendError", "BackendTimeout", "BadOutput", "BadRequest",
    "BenchmarkConfig", "BenchmarkFailed", "BenchmarkRunner", "Check", "CodingAgent", "ConfigError", "ConnectionFailed",
    "ContextWindowExceeded", "NothingToPropose", "OverBudget", "Overloaded", "ProcResult", "Proposal",
    "ProposalRequest", "ProposalStatus", "QuotaExhausted", "RateLimited", "Refused", "Sandbox", "Starter",
    "TaskResult", "Usage", "WorktreeError", "git", "json_objects", "mean_of_trials", "parse_json_line", "parse_options",
    "redact", "run_process", "secret_values",
]
