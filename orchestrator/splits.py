"""Train/val/test splits: made once from fractions + seed or explicit lists, then frozen in splits.json."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.config import SplitConfig
from orchestrator.core.errors import ConfigError
from orchestrator.core.taskids import check_ids
from orchestrator.core.words import count
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
    """The splits of `tasks` (the benchmark's ids) the config asks for: its explicit lists, else the
    benchmark's official lists, else fractions drawn with the seed. Every id must be a plain token
    (orchestrator.core.taskids), and every listed id one of `tasks`, in one split only."""
    known = set(check_ids(tasks, "the benchmark's task list"))
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
    check_lists(lists, known)
    if not lists["train"] or not lists["val"]:
        raise ConfigError("benchmark.split: train and val must each have at least one task")
    return Splits(lists["train"], lists["val"], lists["test"], seed)


def check_lists(lists: dict[str, list[str]], known: set[str]) -> None:
    """Refuse a bad id, ids the benchmark does not have (all of them named, in one line), or an id in two splits."""
    for name in SPLITS:
        check_ids(lists[name], f"benchmark.split.{name}")
    unknown = [(name, t) for name in SPLITS for t in lists[name] if t not in known]
    if unknown:
        names = sorted({name for name, _ in unknown}, key=SPLITS.index)
        one = len(names) == 1   # then the key says which list, else each id does
        shown = [f"{t!r}" + ("" if one else f" ({name})") for name, t in unknown]
        text = ", ".join(shown[:10]) + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")
        ids = "1 id is" if len(unknown) == 1 else f"{len(unknown)} ids are"
        where = f"benchmark.split.{names[0]}" if one else "benchmark.split"
        raise ConfigError(f"{where}: {ids} not among the benchmark's {count(len(known), 'task')}: {text}")
    seen: dict[str, str] = {}
    for name in SPLITS:
        for task_id in lists[name]:
            if task_id in seen:
                raise ConfigError(f"benchmark.split.{name}: task {task_id!r} is also in {seen[task_id]}")
            seen[task_id] = name


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
