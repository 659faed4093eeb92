"""Unit tests of the pieces the loop leans on: globs, the held-out id rule, splits, trace matching.
(The subprocess function: tests/integration/test_process.py.)"""

from __future__ import annotations

import pytest

from orchestrator.core.config import SplitConfig
from orchestrator.core.errors import ConfigError
from orchestrator.core.scrub import id_pattern
from orchestrator.guard import is_editable
from orchestrator.splits import load_or_freeze, make_splits


@pytest.mark.parametrize(("path", "globs", "ok"), [
    ("agent/x.py", ["agent/**"], True),
    ("agent/deep/x.py", ["agent/**"], True),
    ("agentx/x.py", ["agent/**"], False),
    ("README.md", ["agent/**"], False),
    ("src/a.py", ["src/*.py"], True),
    ("src/sub/a.py", ["src/*.py"], False),
    ("a/b/prompt.md", ["**/prompt.md"], True),
    ("prompt.md", ["**/prompt.md"], True),
])
def test_editable_globs(path, globs, ok):
    assert is_editable(path, globs) is ok


def test_held_out_id_pattern():
    assert id_pattern("va-beta-1").search("x = {'va-beta-1': 1}")
    assert not id_pattern("va-beta-1").search("x = 'va-beta-12'")
    assert not id_pattern("12").search("retry = 12")  # numeric ids only count quoted
    assert id_pattern("12").search('if task == "12":')


def test_fraction_split_is_seeded_and_frozen(tmp_path):
    tasks = [f"t{i}" for i in range(20)]
    a = make_splits(SplitConfig(seed=1, train=0.5, val=0.25, test=0.25), tasks)
    b = make_splits(SplitConfig(seed=1, train=0.5, val=0.25, test=0.25), list(reversed(tasks)))
    assert a == b and (len(a.train), len(a.val), len(a.test)) == (10, 5, 5)
    assert not set(a.train) & set(a.val) and not set(a.val) & set(a.test)
    frozen = load_or_freeze(tmp_path / "splits.json", a)
    assert load_or_freeze(tmp_path / "splits.json", a) == frozen
    other = make_splits(SplitConfig(seed=2, train=0.5, val=0.25, test=0.25), tasks)
    with pytest.raises(ConfigError, match="would change"):
        load_or_freeze(tmp_path / "splits.json", other)


def test_fractions_must_sum_to_one():
    with pytest.raises(ValueError):
        SplitConfig(train=0.5, val=0.5, test=0.5)


def test_official_split_carves_val_from_train():
    tasks = [f"t{i}" for i in range(12)]
    s = make_splits(SplitConfig(seed=3, train=0.75, val=0.25, test=0.0), tasks,
                    {"train": tasks[:8], "test": tasks[8:]})
    assert sorted(s.test) == sorted(tasks[8:]) and len(s.val) == 2 and len(s.train) == 6


def test_traces_are_matched_to_their_task(tmp_path):
    from orchestrator.analyze import copy_traces
    src = tmp_path / "src"
    for rel in ("t1.json", "t1/trial-0.json", "t10.json", "task.v2.json", "task.v2/x.log", "other.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    got = copy_traces(src, tmp_path / "dest", ["t1", "task.v2"])
    assert sorted(got) == ["t1.json", "t1/trial-0.json", "task.v2.json", "task.v2/x.log"]
