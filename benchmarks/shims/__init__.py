"""Talking to a benchmark that lives in its own Python environment.

The `*_shim.py` scripts in this folder run inside that environment (tau2-bench and harbor need Python
3.12 and pin a litellm that conflicts with ours); autoharness never imports them. It starts one with
the environment's interpreter, writes one JSON request on stdin and reads JSON-line events back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.core.errors import ConfigError
from orchestrator.core.jsonl import parse_json_line
from orchestrator.core.proc import ProcResult, run_process

SHIMS = Path(__file__).resolve().parent
# `.ci/install-benchmarks.sh` creates `<repo>/.ci-tools/<name>-venv`.
TOOLS = SHIMS.parents[1] / ".ci-tools"


def default_venv(name: str) -> Path:
    return TOOLS / f"{name}-venv"


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


def run_shim(
    python: Path,
    script: str,
    request: dict[str, Any],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout_s: float,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], ProcResult]:
    """Run `SHIMS/script` with one request; return its events (in order) and the process result."""
    events: list[dict[str, Any]] = []

    def on_line(line: str) -> None:
        event = parse_json_line(line)
        if event is not None and "event" in event:
            events.append(event)
            if on_event is not None:
                on_event(event)

    res = run_process([str(python), str(SHIMS / script)], cwd=cwd, env=env, stdin=json.dumps(request) + "\n",
                      timeout_s=timeout_s, on_line=on_line, cap_chars=50_000)
    return events, res


@contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder only this process knows about, gone when the block ends (whatever happens)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


def tail(text: str, n: int = 1500) -> str:
    return text.strip()[-n:]
