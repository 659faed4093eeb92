"""`autoharness install NAME`: build a benchmark's own Python 3.12 environment where its runner looks for it.

The place is `benchmarks.shims.default_venv(NAME)` (the runner resolves the same function) and the packages
are `benchmarks.shims.PINS[NAME]`. An environment whose stamp names the same pins is reused, so running it
again (as CI does before every test run) costs nothing. `.ci/install-benchmarks.sh` calls this module.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.shims import PINS, default_venv, tail
from orchestrator.core.errors import AutoharnessError, ConfigError
from orchestrator.core.proc import run_process

STAMP = ".installed"         # holds the pins the environment was built with, written last
STEP_TIMEOUT_S = 1800.0      # one pip install of tau2 or harbor, on a slow mirror
NO_INSTALL = {"bird-interact": "its environment comes from your BIRD-Interact-ADK checkout: make a Python 3.10+ "
                               "venv, `pip install -r requirements.txt` of the checkout, and set "
                               "benchmark.options.python (docs/benchmarks/bird-interact.md)"}


class InstallFailed(AutoharnessError):
    """Building the environment failed (no Python 3.12, pip failed): a runtime failure, exit 1."""


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(path).parents[1].name))


def find_python312() -> str:
    """`$PYTHON312`, else the newest pyenv 3.12, else `python3.12` on PATH."""
    if os.environ.get("PYTHON312"):
        return os.environ["PYTHON312"]
    pyenv = shutil.which("pyenv")
    if pyenv:
        res = run_process([pyenv, "root"], timeout_s=30)
        root = Path(res.stdout.strip()) if res.ok else None
        found = sorted((str(p) for p in root.glob("versions/3.12.*/bin/python")), key=_version_key) if root else []
        if found:
            return found[-1]
    found = shutil.which("python3.12")
    if found:
        return found
    raise InstallFailed("no Python 3.12 found: install one (for example `pyenv install 3.12`) "
                        "or set PYTHON312 to its interpreter")


def _step(argv: list[str], what: str) -> None:
    res = run_process(argv, timeout_s=STEP_TIMEOUT_S, cap_chars=20_000)
    if not res.ok:
        why = "timed out" if res.timed_out else f"exited {res.returncode}"
        raise InstallFailed(f"{what} {why}: {tail(res.stderr or res.stdout, 600)}")


def install(name: str, say: Callable[[str], None] = print) -> Path:
    """Build (or reuse) the environment of benchmark `name`; returns its folder."""
    if name in NO_INSTALL:
        raise ConfigError(f"install {name}: nothing to install here; {NO_INSTALL[name]}")
    if name not in PINS:
        raise ConfigError(f"install: unknown benchmark {name!r} (one of: {', '.join(PINS)})")
    venv, pins = default_venv(name), " ".join(PINS[name])
    stamp = venv / STAMP
    if stamp.is_file() and stamp.read_text().strip() == pins:
        say(f"{name}: already installed in {venv} ({pins})")
        return venv
    python = find_python312()
    say(f"{name}: building {venv} with {pins} (a few minutes)")
    shutil.rmtree(venv, ignore_errors=True)     # a half-built or outdated environment is rebuilt whole
    venv.parent.mkdir(parents=True, exist_ok=True)
    _step([python, "-m", "venv", str(venv)], f"{python} -m venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _step([*pip, "--upgrade", "pip"], "pip install --upgrade pip")
    _step([*pip, *PINS[name]], f"pip install {pins}")
    stamp.write_text(pins + "\n")
    say(f"{name}: installed in {venv}")
    return venv


def main(argv: list[str]) -> int:
    """`python -m orchestrator.install [NAME ...]` (for .ci/install-benchmarks.sh); no name: every one."""
    try:
        for name in argv or list(PINS):
            install(name)
    except AutoharnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
