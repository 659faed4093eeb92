"""The task pool in-process: at most `slots` jobs at once across threads, first in first out (a job of several
slots included), a queued job cancelled never runs, and its figures are consistent. The store it lands results
in, shared by the pool's threads. Jobs wait on events and barriers, never on the clock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.contracts import BenchmarkRunner, TaskResult
from orchestrator.core.errors import ConfigError
from orchestrator.pool import LocalExecutor, TaskPool, build_executor
from orchestrator.store import Store, StoredResult

WAIT_S = 30  # only ever reached when the pool is wrong


class Peak:
    """Counts the jobs running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.order: list[str] = []

    def job(self, name: str, hold: threading.Barrier | threading.Event | None = None):
        def run() -> str:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
                self.order.append(name)
            try:
                if isinstance(hold, threading.Barrier):
                    hold.wait(WAIT_S)
                elif hold is not None:
                    assert hold.wait(WAIT_S), f"{name} was never released"
            finally:
                with self.lock:
                    self.now -= 1
            return name
        return run


def test_never_more_than_its_slots_across_three_submitting_threads():
    pool, peak = TaskPool(2, LocalExecutor()), Peak()
    pairs = threading.Barrier(2)  # each job waits for a second one: a pool of one slot would break it
    futures: list = []

    def submit(who: int) -> None:
        futures.extend(pool.submit(peak.job(f"{who}-{i}", pairs)) for i in range(4))

    threads = [threading.Thread(target=submit, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(f.result(WAIT_S) for f in futures) == sorted(f"{w}-{i}" for w in range(3) for i in range(4))
    assert peak.peak == 2
    stats = pool.stats()
    assert stats["jobs"] == 12 and stats["running"] == 0 and stats["queued"] == 0
    assert 0 < stats["busy_slot_s"] <= stats["slots"] * stats["wall_s"]
    assert 0 < stats["any_busy_s"] <= stats["wall_s"] and stats["busy_slot_s"] <= 2 * stats["any_busy_s"] + 1e-9
    assert 0 < stats["utilisation"] <= 1


def test_first_in_first_out_and_a_job_of_two_slots_waits_for_both():
    pool, peak = TaskPool(2, LocalExecutor()), Peak()
    first = threading.Event()
    a = pool.submit(peak.job("a", first))
    wide = pool.submit(peak.job("wide"), slots=2)
    b = pool.submit(peak.job("b"))        # fits in the free slot, but does not overtake `wide`
    assert not b.running() and not wide.running()
    first.set()
    assert [f.result(WAIT_S) for f in (a, wide, b)] == ["a", "wide", "b"]
    assert peak.order == ["a", "wide", "b"] and peak.peak == 1
    assert pool.submit(peak.job("huge"), slots=5).result(WAIT_S) == "huge"  # at most the pool's slots
    assert pool.stats()["busy_slot_s"] <= 2 * pool.stats()["wall_s"]


def test_a_cancelled_job_never_runs_and_does_not_hold_back_the_queue():
    pool, peak = TaskPool(2, LocalExecutor()), Peak()
    hold, later = threading.Event(), threading.Event()
    a = pool.submit(peak.job("a", hold))
    wide = pool.submit(peak.job("wide"), slots=2)   # waits for `a`
    c = pool.submit(peak.job("c", later))           # waits behind `wide`
    assert wide.cancel() and wide.cancelled()
    later.set()
    assert c.result(WAIT_S) == "c" and not a.done()  # ran beside `a` as soon as `wide` was cancelled
    hold.set()
    assert a.result(WAIT_S) == "a" and "wide" not in peak.order
    assert not a.cancel()  # a job that ran is not cancelled
    assert pool.stats()["jobs"] == 2


def test_a_job_s_error_reaches_its_future_and_the_pool_goes_on():
    pool = TaskPool(1, LocalExecutor())

    def boom() -> None:
        raise RuntimeError("job failed")

    assert isinstance(pool.submit(boom).exception(WAIT_S), RuntimeError)
    assert pool.submit(lambda: 7).result(WAIT_S) == 7


def test_close_cancels_the_queued_and_waits_for_the_running():
    pool, peak = TaskPool(1, LocalExecutor()), Peak()
    hold = threading.Event()
    running, queued = pool.submit(peak.job("running", hold)), pool.submit(peak.job("queued"))
    closer = threading.Thread(target=pool.close)
    closer.start()
    hold.set()
    closer.join(WAIT_S)
    assert running.result(0) == "running" and queued.cancelled() and peak.order == ["running"]
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(peak.job("late"))


class Plain(BenchmarkRunner):
    def tasks(self) -> list[str]:
        return ["t1"]

    def run(self, agent_dir, task_ids, *, traces_dir):
        return {t: TaskResult(1.0) for t in task_ids}


def test_the_executor_is_chosen_by_the_config(tmp_path):
    config = BenchmarkConfig(kind="plain")
    runner = Plain(config, tmp_path)
    local = build_executor(config, runner)
    assert isinstance(local, LocalExecutor)
    assert local.run(runner, tmp_path, ["t1"], None) == {"t1": TaskResult(1.0)}
    # Ray runs the command runner's tasks only (or is not there at all): one config line either way.
    with pytest.raises(ConfigError, match="ray"):
        build_executor(BenchmarkConfig(kind="plain", executor="ray", address="auto"), runner)


def test_the_store_takes_writes_from_many_threads(tmp_path: Path):
    """One connection, four threads adding samples and events at once: every transaction whole, every draw
    numbered once."""
    store = Store(tmp_path / "state.db")
    start = threading.Barrier(4)

    def write(who: int) -> None:
        start.wait(WAIT_S)
        for i in range(25):
            store.add_samples("h", [StoredResult(f"t{i % 5}", "train", 1.0, "", "", 0.0, None)], "gate")
            store.event("note", f"{who}-{i}")
            store.get("suite")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = store.samples("h", [f"t{i}" for i in range(5)])
    assert {t: [s.draw for s in ss] for t, ss in samples.items()} == {f"t{i}": list(range(20)) for i in range(5)}
    assert len(store.events("note")) == 100


def test_free_iteration_fills_the_holes_a_crash_left(tmp_path: Path):
    from orchestrator.core.errors import Decision
    from orchestrator.store import IterationRecord
    store = Store(tmp_path / "state.db")
    assert store.free_iteration(set()) == 1
    for n in (0, 1, 2, 3, 4, 6):
        store.record_iteration(IterationRecord(n, 0.0, 0.0, Decision.BASELINE if n == 0 else Decision.REJECTED))
    # 5 and 7 were in flight when the daemon died: 5 first, then 7, then new ones.
    assert store.free_iteration(set()) == 5
    assert store.free_iteration({5}) == 7
    assert store.free_iteration({5, 7}) == 8
    assert store.next_iteration() == 7
