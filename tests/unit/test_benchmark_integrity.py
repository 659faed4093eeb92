"""The checks around a benchmark run, in process: the stat signature of the benchmark's files, the evaluator
stopping the night when a run changed them, and the result lines a runner keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.containment import Reports
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.contracts import BenchmarkRunner, TaskResult
from orchestrator.core.errors import BenchmarkChanged
from orchestrator.evaluate import Evaluator, changed_paths, file_signature
from orchestrator.store import Store


def bench(tmp_path: Path) -> Path:
    root = tmp_path / "bench"
    (root / "data").mkdir(parents=True)
    (root / "tasks.json").write_text('{"t1": "alpha"}')
    (root / "data" / "answers.txt").write_text("42")
    return root


def test_signature_sees_a_rewrite_even_with_the_mtime_put_back(tmp_path):
    root = bench(tmp_path)
    before = file_signature([root])
    st = (root / "tasks.json").stat()
    (root / "tasks.json").write_text('{"t1": "gamma"}')                  # same size
    os.utime(root / "tasks.json", ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime forged back; ctime cannot be
    assert changed_paths(before, file_signature([root])) == [str(root / "tasks.json")]


def test_signature_sees_new_and_removed_files_and_skips_ours(tmp_path):
    root = bench(tmp_path)
    ours = root / "workspace"
    ours.mkdir()
    before = file_signature([root, root / "data"], skip=[ours])
    (ours / "state.db").write_text("records")
    assert changed_paths(before, file_signature([root], skip=[ours])) == []
    (root / "data" / "answers.txt").unlink()
    (root / "data" / "new.txt").write_text("x")
    changed = changed_paths(before, file_signature([root], skip=[ours]))
    assert {str(root / "data" / "answers.txt"), str(root / "data" / "new.txt"), str(root / "data")} <= set(changed)
    assert file_signature([root]).keys() >= {str(root / "tasks.json"), str(root)}


class Tamperer(BenchmarkRunner):
    """A benchmark whose run (the candidate's code in it) rewrites its own task file."""

    def __init__(self, folder: Path, tamper: bool):
        super().__init__(BenchmarkConfig(kind="command", options={"cmd": ["x"]}), folder)
        self.folder, self.tamper = folder, tamper

    def tasks(self) -> list[str]:
        return ["t1"]

    def benchmark_files(self) -> list[Path]:
        return [self.folder]

    def run(self, agent_dir, task_ids, *, traces_dir):
        if self.tamper:
            (self.folder / "tasks.json").write_text('{"t1": "anything"}')
        return {t: TaskResult(1.0) for t in task_ids}


@pytest.mark.parametrize("tamper", [False, True])
def test_a_run_that_changes_the_benchmark_ends_the_night_loudly(tmp_path, tamper):
    root = bench(tmp_path)
    (tmp_path / "ws").mkdir()
    store = Store(tmp_path / "ws" / "state.db")
    runner = Tamperer(root, tamper)
    evaluator = Evaluator(runner, store, tmp_path / "ws" / "traces", runner.config)
    assert runner.protected == [tmp_path / "ws"]   # the records: read-only to a held-out run too
    if not tamper:
        assert evaluator.evaluate(tmp_path, "h" * 64, ["t1"], "val").score == 1.0
        return
    with pytest.raises(BenchmarkChanged, match="changed during a val run"):
        evaluator.evaluate(tmp_path, "h" * 64, ["t1"], "val")
    assert [e["kind"] for e in store.events("benchmark_changed")] == ["benchmark_changed"]
    assert store.cached_results("h" * 64, ["t1"]) == {}                 # nothing of that run is kept


def test_reports_ignore_untokened_lines_and_flag_conflicts():
    reports = Reports("tok")
    assert not reports.add("t1", {"task_id": "t1", "reward": 1.0})
    assert reports.add("t1", {"task_id": "t1", "reward": 0.0, "token": "tok"})
    assert not reports.add("t1", {"task_id": "t1", "reward": 0.0, "token": "tok"})   # a repeat
    assert reports.lines["t1"] == {"task_id": "t1", "reward": 0.0} and not reports.conflicts
    reports.add("t1", {"task_id": "t1", "reward": 1.0, "token": "tok"})
    assert reports.conflicts == {"t1"} and reports.lines["t1"]["reward"] == 0.0
