"""The task pool: every benchmark run of every candidate in flight goes through one FIFO queue of
`benchmark.concurrency` slots, so K candidates never load the benchmark (or its API quota) K times over.

A job runs in a thread of the pool's and holds its slots (one for a task; several for a task's trials or a
batch runner's batch) from its start to its end. The head of the queue waits until enough slots are free: no
job overtakes another, so each caller's cheapest-first order holds. A queued job is cancelled through its
Future's `cancel()`; a running one finishes. Where the runs happen is the executor's business: processes
here, or tasks on a Ray cluster.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.contracts import BenchmarkRunner, TaskResult
from orchestrator.core.errors import ConfigError


class Executor(Protocol):
    """Runs tasks of a runner (each `config.trials` times) on the agent in `agent_dir`, like `runner.run`."""

    def run(self, runner: BenchmarkRunner, agent_dir: Path, task_ids: list[str],
            traces_dir: Path | None) -> dict[str, TaskResult]: ...


class LocalExecutor:
    """The runner's own processes, on this machine."""

    def run(self, runner: BenchmarkRunner, agent_dir: Path, task_ids: list[str],
            traces_dir: Path | None) -> dict[str, TaskResult]:
        return runner.run(agent_dir, task_ids, traces_dir=traces_dir)


def build_executor(cfg: BenchmarkConfig, runner: BenchmarkRunner) -> Executor:
    if cfg.executor == "local":
        return LocalExecutor()
    try:  # imported only when asked for: Ray is a heavy, optional dependency
        from benchmarks.ray_executor import RayExecutor
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks.ray_executor", "ray"):
            raise
        raise ConfigError(f'benchmark.executor = "ray": the Ray executor is not available ({exc.name} cannot be '
                          'imported); install ray, or use executor = "local"') from None
    return RayExecutor.build(cfg, runner)


@dataclass(eq=False)
class _Job:
    fn: Callable[[], Any]
    slots: int
    future: Future = field(default_factory=Future)
    start: float = 0.0
    # The submitter's context, which the job runs in: its thread sees what the caller's sees (the iteration the
    # heartbeat counts the job's progress for).
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class TaskPool:
    def __init__(self, slots: int, executor: Executor):
        if slots < 1:
            raise ValueError(f"a task pool needs at least one slot, not {slots}")
        self.slots, self.executor = slots, executor
        # Jobs run in reused threads (a thread started per job costs more than a quick task's bookkeeping); no
        # more than `slots` jobs run at once, so no more threads are needed.
        self._threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="task-pool")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        self._running: set[_Job] = set()
        self._free = slots
        self._closed = False
        # Utilisation: slot-seconds of ended jobs, seconds in which at least one job ran, jobs started.
        self._born = time.monotonic()
        self._busy_slot_s = 0.0
        self._any_busy_s = 0.0
        self._busy_since = 0.0
        self._started = 0

    def submit(self, fn: Callable[[], Any], slots: int = 1) -> Future:
        """Queue `fn` to run in a thread of its own once `slots` slots (at most the pool's) are free."""
        job = _Job(fn, min(max(slots, 1), self.slots))
        with self._lock:
            if self._closed:
                raise RuntimeError("the task pool is closed")
            self._queue.append(job)
            ready = self._take()
        # A cancelled head must not hold back the jobs behind it until some other job ends.
        job.future.add_done_callback(lambda f: f.cancelled() and self._dispatch())
        self._start(ready)
        return job.future

    def stats(self) -> dict[str, float | int]:
        """The pool's figures since it was built; utilisation = busy slot-seconds / (slots * wall)."""
        with self._lock:
            now = time.monotonic()
            busy = self._busy_slot_s + sum(j.slots * (now - j.start) for j in self._running)
            any_busy = self._any_busy_s + (now - self._busy_since if self._running else 0.0)
            wall = now - self._born
            return {"slots": self.slots, "jobs": self._started, "running": len(self._running),
                    "queued": len(self._queue), "busy_slot_s": busy, "any_busy_s": any_busy, "wall_s": wall,
                    "utilisation": busy / (self.slots * wall) if wall > 0 else 0.0}

    def close(self) -> None:
        """Cancel what is queued, wait for what runs, and close the executor (if it has anything to close)."""
        with self._lock:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
        for job in queued:
            job.future.cancel()
        with self._idle:
            self._idle.wait_for(lambda: not self._running)
        self._threads.shutdown()
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()

    def _dispatch(self) -> None:
        with self._lock:
            ready = self._take()
        self._start(ready)

    def _take(self) -> list[_Job]:
        """Under the lock: the jobs at the head of the queue that fit in the free slots, marked running."""
        ready = []
        while self._queue:
            job = self._queue[0]
            if not job.future.cancelled() and job.slots > self._free:
                break
            self._queue.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            job.start = time.monotonic()
            if not self._running:
                self._busy_since = job.start
            self._running.add(job)
            self._free -= job.slots
            self._started += 1
            ready.append(job)
        return ready

    def _start(self, jobs: list[_Job]) -> None:
        for job in jobs:
            self._threads.submit(self._run, job)

    def _run(self, job: _Job) -> None:
        try:
            result, error = job.context.run(job.fn), None
        except BaseException as exc:  # handed to whoever waits on the future, as concurrent.futures does
            result, error = None, exc
        with self._lock:
            end = time.monotonic()
            self._running.discard(job)
            self._free += job.slots
            self._busy_slot_s += job.slots * (end - job.start)
            if not self._running:
                self._any_busy_s += end - self._busy_since
                self._idle.notify_all()
            ready = self._take()
        self._start(ready)
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
