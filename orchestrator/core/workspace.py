"""Where a run keeps everything it knows, and how files there are written (atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file + rename, so a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Workspace:
    root: Path

    def ensure(self) -> Workspace:
        for sub in (self.root, self.traces_train, self.iterations, self.logs):
            sub.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def db(self) -> Path:
        return self.root / "state.db"

    @property
    def results_tsv(self) -> Path:
        return self.root / "results.tsv"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def suite(self) -> Path:
        return self.root / "suite.json"

    @property
    def learnings(self) -> Path:
        return self.root / "learnings.md"

    @property
    def traces_train(self) -> Path:
        return self.root / "traces" / "train"

    @property
    def iterations(self) -> Path:
        return self.root / "iterations"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def heartbeat(self) -> Path:
        return self.root / "heartbeat.json"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def stop_file(self) -> Path:
        return self.root / "STOP"

    def iteration_dir(self, n: int) -> Path:
        path = self.iterations / str(n)
        path.mkdir(parents=True, exist_ok=True)
        return path
