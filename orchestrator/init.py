"""`autoharness init`: a config that loads as written, and for a named benchmark its starter agent.

Every default in the file comes from the config models themselves, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.core import registry
from orchestrator.core.config import (
    BackendConfig,
    BenchmarkConfig,
    GateConfig,
    LoopConfig,
    NotifyConfig,
    ScheduleConfig,
    SplitConfig,
)
from orchestrator.core.errors import ConfigError
from orchestrator.core.proc import git

HEADER = '# autoharness config, written by `autoharness init`. Reference: README.md, section "Config".\n'


def _value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # a JSON string, number, bool or list of them is valid TOML


def _table(name: str, table: dict[str, Any]) -> str:
    """A TOML table; nested dicts become sub-tables, empty lists and dicts are left out."""
    plain = {k: v for k, v in table.items() if not isinstance(v, dict) and v != []}
    lines = [f"[{name}]", *(f"{k} = {_value(v)}" for k, v in plain.items())]
    text = "\n".join(lines) + "\n"
    for key, sub in table.items():
        if isinstance(sub, dict):
            text += "\n" + _table(f"{name}.{key}", sub)
    return text


def _defaults(model: type, **override: Any) -> dict[str, Any]:
    return {**model().model_dump(mode="json"), **override}


def config_text(*, repo: str, base: str, benchmark: str, backend: str) -> tuple[str, dict[str, str]]:
    """The config file's text and the starter files (target-relative path -> content) for the target."""
    if backend not in registry.PLUGINS["backend"]:
        raise ConfigError(f"--backend: unknown kind {backend!r}; valid: {', '.join(registry.names('backend'))}")
    try:
        starter = registry.load("benchmark", benchmark).starter
    except ConfigError:
        raise ConfigError(f"--benchmark: unknown kind {benchmark!r}; "
                          f"valid: {', '.join(registry.names('benchmark'))}") from None
    bench = _defaults(BenchmarkConfig, **{k: v for k, v in starter.benchmark.items() if k != "options"})
    bench.pop("split")
    bench["options"] = json.loads(json.dumps(starter.benchmark.get("options", {})))
    back = {k: v for k, v in _defaults(BackendConfig, kind=backend).items() if k not in ("options", "env")}
    back["options"] = {"patches": "patches"} if backend == "replay" else {}
    parts = [
        HEADER + 'workspace = "workspace"\n',
        _table("target", {"repo": repo, "base": base, "branch": "autoharness", "editable": starter.editable}),
        _table("benchmark", bench),
        _table("benchmark.split", _defaults(SplitConfig)),
        _table("backend", back),
        _table("gate", _defaults(GateConfig)),
        _table("loop", _defaults(LoopConfig)),
        _table("schedule", _defaults(ScheduleConfig)),
        _table("notify", _defaults(NotifyConfig)),
    ]
    return "\n".join(parts), starter.file_texts()


def write(target: Path, output: Path, *, benchmark: str, backend: str, force: bool) -> list[str]:
    """Write the config at `output` and the starter files into `target`; return the files written there."""
    if output.exists() and not force:
        raise ConfigError(f"{output}: exists; pass --force to overwrite")
    if not (target / ".git").exists():
        raise ConfigError(f"--target: {target} is not a git repository")
    repo = target.resolve()
    try:
        repo_text = str(repo.relative_to(output.resolve().parent))
    except ValueError:
        repo_text = str(repo)
    text, files = config_text(repo=repo_text, base=_current_branch(repo), benchmark=benchmark, backend=backend)
    written = []
    for rel, content in files.items():
        dest = target / rel
        if dest.exists() and not force:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content)
        written.append(rel)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return written


def _current_branch(repo: Path) -> str:
    res = git("symbolic-ref", "--short", "-q", "HEAD", cwd=repo, check=False)
    return res.stdout.strip() if res.ok and res.stdout.strip() else "main"
