"""Scoring code on a split: the cache, infra-error policy, early stop and held-out hygiene.

Results are keyed by the content hash of the editable files (plus the benchmark settings), so the
same code is never benchmarked twice. For val and test only the reward and an error class are kept.
The benchmark's files are checked unchanged around every run of it: a change ends the night, loudly.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.console import ProgressFn as Progress
from orchestrator.core.cancel import Cancellation
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.contracts import BenchmarkRunner, TaskResult
from orchestrator.core.errors import BenchmarkChanged, BenchmarkFailed
from orchestrator.core.words import count
from orchestrator.guard import is_editable
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


def file_signature(folders: Iterable[Path], skip: Iterable[Path] = ()) -> dict[str, tuple[int, ...]]:
    """Every file and folder under `folders` (but `skip`) by its stat: type, size, inode, mtime and ctime.

    Cheap on big data folders (no file is read), and a write cannot hide: user space can reset a file's
    mtime but not its ctime, and a folder's times change when an entry is added, removed or renamed."""
    skipped = {p.resolve() for p in skip}
    roots = sorted({f.resolve() for f in folders}, key=lambda p: len(p.parts))
    sig: dict[str, tuple[int, ...]] = {}
    for root in roots:
        if any(root.is_relative_to(r) for r in skipped) or str(root) in sig:
            continue  # ours, or already walked as part of a parent
        for top, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if Path(top, d) not in skipped]
            for path in [top, *(os.path.join(top, n) for n in dirs + files)]:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                sig[path] = (st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return sig


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

    @property
    def score(self) -> float | None:
        return mean_reward(self.results)

    def rewards(self) -> dict[str, list[float | None]]:
        return {t: [s.reward for s in ss] for t, ss in self.samples.items()}


# `stop(outcome_so_far, tasks_still_to_run)` returns True to stop early.
StopRule = Callable[[Outcome, list[str]], bool]


class Evaluator:
    def __init__(self, runner: BenchmarkRunner, store: Store, traces_root: Path, config: BenchmarkConfig,
                 on_progress: Progress | None = None, cancel: Cancellation | None = None):
        self.runner = runner
        self.cancel = cancel or Cancellation()
        self.store = store
        self.traces_root = traces_root
        self.config = config
        self.on_progress = on_progress
        # The records are ours: a held-out run may not write them, and they are not the benchmark's files.
        self.records = store.path.parent
        runner.protected = [self.records]

    def evaluate(self, agent_dir: Path, chash: str, task_ids: list[str], split: str,
                 stop: StopRule | None = None, label: str = "", draws: int = 1, purpose: str = "",
                 eligible: tuple[str, ...] | None = None) -> Outcome:
        """Make sure every task has `draws` samples of this code (counting only those drawn for one of
        `eligible` purposes, if given), running what is missing one draw at a time; stop early when told."""
        out = Outcome()
        t0 = time.monotonic()
        out.samples = self.store.samples(chash, task_ids, eligible)
        out.results = {t: ss[0] for t, ss in out.samples.items()}
        out.cached = sum(min(len(ss), draws) for ss in out.samples.values())
        traces = self.traces_root / chash[:16] if split == "train" else None
        if traces is not None:
            traces.mkdir(parents=True, exist_ok=True)
        total = len(task_ids) * draws
        done = [out.cached]     # draws that count towards `total`, bumped by the runner's ticks in between
        counted = out.cached

        def tick(_task: str, _res: TaskResult) -> None:
            done[0] += 1
            if self.on_progress:
                self.on_progress(label or split, min(done[0], total), total)

        self.runner.on_result = tick
        try:
            for draw in range(draws):
                todo = [t for t in task_ids if len(out.samples.get(t, ())) <= draw]
                chunk = self.config.concurrency if stop else max(len(todo), 1)
                while todo:
                    if stop and stop(out, todo):
                        out.skipped, out.stopped_early = len(todo), True
                        break
                    batch, todo = todo[:chunk], todo[chunk:]
                    self.cancel.check()
                    fresh, ran = self._run_with_retries(agent_dir, batch, traces, split)
                    self.cancel.check()  # a batch cut short by a cancel is not a result: nothing of it is cached
                    out.ran += ran
                    for s in self.store.add_samples(chash, [self._keep(t, split, fresh[t]) for t in batch], purpose):
                        out.samples.setdefault(s.task_id, []).append(s)
                        out.results.setdefault(s.task_id, s)
                    # Each task of the batch lacked this draw and now has it: one more that counts, no recount.
                    counted += len(batch)
                    done[0] = counted
                    if self.on_progress:
                        self.on_progress(label or split, done[0], total)
                if out.stopped_early:
                    break
        finally:
            self.runner.on_result = None
        if traces is not None and not any(traces.iterdir()):
            traces.rmdir()
        out.seconds = time.monotonic() - t0
        return out

    def _run_with_retries(self, agent_dir: Path, batch: list[str], traces: Path | None,
                          split: str) -> tuple[dict[str, TaskResult], int]:
        results: dict[str, TaskResult] = {}
        pending, ran = list(batch), 0
        for _ in range(self.config.infra_retries + 1):
            before = self._signature()
            try:
                got = self.runner.run(agent_dir, pending, traces_dir=traces)
            except BenchmarkFailed:
                raise
            except Exception as exc:  # the benchmark died as a whole: every pending task is an infra error
                got = {t: TaskResult(None, error=f"benchmark crashed: {type(exc).__name__}: {exc}", error_class="crash")
                       for t in pending}
            finally:
                self._check_unchanged(before, split, pending)
            ran += len(pending) * self.config.trials
            for t in pending:
                results[t] = got.get(t) or TaskResult(None, error="no result from the benchmark", error_class="missing")
            pending = [t for t in pending if results[t].reward is None]
            if not pending:
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
