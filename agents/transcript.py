"""A proposal's transcript: one JSON object a line, each with its time and `event`, secrets redacted.

Every write opens, appends and closes, so a run killed midway keeps what it had written. The CLI
backends' raw event streams reach the same file through run_process's `tee`, between these lines.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.core.proc import redact, secret_values


class Transcript:
    def __init__(self, path: Path | None, env: Mapping[str, str] | None = None, handed: Iterable[str] = ()):
        """`env`: the environment whose secret-named values must not reach the file (default: ours); `handed`:
        the values a backend was given, hidden whatever their names."""
        self.path = path
        self.secrets = secret_values(os.environ if env is None else env, handed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **data: Any) -> None:
        if self.path is None:
            return
        line = redact(json.dumps({"t": round(time.time(), 3), "event": event, **data}, default=str), self.secrets)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
