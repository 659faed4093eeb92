"""The run driver: the one way every entry point (the CLI's commands, the daemon, the demo, the bench) runs work
on a workspace. It owns the lock, the logs, reconciling git with the records, the baseline, a session with
its stop conditions, and the final test score.

    with Driver(cfg, progress=bars) as driver:
        reason = driver.session(limit=1)      # `run --once`: a session of at most one iteration
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from orchestrator import pipeline
from orchestrator.context import RunContext
from orchestrator.core import proc, reaper
from orchestrator.core.cancel import Cancellation
from orchestrator.core.config import Config
from orchestrator.core.errors import BudgetExceeded, Decision, NothingToPropose
from orchestrator.evaluate import Outcome, Progress
from orchestrator.flights import Flight
from orchestrator.lock import WorkspaceLock
from orchestrator.logs import PhaseObserver, Phases, configure_logging
from orchestrator.store import IterationRecord


def plateau_count(rows: list[IterationRecord]) -> int:
    """Rejections (and errors) in a row since the last accepted change, in the order they were decided."""
    count = 0
    for r in sorted(rows, key=lambda r: (r.decided_at, r.n), reverse=True):
        if r.decision in (Decision.ACCEPTED, Decision.BASELINE):
            break
        count += 1
    return count


T = TypeVar("T")


def _done_now(work: Callable[[], T]) -> Future[T]:
    """Run `work` in this thread; its result (or exception) as a finished future."""
    fut: Future[T] = Future()
    try:
        fut.set_result(work())
    except BaseException as exc:
        fut.set_exception(exc)
    return fut


class Driver:
    def __init__(self, cfg: Config, *, progress: Progress | None = None, observers: Iterable[PhaseObserver] = (),
                 cancel: Cancellation | None = None, log: Any = None, locked: bool = False):
        """`locked`: the caller already holds the workspace lock (the daemon, across its windows)."""
        self.cfg = cfg
        self.progress = progress
        self.observers = list(observers)
        self.cancel = cancel or Cancellation()
        self.log = log
        self.locked = locked
        self._lock: WorkspaceLock | None = None
        self._ctx: RunContext | None = None

    def __enter__(self) -> Driver:
        if not self.locked:
            self._lock = WorkspaceLock(self.cfg.workspace / "run.lock").acquire()
        try:
            # Phases go to workspace/logs as JSON lines; the console keeps the progress bars and results.
            self.log = self.log or configure_logging(self.cfg.workspace / "logs", console_level="warning")
            self._ctx = RunContext(self.cfg, Phases(self.log, self.observers), self.progress, self.cancel)
            self.reconcile()
            _ = self.ctx.splits  # frozen (or checked against what is frozen) before any work: a bad split is one line
            # The coding agent's sandbox, resolved before any work too (one line when none can run), and kept
            # for `status` and the report: "none" is shown, never implied.
            self.ctx.store.put("sandbox", self.ctx.sandbox_kind)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def ctx(self) -> RunContext:
        assert self._ctx is not None, "use the driver as a context manager"
        return self._ctx

    def reconcile(self) -> list[str]:
        """Bring git in line with the records after a crash; return what was done."""
        ctx, cfg = self.ctx, self.cfg
        done = [f"removed stale worktree {p}" for p in ctx.repo.prune_worktrees(ctx.worktree_root)]
        done += reaper.sweep(ctx.sandbox_kind)  # what a killed daemon's sandbox left: a docker container
        ctx.repo.check_branch_free(ctx.worktree_root)
        best = ctx.store.best()
        if best is None:
            return done
        if best.config_hash and best.config_hash != cfg.digest():
            ctx.store.event("config_changed", "the config differs from the one of the best iteration",
                            before=best.config_hash, after=cfg.digest())
            self.log.info("config_changed", before=best.config_hash, after=cfg.digest())
        tip = ctx.repo.tip()
        if tip != best.commit_sha:
            ctx.repo.reset_branch(best.commit_sha)
            ctx.store.event("reconcile", f"branch moved back from {tip[:12]} to the recorded best {best.commit_sha[:12]}")
            done.append(f"reset {cfg.target.branch} to {best.commit_sha[:12]}")
        ctx.repo.tag_best(best.commit_sha)
        return done

    def baseline(self) -> IterationRecord:
        return pipeline.baseline(self.ctx)

    def stop_reason(self, in_flight: int = 0) -> str | None:
        """Why no further iteration may start now, or None; `in_flight` iterations count as if decided (and
        rejected: plateau), so that K in flight never overshoot max_iterations or the plateau."""
        loop, store = self.cfg.loop, self.ctx.store
        rows = store.iterations()
        if self.ctx.ws.stop_file.exists():
            return "STOP file"
        if sum(1 for r in rows if r.n > 0) + in_flight >= loop.max_iterations:
            return f"max_iterations ({loop.max_iterations})"
        if plateau_count(rows) + in_flight >= loop.plateau:
            return f"plateau ({loop.plateau} rejections in a row)"
        if store.spend_usd() >= loop.budget_usd:
            return f"budget_usd (${store.spend_usd():.2f} of ${loop.budget_usd:.2f})"
        return None

    def session(self, *, limit: int | None = None, external_stop: Callable[[], str | None] = lambda: None,
                on_iteration: Callable[[IterationRecord], None] | None = None, score_test: bool = True) -> str:
        """Baseline if needed, then iterations until a stop condition (or `limit` iterations); the reason is
        recorded. Then, unless told not to, the test split is scored once on the best commit."""
        store = self.ctx.store
        run_id = store.start_run(self.cfg.digest())
        reason = "unknown"
        try:
            self.baseline()
            reason = self._iterations(limit, external_stop, on_iteration or (lambda _: None))
        except BaseException as exc:
            reason = f"interrupted: {type(exc).__name__}: {exc}"[:300]
            raise
        finally:
            store.event("stop", reason)
            store.finish_run(run_id, reason)
        if reason == "STOP file":
            self.ctx.ws.stop_file.unlink(missing_ok=True)  # a STOP stops one session, not every one after it
        if score_test:
            self.final_test()
        return reason

    def _iterations(self, limit: int | None, external_stop: Callable[[], str | None],
                    on_iteration: Callable[[IterationRecord], None]) -> str:
        """Up to `loop.parallel` iterations in flight until a stop condition; the reason. One runs here, in this
        thread; several run each in a thread of its own, and are decided as they finish. A stop lets those in
        flight finish (a forced one cancels them at their next safe point)."""
        ctx, k = self.ctx, self.cfg.loop.parallel
        running: dict[Future[IterationRecord], int] = {}
        started, reason, failure = 0, "", None
        with ThreadPoolExecutor(max_workers=k, thread_name_prefix="candidate") as threads:
            try:
                while True:
                    while not reason and failure is None and len(running) < k:
                        flight, reason = self._next_flight(len(running), started, limit, external_stop)
                        if flight is None:
                            break
                        started += 1
                        if k == 1:  # here, as a future that is already done
                            running[_done_now(lambda f=flight: pipeline.iterate(ctx, f))] = flight.n
                        else:
                            running[threads.submit(lambda f=flight: pipeline.iterate(ctx.for_worker(), f))] = flight.n
                    if not running:
                        return reason or self.stop_reason() or "nothing to start"
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in sorted(done, key=running.__getitem__):
                        running.pop(fut)
                        try:
                            on_iteration(fut.result())
                        except NothingToPropose:
                            reason = reason or "nothing left to propose"
                        except BudgetExceeded as exc:
                            reason = reason or f"budget_usd ({exc})"
                        except BaseException as exc:  # the night ends with it, once those in flight are decided
                            failure = failure or exc
                    if failure is not None and not running:
                        raise failure
            except BaseException:
                # Interrupted here (not by the daemon, which stops at safe points): those in flight stop too.
                if running:
                    ctx.cancel.request("the run was interrupted")
                    proc.terminate_all()
                    wait(running)
                raise

    def _next_flight(self, in_flight: int, started: int, limit: int | None,
                     external_stop: Callable[[], str | None]) -> tuple[Flight | None, str]:
        """The next iteration to start (its number, its cost cap), or None and, when no other will start in this
        session, the reason. While others are in flight, a start may only wait: for their decisions (max_iterations,
        plateau) or their spend (a proposal starts when the budget left, less the caps in flight, covers its cap)."""
        ctx, loop = self.ctx, self.cfg.loop
        capped = f"limit ({limit} iteration{'s' if limit != 1 else ''})" if limit is not None and started >= limit else ""
        why = external_stop() or self.stop_reason(in_flight) or capped
        if why:
            final = not in_flight or bool(external_stop() or self.stop_reason() or capped)
            return None, why if final else ""
        left = loop.budget_usd - ctx.store.spend_usd()
        if not in_flight:
            cap = max(min(self.cfg.backend.max_cost_usd, left), 0.01)
        elif left - ctx.flights.reserved_usd() >= self.cfg.backend.max_cost_usd:
            cap = self.cfg.backend.max_cost_usd
        else:
            return None, ""
        return ctx.flights.take(ctx.store.free_iteration(ctx.flights.numbers()), cap), ""  # a crash's holes first

    def final_test(self) -> Outcome | None:
        return pipeline.score_test(self.ctx)
