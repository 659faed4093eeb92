"""Train/val/test splits: made once from fractions + seed or explicit lists, then frozen in splits.json."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.config import SplitConfig
from orchestrator.core.errors import ConfigError
from orchestrator.core.workspace import write_json

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    train: list[str]
    val: list[str]
    test: list[str]
    seed: int | None

    def held_out(self) -> list[str]:
        return [*self.val, *self.test]

    def as_dict(self) -> dict:
        return {"seed": self.seed, "train": self.train, "val": self.val, "test": self.test}


def make_splits(cfg: SplitConfig, tasks: list[str], official: dict[str, list[str]] | None = None) -> Splits:
    known = set(tasks)
    if cfg.explicit:
        lists = {name: list(getattr(cfg, name)) for name in SPLITS}
        seed = None
    elif official is not None:
        # The benchmark's own lists (e.g. tau2's train/test); val carved from train with the seed if absent.
        lists = {name: list(official.get(name, [])) for name in SPLITS}
        if not lists["val"]:
            train = sorted(lists["train"])
            random.Random(cfg.seed).shuffle(train)
            cut = round(len(train) * cfg.val / max(cfg.train + cfg.val, 1e-9))
            lists["val"], lists["train"] = sorted(train[:cut]), sorted(train[cut:])
        seed = cfg.seed
    else:
        ids = sorted(tasks)
        random.Random(cfg.seed).shuffle(ids)
        n_train = round(len(ids) * cfg.train)
        n_val = round(len(ids) * cfg.val)
        lists = {
            "train": sorted(ids[:n_train]),
            "val": sorted(ids[n_train : n_train + n_val]),
            "test": sorted(ids[n_train + n_val :]),
        }
        seed = cfg.seed
    seen: dict[str, str] = {}
    for name in SPLITS:
        for task_id in lists[name]:
            if task_id not in known:
                raise ConfigError(f"benchmark.split.{name}: task {task_id!r} is not a task of the benchmark")
            if task_id in seen:
                raise ConfigError(f"benchmark.split.{name}: task {task_id!r} is also in {seen[task_id]}")
            seen[task_id] = name
    if not lists["train"] or not lists["val"]:
        raise ConfigError("benchmark.split: train and val must each have at least one task")
    return Splits(lists["train"], lists["val"], lists["test"], seed)


def load_or_freeze(path: Path, wanted: Splits) -> Splits:
    """Freeze `wanted` on first use; afterwards refuse anything that would change the frozen splits."""
    if not path.exists():
        write_json(path, wanted.as_dict())
        return wanted
    frozen_raw = json.loads(path.read_text())
    frozen = Splits(frozen_raw["train"], frozen_raw["val"], frozen_raw["test"], frozen_raw.get("seed"))
    for name in SPLITS:
        if sorted(getattr(frozen, name)) != sorted(getattr(wanted, name)):
            raise ConfigError(
                f"benchmark.split: would change the {name} split frozen in {path}; "
                "restore the split settings or use a new workspace"
            )
    return frozen
