"""Starter agents and config fragments for the named benchmarks, for `autoharness init --benchmark KIND`.

`starter_files(kind)` gives the files to write into the user's target repo (relative path -> content);
`starter_config(kind)` gives the `[benchmark]` table and the `target.editable` globs. The starter files
sit next to this module under their own names and are copied into the target's `agent/` package.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# kind -> (files: target path -> source file here or None for empty, benchmark table)
STARTERS: dict[str, tuple[dict[str, str | None], dict[str, Any]]] = {
    "tau2": (
        {"agent/__init__.py": None, "agent/tau2_agent.py": "tau2_agent.py"},
        {"kind": "tau2", "trials": 1, "concurrency": 4, "task_timeout_s": 900, "infra_error": "fail",
         "options": {"domain": "airline", "agent": "agent.tau2_agent:Agent",
                     "agent_llm": "gpt-4.1", "user_llm": "gpt-4.1"}},
    ),
    "harbor": (
        {"agent/__init__.py": None, "agent/harbor_agent.py": "harbor_agent.py",
         "agent/harbor_prompt.txt": "harbor_prompt.txt"},
        {"kind": "harbor", "trials": 1, "concurrency": 4, "task_timeout_s": 3600, "infra_error": "fail",
         "options": {"path": "data/terminal-bench", "agent": "agent.harbor_agent:Agent",
                     "model": "anthropic/claude-sonnet-4-20250514", "environment": "docker"}},
    ),
    "bird-interact": (
        {"agent/__init__.py": None, "agent/bird_agent.py": "bird_agent.py"},
        {"kind": "bird-interact", "trials": 1, "concurrency": 3, "task_timeout_s": 1800, "infra_error": "fail",
         "options": {"adk_dir": "BIRD-Interact-ADK", "agent": "agent.bird_agent"}},
    ),
}
EDITABLE = ["agent/**"]


def _starter(kind: str) -> tuple[dict[str, str | None], dict[str, Any]]:
    if kind not in STARTERS:
        raise KeyError(kind)
    return STARTERS[kind]


def starter_files(kind: str) -> dict[str, str]:
    """Files for the target repo: relative path -> content. KeyError for an unknown kind."""
    files, _ = _starter(kind)
    return {rel: (HERE / src).read_text() if src else "" for rel, src in files.items()}


def starter_config(kind: str) -> dict[str, Any]:
    """{"benchmark": the [benchmark] table, "editable": the target.editable globs}."""
    _, table = _starter(kind)
    return {"benchmark": copy.deepcopy(table), "editable": list(EDITABLE)}
