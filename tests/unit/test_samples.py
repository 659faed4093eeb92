"""Results are samples: each run of a code version on a task adds a draw, with what it was drawn for; a state.db
from before samples is carried over as draw 0 of each code version and task."""

from __future__ import annotations

import sqlite3

from orchestrator.store import Store, StoredResult


def result(task: str, reward: float | None, split: str = "val") -> StoredResult:
    return StoredResult(task, split, reward, "", "", 0.1, None)


def test_draws_are_numbered_per_code_version_and_task(tmp_path):
    store = Store(tmp_path / "state.db")
    store.add_samples("a" * 64, [result("t1", 1.0), result("t2", 0.0)], "baseline")
    store.add_samples("a" * 64, [result("t1", 0.0)], "incumbent")
    store.add_samples("b" * 64, [result("t1", 1.0)], "gate")
    got = store.samples("a" * 64, ["t1", "t2"])
    assert [(s.draw, s.reward, s.purpose) for s in got["t1"]] == [(0, 1.0, "baseline"), (1, 0.0, "incumbent")]
    assert [(s.draw, s.purpose) for s in got["t2"]] == [(0, "baseline")]
    assert [s.draw for s in store.samples("b" * 64, ["t1"])["t1"]] == [0]
    # Only draws made for the asked purposes; the cache's single answer is the first draw.
    assert [s.draw for s in store.samples("a" * 64, ["t1"], ("incumbent",))["t1"]] == [1]
    assert store.cached_results("a" * 64, ["t1", "t3"])["t1"].reward == 1.0
    assert "t3" not in store.cached_results("a" * 64, ["t1", "t3"])


def test_a_state_db_from_before_samples_is_carried_over(tmp_path):
    db = tmp_path / "state.db"
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE results (code_hash TEXT NOT NULL, task_id TEXT NOT NULL, split TEXT NOT NULL, "
                "reward REAL, error_class TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', "
                "duration_s REAL NOT NULL DEFAULT 0, cost_usd REAL, created_at REAL NOT NULL, "
                "PRIMARY KEY (code_hash, task_id))")
    old.execute("INSERT INTO results VALUES ('h', 't1', 'train', 0.5, 'failed', 'boom', 1.0, NULL, 0)")
    old.commit()
    old.close()
    store = Store(db)
    [s] = store.samples("h", ["t1"])["t1"]
    assert (s.draw, s.reward, s.error, s.purpose) == (0, 0.5, "boom", "")
    store.add_samples("h", [result("t1", 1.0, "train")])
    assert [x.draw for x in store.samples("h", ["t1"])["t1"]] == [0, 1]
    store.close()
    assert Store(db).samples("h", ["t1"])["t1"][1].reward == 1.0   # opened again: no second upgrade
