"""The analysis matches trace files to failing tasks in work that grows with the files, not files x tasks:
counted by the calls of the one matching function (`analyze.owners`), never timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import analyze
from orchestrator.store import StoredResult


def failing(task_ids: list[str]) -> dict[str, StoredResult]:
    """Failing train results in a few signatures, so the digest has several groups."""
    return {t: StoredResult(t, "train", 0.0, "failed", f"agent lacks skill s{i % 3}", 0.0, None)
            for i, t in enumerate(task_ids)}


def traces(root: Path, task_ids: list[str]) -> Path:
    """Two trace files a task (one `<id>.json`, one under `<id>/`) and one file of no task."""
    for t in task_ids:
        (root / t).mkdir(parents=True)
        (root / f"{t}.json").write_text("{}")
        (root / t / "trial-0.log").write_text("log")
    (root / "summary.txt").write_text("not a task's")
    return root


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = analyze.owners

    def counted(rel: str) -> list[str]:
        seen.append(rel)
        return real(rel)

    monkeypatch.setattr(analyze, "owners", counted)
    return seen


def matching_calls(tmp_path: Path, calls: list[str], n: int) -> int:
    ids = [f"task-{i}" for i in range(n)]
    src = traces(tmp_path / f"src-{n}", ids)
    calls.clear()
    copied = analyze.copy_traces(src, tmp_path / f"dest-{n}", ids)
    text = analyze.digest(failing(ids), 1.0, copied, ".ctx")
    assert len(copied) == 2 * n and "Traces: .ctx/traces/task-0/trial-0.log, .ctx/traces/task-0.json" in text
    return len(calls)


def test_matching_is_one_call_per_trace_file(tmp_path: Path, calls: list[str]) -> None:
    # copy_traces looks at each of the 2n + 1 files once; the digest at each copied file once.
    small, large = matching_calls(tmp_path, calls, 40), matching_calls(tmp_path, calls, 400)
    assert (small, large) == (2 * 40 + 1 + 2 * 40, 2 * 400 + 1 + 2 * 400)


def test_the_index_agrees_with_the_rule_file_by_file(tmp_path: Path) -> None:
    """A task id with dots, one that prefixes another, a folder, and files of no task: the index picks what
    belongs_to picks, pair by pair."""
    ids = ["t1", "t10", "task.v2", "task"]
    files = ["t1.json", "t1/trial-0.json", "t10.json", "t100.json", "task.v2.json", "task.v2/x.log",
             "task.json", "taskx.json", "other.txt", "t1.json.bak"]
    index = analyze.by_task(files, ids)
    for t in ids:
        assert index.get(t, []) == [f for f in files if analyze.belongs_to(f, t)], t
    assert index["task"] == ["task.v2.json", "task.v2/x.log", "task.json"]
    assert index["t1"] == ["t1.json", "t1/trial-0.json", "t1.json.bak"]
