"""Scoring code on a split: the cache, infra-error policy, early stop and held-out hygiene.

Results are keyed by the content hash of the editable files (plus the benchmark settings), so the
same code is never benchmarked twice. For val and test only the reward and an error class are kept.
The benchmark's files are checked unchanged around every call that runs it: a change ends the night, loudly.
Every run goes through the one task pool (orchestrator/pool.py) that all candidates in flight share.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from orchestrator.console import ProgressFn as Progress
from orchestrator.core.cancel import Cancellation
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.contracts import BenchmarkRunner, TaskResult
from orchestrator.core.errors import BenchmarkChanged, BenchmarkFailed
from orchestrator.core.files import file_signature
from orchestrator.core.words import count
from orchestrator.guard import is_editable
from orchestrator.pool import LocalExecutor, TaskPool
from orchestrator.store import Store, StoredResult

CONTEXT_DIR = ".autoharness"  # the prompt's context folder inside a worktree; never part of the code


def code_hash(entries: list[tuple[str, str]], editable: list[str], bench: BenchmarkConfig) -> str:
    """Hash of the editable files (git tree entries: path, blob id), salted with the benchmark settings.

    Taken from what is (or will be) committed, so files the benchmark or the agent leave lying around
    (caches, bytecode) neither change it nor get benchmarked under it.
    """
    h = hashlib.sha256()
    h.update(bench.model_dump_json(exclude={"split", "concurrency", "executor", "address"}).encode())
    for path, blob in sorted(entries):
        if is_editable(path, editable):
            h.update(f"{path}\0{blob}\0".encode())
    return h.hexdigest()


def changed_paths(before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def mean_reward(results: dict[str, StoredResult]) -> float | None:
    scored = [r.reward for r in results.values() if r.reward is not None]
    return sum(scored) / len(scored) if scored else None


@dataclass
class Timer:
    """Where an iteration's time went (benchmark, backend, the rest is orchestration) and what ran."""

    started_at: float = field(default_factory=time.time)
    start: float = field(default_factory=time.monotonic)
    bench_s: float = 0.0
    backend_s: float = 0.0
    ran: int = 0
    cached: int = 0
    skipped: int = 0

    def add(self, out: Outcome) -> Outcome:
        self.bench_s += out.seconds
        self.ran += out.ran
        self.cached += out.cached
        self.skipped += out.skipped
        return out

    def fields(self) -> dict[str, float | int]:
        """The record's timing and count columns."""
        return {"duration_s": time.monotonic() - self.start, "bench_s": self.bench_s, "backend_s": self.backend_s,
                "tasks_run": self.ran, "tasks_cached": self.cached, "tasks_skipped": self.skipped}


@dataclass
class Outcome:
    results: dict[str, StoredResult] = field(default_factory=dict)     # the first sample of each task
    samples: dict[str, list[StoredResult]] = field(default_factory=dict)  # every sample asked for, in draw order
    ran: int = 0            # task runs done now (retries included)
    cached: int = 0         # samples answered from the cache
    skipped: int = 0        # tasks not run because of an early stop
    seconds: float = 0.0
    stopped_early: bool = False
    landed: list[StoredResult] = field(default_factory=list)  # `results` in the order they came: stop rules
    # read only what is new since they last looked, so checking one as each result lands stays linear

    def land(self, sample: StoredResult) -> None:
        self.samples.setdefault(sample.task_id, []).append(sample)
        if self.results.setdefault(sample.task_id, sample) is sample:
            self.landed.append(sample)

    @property
    def score(self) -> float | None:
        return mean_reward(self.results)

    def rewards(self) -> dict[str, list[float | None]]:
        return {t: [s.reward for s in ss] for t, ss in self.samples.items()}


# `stop(outcome_so_far, tasks_still_to_run)` returns True to stop early; it may be asked after every result.
StopRule = Callable[[Outcome, Collection[str]], bool]


def _settle(futures: list[Future]) -> None:
    """Wait for every job; at the first that failed, cancel the queued rest, wait for the running, raise its error."""
    wait(futures, return_when=FIRST_EXCEPTION)
    failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None), None)
    if failed is None:
        return
    for f in futures:
        f.cancel()
    wait(futures)
    raise failed.exception()


class _Call:
    """One evaluate() call while its runs are in the pool: its progress count, the benchmark's files as they were
    before its first run, and the samples that landed, stored together once those files are found unchanged."""

    def __init__(self, show: Progress | None, label: str, total: int, counted: int):
        self.show, self.label, self.total = show, label, total
        self.counted = self.done = counted   # samples that count towards `total`; done adds a batch's reports
        self.lock = threading.Lock()
        self.fresh: list[StoredResult] = []
        self.tasks: set[str] = set()         # the tasks it ran
        self.before: dict[str, tuple[int, ...]] | None = None
        # The caller's context: its progress is shown as its own (the heartbeat's iteration) from whichever
        # thread a result lands in, a batch runner's own threads included.
        self.context = contextvars.copy_context()

    def landed(self, n: int = 1) -> None:
        with self.lock:
            self.counted += n
            self.done = self.counted
            self._show()

    def reported(self, _task: str = "") -> None:
        """A batch runner said one task of the batch is done (its result lands with the batch)."""
        with self.lock:
            self.done += 1
            self._show()

    def _show(self) -> None:
        if self.show:  # under the lock: one thread at a time in the context
            self.context.run(self.show, self.label, min(self.done, self.total), self.total)


class _Pass:
    """One draw of a per-task runner's tasks, each task one pool job. A result lands in its job's thread before
    the job frees its slots, so the stop rule is checked, and our queued rest cancelled, before that slot can
    start another of our runs: at one slot the runs are exactly those of a check between tasks."""

    def __init__(self, out: Outcome, stop: StopRule | None, todo: list[str]):
        self.out, self.stop = out, stop
        self.left = dict.fromkeys(todo)      # not landed yet, in queue order
        self.futures: dict[str, Future] = {}
        self.ran: set[str] = set()
        self.stopped = False
        self.lock = threading.Lock()

    def queued(self) -> bool:
        """Whether a run of ours has yet to start: with none, a stop would save nothing, so the full results
        decide. The pool is FIFO, so the running ones come first in `left` and the scan is short."""
        return any(not f.running() and not f.done() for f in map(self.futures.__getitem__, self.left))


class _Reports:
    """A batch runner's reports of single tasks (its `on_result`), passed to the call whose batch holds the task.
    Only progress rides on them, so a task in two calls' batches at once may tick the wrong one for a while."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[tuple[set[str], Callable[[str], None]]] = []

    @contextmanager
    def watch(self, tasks: list[str], tick: Callable[[str], None]) -> Iterator[None]:
        entry = (set(tasks), tick)
        with self._lock:
            self._open.append(entry)
        try:
            yield
        finally:
            with self._lock:
                self._open.remove(entry)

    def report(self, task_id: str, _result: TaskResult) -> None:
        with self._lock:
            hit = next((e for e in self._open if task_id in e[0]), None)
            if hit is not None:
                hit[0].discard(task_id)
        if hit is not None:
            hit[1](task_id)


class Evaluator:
    """Safe to call from several threads at once: every run goes through the one task pool, and a call on code
    that another call is scoring waits for it, then finds its results in the cache."""

    def __init__(self, runner: BenchmarkRunner, store: Store, traces_root: Path, config: BenchmarkConfig,
                 on_progress: Progress | None = None, cancel: Cancellation | None = None,
                 pool: TaskPool | None = None):
        self.runner = runner
        self.cancel = cancel or Cancellation()
        self.store = store
        self.traces_root = traces_root
        self.config = config
        self.on_progress = on_progress
        self.pool = pool or TaskPool(config.concurrency, LocalExecutor())
        # The records are ours: a held-out run may not write them, and they are not the benchmark's files.
        self.records = store.path.parent
        runner.protected = [self.records]
        self._reports = _Reports()
        runner.on_result = self._reports.report
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def evaluate(self, agent_dir: Path, chash: str, task_ids: list[str], split: str,
                 stop: StopRule | None = None, label: str = "", draws: int = 1, purpose: str = "",
                 eligible: tuple[str, ...] | None = None) -> Outcome:
        """Make sure every task has `draws` samples of this code (counting only those drawn for one of
        `eligible` purposes, if given), running what is missing one draw at a time; stop early when told."""
        t0 = time.monotonic()
        with self._hold(chash):  # two candidates gated against one best share its draws instead of both running
            out = self._evaluate(agent_dir, chash, task_ids, split, stop, label, draws, purpose, eligible)
        out.seconds = time.monotonic() - t0
        return out

    @contextmanager
    def _hold(self, chash: str) -> Iterator[None]:
        with self._locks_lock:
            lock = self._locks.setdefault(chash, threading.Lock())
        with lock:
            yield

    def _evaluate(self, agent_dir: Path, chash: str, task_ids: list[str], split: str, stop: StopRule | None,
                  label: str, draws: int, purpose: str, eligible: tuple[str, ...] | None) -> Outcome:
        out = Outcome()
        out.samples = self.store.samples(chash, task_ids, eligible)
        out.results = {t: ss[0] for t, ss in out.samples.items()}
        out.landed = list(out.results.values())
        out.cached = sum(min(len(ss), draws) for ss in out.samples.values())
        traces = self.traces_root / chash[:16] if split == "train" else None
        if traces is not None:
            traces.mkdir(parents=True, exist_ok=True)
        call = _Call(self.on_progress, label or split, len(task_ids) * draws, out.cached)
        run = self._per_task if self.runner.per_task else self._batches
        try:
            for draw in range(draws):
                todo = [t for t in task_ids if len(out.samples.get(t, ())) <= draw]
                if not todo:
                    continue
                if stop and stop(out, todo):
                    out.skipped, out.stopped_early = len(todo), True
                    break
                self.cancel.check()
                if call.before is None:  # once a call, not once a run: a walk of big data folders costs
                    call.before = self._signature()
                call.tasks.update(todo)
                run(call, out, todo, stop, agent_dir, traces, split)
                if out.stopped_early:
                    break
        finally:
            if call.before is not None:
                self._check_unchanged(call.before, split, sorted(call.tasks))
            if call.fresh:
                self.store.add_samples(chash, call.fresh, purpose)
        self.cancel.check()  # what landed before a cancel is kept; the runs it cut short never land
        if traces is not None and not any(traces.iterdir()):
            traces.rmdir()
        return out

    def _per_task(self, call: _Call, out: Outcome, todo: list[str], stop: StopRule | None, agent_dir: Path,
                  traces: Path | None, split: str) -> None:
        """Every task its own pool job, all queued at once; the stop rule is checked as each result lands."""
        p = _Pass(out, stop, todo)
        slots = min(self.config.trials, self.pool.slots)  # a task's trials run at once
        with p.lock:  # a stop decided by the first landing must see every future to cancel
            for t in todo:
                p.futures[t] = self.pool.submit(partial(self._task_job, call, p, agent_dir, t, traces, split), slots)
        _settle(list(p.futures.values()))
        if p.stopped:
            out.skipped, out.stopped_early = len(todo) - len(p.ran), True

    def _task_job(self, call: _Call, p: _Pass, agent_dir: Path, task: str, traces: Path | None, split: str) -> None:
        if p.stopped or self.cancel.requested:  # started as the stop was decided: not run, so skipped
            return
        got, runs = self._run_with_retries(agent_dir, [task], traces)
        with p.lock:
            del p.left[task]
            p.ran.add(task)
            p.out.ran += runs
            if self.cancel.requested:  # maybe cut short by it: not a result
                return
            sample = self._keep(task, split, got[task])
            call.fresh.append(sample)
            if p.stopped:  # ran on after the stop: cached, but not part of the outcome
                return
            p.out.land(sample)
            call.landed()
            if p.stop and p.queued() and p.stop(p.out, p.left.keys()):
                p.stopped = True
                for t in p.left:
                    p.futures[t].cancel()  # the queued ones; a running one lands after the stop

    def _batches(self, call: _Call, out: Outcome, todo: list[str], stop: StopRule | None, agent_dir: Path,
                 traces: Path | None, split: str) -> None:
        """A batch runner runs its own processes for a whole batch: one pool job a batch, as many as `concurrency`
        tasks when there is a stop rule to check between batches, else all of them."""
        chunk = self.config.concurrency if stop else len(todo)
        while todo:
            batch, todo = todo[:chunk], todo[chunk:]
            job = partial(self._batch_job, call, agent_dir, batch, traces)
            got, runs = self.pool.submit(job, min(len(batch), self.pool.slots)).result()
            self.cancel.check()  # a batch cut short by a cancel is not a result: nothing of it is kept
            out.ran += runs
            for t in batch:
                sample = self._keep(t, split, got[t])
                call.fresh.append(sample)
                out.land(sample)
            call.landed(len(batch))
            if todo and stop and stop(out, todo):
                out.skipped, out.stopped_early = len(todo), True
                return

    def _batch_job(self, call: _Call, agent_dir: Path, batch: list[str],
                   traces: Path | None) -> tuple[dict[str, TaskResult], int]:
        with self._reports.watch(batch, call.reported):
            return self._run_with_retries(agent_dir, batch, traces)

    def _run_with_retries(self, agent_dir: Path, tasks: list[str],
                          traces: Path | None) -> tuple[dict[str, TaskResult], int]:
        results: dict[str, TaskResult] = {}
        pending, ran = list(tasks), 0
        for _ in range(self.config.infra_retries + 1):
            try:
                got = self.pool.executor.run(self.runner, agent_dir, pending, traces)
            except BenchmarkFailed:
                raise
            except Exception as exc:  # the benchmark died as a whole: every pending task is an infra error
                got = {t: TaskResult(None, error=f"benchmark crashed: {type(exc).__name__}: {exc}", error_class="crash")
                       for t in pending}
            ran += len(pending) * self.config.trials
            for t in pending:
                results[t] = got.get(t) or TaskResult(None, error="no result from the benchmark", error_class="missing")
            pending = [t for t in pending if results[t].reward is None]
            if not pending or self.cancel.requested:  # no retry of a run a cancel cut short
                break
        return results, ran

    def _signature(self) -> dict[str, tuple[int, ...]]:
        return file_signature(self.runner.benchmark_files(), skip=[self.records])

    def _check_unchanged(self, before: dict[str, tuple[int, ...]], split: str, tasks: list[str]) -> None:
        """Never a silent accept: a run that changed the benchmark is recorded as such, and ends the night."""
        changed = changed_paths(before, self._signature())
        if not changed:
            return
        message = (f"the benchmark's files changed during a {split} run of {count(len(tasks), 'task')}: "
                   f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}; its results are void, "
                   "check the benchmark before the next run")
        self.store.event("benchmark_changed", message, split=split, paths=changed[:100])
        raise BenchmarkChanged(message)

    def _keep(self, task_id: str, split: str, res: TaskResult) -> StoredResult:
        reward, error_class, error = res.reward, res.error_class, res.error
        if reward is None:
            if self.config.infra_error == "fail":
                reward, error_class = 0.0, res.error_class or "infra"
            else:
                error_class = "dropped"
                self.store.event("dropped", f"{split} task dropped after infra errors", task_id=task_id,
                                 error_class=res.error_class)
        elif not 0 <= reward <= 1:  # a runner's bug (NaN too): unscorable, and said so
            said = f"reward {reward!r} is not a number in [0, 1]"
            reward, error_class, error = 0.0, "bad_reward", f"{said}: {error}" if error else said
        if error_class == "" and reward < 1.0:
            error_class = "failed"
        # Held-out hygiene: for val and test nothing but the id, the reward and the error class is kept.
        error = error[-4000:] if split == "train" else ""
        return StoredResult(task_id, split, reward, error_class, error, res.duration_s, res.cost_usd)
