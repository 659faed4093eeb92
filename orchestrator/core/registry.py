"""The one registry: every plugin kind, one row per plugin, keyed by the string the config uses.

Rows are import paths, loaded only when asked for, so a missing SDK breaks only its own kind and this
module imports neither `agents` nor `benchmarks`. Any `pkg.module:Class` works in place of a name.
A benchmark's starter (what `autoharness init --benchmark KIND` writes) is its runner class's `starter`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Literal

from orchestrator.core.contracts import BenchmarkRunner
from orchestrator.core.errors import ConfigError

Kind = Literal["backend", "benchmark"]

PLUGINS: dict[Kind, dict[str, str]] = {
    "backend": {
        "claude-code": "agents.claude_code:ClaudeCodeAgent",
        "codex": "agents.codex:CodexAgent",
        "anthropic": "agents.anthropic_api:AnthropicAgent",
        "openai": "agents.openai_api:OpenAIAgent",
        "replay": "agents.replay:ReplayAgent",
    },
    "benchmark": {
        "command": "benchmarks.command:CommandRunner",
        "tau2": "benchmarks.tau2:Tau2Runner",
        "harbor": "benchmarks.harbor:HarborRunner",
        "bird-interact": "benchmarks.bird_interact:BirdInteractRunner",
    },
}


def names(kind: Kind) -> list[str]:
    return sorted(PLUGINS[kind])


def load(kind: Kind, name: str, where: str = "") -> Any:
    """The class registered as `name` (or named by a `pkg.module:Class` path), imported only now, checked to be
    of its kind. `where` names the config key in errors (default `<kind>.kind`)."""
    what = where or f"{kind}.kind"
    table = PLUGINS[kind]
    path = table.get(name)
    if path is None:
        if ":" not in name:
            near = difflib.get_close_matches(name, table, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{what}: unknown kind {name!r}{hint}; valid: {', '.join(names(kind))}, "
                              "or pkg.module:Class")
        path = name
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import {module_name!r} for {name!r}: {exc}") from exc
    found = getattr(module, attr, None)
    if found is None:
        raise ConfigError(f"{what}: {module_name!r} has no {attr!r}")
    if not isinstance(found, type):
        raise ConfigError(f"{what}: {path!r} is not a class; {KINDS_OF[kind]}")
    if not _of_kind(kind, found):
        raise ConfigError(f"{what}: {path!r} is not a {kind} class; {KINDS_OF[kind]}")
    return found


# What a class of each kind is, as an error tells it.
KINDS_OF: dict[Kind, str] = {
    "backend": "a backend is a class with propose(request) and check() methods",
    "benchmark": "a benchmark is a subclass of orchestrator.core.BenchmarkRunner",
}


def _of_kind(kind: Kind, cls: type) -> bool:
    if kind == "benchmark":
        return issubclass(cls, BenchmarkRunner)
    return all(callable(getattr(cls, method, None)) for method in ("propose", "check"))
