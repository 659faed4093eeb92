"""`autoharness run`: the unattended daemon.

Without `schedule.start` it runs one session from now and exits. With a cron `start` an APScheduler
BlockingScheduler opens a window of `schedule.hours` at each fire time; inside it iterations run back to
back (in the main thread: the DebugExecutor runs jobs where the scheduler runs, so signals reach them).

Stopping: SIGTERM/SIGINT (`autoharness stop` sends SIGTERM), a STOP file or the window's end let the current
iteration finish; past `schedule.grace_s` it is cancelled (its worktree dropped, its children killed) and
redone next time. The first signal says so on the console; a second one cancels at once. A cancel that a
signal asked for makes the exit code 128 + that signal. SIGKILL loses nothing recorded: the next start
reconciles. `run --once`, `baseline` and `report --final` hold the workspace the same way (`Daemon.attended`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from rich.console import Console

from orchestrator import heartbeat
from orchestrator.console import ProgressFn as Progress
from orchestrator.console import progress_bars
from orchestrator.core import proc
from orchestrator.core.cancel import Cancellation
from orchestrator.core.config import Config
from orchestrator.core.errors import AutoharnessError, Cancelled, ConfigError
from orchestrator.driver import Driver
from orchestrator.lock import WorkspaceLock
from orchestrator.logs import configure_logging
from orchestrator.notify import NightSummary, Notifier
from orchestrator.records import decision_line
from orchestrator.report import write_report
from orchestrator.store import IterationRecord, Store

# Reasons after which a scheduled daemon waits for the next window; any other reason ends it.
NIGHTLY = ("window end", "max_iterations", "plateau")
BUDGET_WARNINGS = (0.5, 0.8)
T = TypeVar("T")


def trigger(cfg: Config) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(cfg.schedule.start, timezone=cfg.schedule.timezone)
    except (ValueError, LookupError) as exc:
        raise ConfigError(f"schedule.start / schedule.timezone: {exc}") from None


def current_window(cfg: Config, now: datetime) -> tuple[datetime, datetime] | None:
    """The window that contains `now`, if one does (a restart in the middle of the night resumes it)."""
    length = timedelta(hours=cfg.schedule.hours)
    fire = trigger(cfg).get_next_fire_time(None, now - length)
    if fire is not None and fire <= now < fire + length:
        return fire, fire + length
    return None


def next_window(cfg: Config, now: datetime | None = None) -> datetime | None:
    if not cfg.schedule.start:
        return None
    now = now or datetime.now(trigger(cfg).timezone)
    return trigger(cfg).get_next_fire_time(None, now)


class Daemon:
    """The process that holds a workspace and runs work on it: the scheduled daemon (`run`), or one piece of
    attended work (`run --once`, `baseline`, `report --final`). Both keep a heartbeat and one signal policy."""

    def __init__(self, cfg: Config, console: Console, command: str = "run"):
        self.cfg = cfg
        self.console = console
        self.stop_reason: str | None = None
        self.in_session = False
        self.scheduler: BlockingScheduler | None = None
        self.beat = heartbeat.Heartbeat(cfg.workspace / "heartbeat.json", command=command)
        self.cancel = Cancellation()
        self.exit_code = 0          # 128 + the signal when a signal's stop cancelled work (see `stopped_by`)
        self.end_reason = "unknown"  # what the heartbeat says when this process is done
        self.cancelled = False       # a forced stop cut work short
        self._signals: list[signal.Signals] = []
        self._grace: threading.Timer | None = None
        self._previous_beat: dict[str, Any] | None = None   # what a dead daemon left in heartbeat.json
        self.notifier, self.log = _observers(cfg)
        self.report = ReportWriter(lambda: _write_report(cfg), self.log)

    # -- signals: handlers only set flags, print a line and start timers; the work stops at its next safe point
    def _on_signal(self, signum: int, _frame: Any) -> None:
        sig = signal.Signals(signum)
        self._signals.append(sig)
        unit = heartbeat.unit(self.beat.state.get("phase"))
        if unit == "this iteration" and len(heartbeat.in_flight_iterations(self.beat.state)) > 1:
            unit = f"the {heartbeat.cancelled(self.beat.state)} in flight"  # "the iterations 5, 6, 7 in flight"
        if len(self._signals) > 1 and self.in_session:
            self._say(f"cancelling {heartbeat.cancelled(self.beat.state)} now")
            self._cancel_soon(f"second {sig.name}", 0)
        elif self.in_session:  # a terminal's user sees ^C; a SIGTERM is named
            drain = f"stopping after {unit} (up to {self.cfg.schedule.grace_s:g} s)"
            self._say(f"{drain}; Ctrl-C again to cancel it now" if sig is signal.SIGINT
                      else f"{sig.name}: {drain}; a second signal cancels it now")
        else:
            self._say(f"{sig.name}: stopping (no iteration is running)")
        self.request_stop(sig.name)

    def request_stop(self, reason: str) -> None:
        """Let the current iteration finish; cancel it if it is still running after the grace period. A signal
        replaces the window's end as the reason: after it the daemon exits instead of waiting for a window."""
        if self.stop_reason in (None, "window end") and reason != self.stop_reason:
            self.stop_reason = reason
            self.log.info("stop_requested", reason=reason, grace_s=self.cfg.schedule.grace_s)
        if self.in_session:
            self._cancel_soon("grace period over", self.cfg.schedule.grace_s)
        elif self.scheduler is not None and self.scheduler.running:
            threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": False}, daemon=True).start()

    @property
    def stopped_by(self) -> signal.Signals | None:
        """The signal of a stop asked for by a signal (`autoharness stop` sends SIGTERM), if that is the reason."""
        return self._signals[-1] if self._signals and self.stop_reason in {s.name for s in self._signals} else None

    def _say(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False)

    def _cancel_soon(self, why: str, after_s: float) -> None:
        if self._grace is not None and after_s > 0:
            return  # a grace period is already running
        if self._grace is not None:
            self._grace.cancel()
        self._grace = threading.Timer(max(after_s, 0.0), self._cancel, args=(why,))
        self._grace.daemon = True
        self._grace.start()

    def _cancel(self, why: str) -> None:
        """From a timer thread: ask the iteration to stop at its next safe point, and kill the child process
        groups it waits on so that point comes now."""
        if self.in_session:
            self.cancel.request(why)
            proc.terminate_all()

    # -- the workspace held, and work run on it -----------------------------------------------------------
    @contextmanager
    def _held(self) -> Iterator[None]:
        """The workspace lock, the signal policy and the heartbeat, for this process's life on the workspace."""
        lock = WorkspaceLock(self.cfg.workspace / "run.lock").acquire()
        self._previous_beat = heartbeat.read(self.cfg.workspace / "heartbeat.json")
        # Installed for the rest of the process: a late signal, while it exits, must not end it with a
        # traceback (a KeyboardInterrupt in the interpreter's shutdown) or another exit code.
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._on_signal)
        self.beat.start()
        try:
            yield
        except BaseException as exc:
            self.end_reason = f"error: {type(exc).__name__}: {exc}"[:300]
            raise
        finally:
            self.beat.stop(self.end_reason)
            (self.cfg.workspace / "STOP").unlink(missing_ok=True)  # a STOP stops this process, not the next
            lock.release()

    @contextmanager
    def _driving(self) -> Iterator[Driver]:
        """A driver for one session, with this process's heartbeat, cancellation, progress and logs."""
        self.cancel = Cancellation()
        self.in_session = True
        try:
            with progress_bars() as bars, Driver(self.cfg, progress=self._progress(bars), observers=[self.beat.phase],
                                                 cancel=self.cancel, log=self.log, locked=True) as driver:
                yield driver
        finally:
            self.in_session = False
            if self._grace:
                self._grace.cancel()
            self._grace = None

    def _progress(self, bars: Progress) -> Progress:
        def both(label: str, done: int, total: int) -> None:
            bars(label, done, total)
            self.beat.progress(label, done, total)
        return both

    def _cancelled(self, store: Store, exc: BaseException) -> str:
        """Record the work a forced stop cut short; the reason the run stopped, saying what was cancelled."""
        n, phase = self.beat.state.get("iteration"), str(self.beat.state.get("phase") or "")
        self.cancelled = True
        store.event("interrupted", f"cancelled: {exc}", iteration=n, phase=phase)
        if self.stopped_by is not None:
            self.exit_code = 128 + self.stopped_by.value
        if phase.startswith("baseline"):
            what = "the baseline cancelled: {}; it is redone next time"
        elif phase.startswith("final"):
            what = "the final test score cancelled: {}; `autoharness report --final` scores it"
        else:
            what = f"iteration {n} cancelled: {{}}; it is redone next time"
        return f"{self.stop_reason or 'cancelled'} ({what.format(exc)})"

    def attended(self, work: Callable[[Driver], T], reason: Callable[[T], str] = lambda _: "done") -> T | None:
        """One piece of work a user started and may Ctrl-C (`run --once`, `baseline`, `report --final`), under
        the daemon's signal policy. When a forced stop cut it short, `cancelled` is set, `end_reason` says what
        was cancelled and the result is None."""
        result: T | None = None
        with self._held():
            with self._driving() as driver:
                self._note_interrupted(driver.ctx.store)
                try:
                    result = work(driver)
                    self.end_reason = reason(result)
                except Cancelled as exc:
                    self.end_reason = self._cancelled(driver.ctx.store, exc)
                except Exception as exc:
                    if not self.cancel.requested:
                        raise
                    self.end_reason = self._cancelled(driver.ctx.store, exc)  # a killed child's error, after a cancel
        return result

    # -- sessions ----------------------------------------------------------------------------------------
    def session(self, window_end: float | None) -> str:
        first_n = 1
        window_timer = None
        if window_end is not None:
            window_timer = threading.Timer(max(window_end - time.time(), 0), self._window_over)
            window_timer.daemon = True
            window_timer.start()
        reason, note = "error", ""
        try:
            with self._driving() as driver:
                store = driver.ctx.store
                first_n = max(store.next_iteration(), 1)
                self._note_interrupted(store)
                try:
                    reason = driver.session(external_stop=lambda: self.stop_reason,
                                            on_iteration=lambda r: self._after(store, r), score_test=False)
                    # The test split is scored at the end of a night, not after a stop that was asked for.
                    if self.stopped_by is None and reason != "STOP file":
                        driver.final_test()
                    elif driver.ctx.splits.test:
                        note = "; the test split was not scored (`autoharness report --final` scores it)"
                except Cancelled as exc:
                    reason = self._cancelled(store, exc)
                except Exception as exc:
                    if self.cancel.requested:  # a killed child's error, after a cancel
                        reason = self._cancelled(store, exc)
                    else:
                        reason = f"error: {type(exc).__name__}: {exc}"[:300]
                        store.event("error", reason)
                        # Our own error is the command's one line when no schedule runs the night (or a bad
                        # config's, always); the log file keeps it too.
                        told = isinstance(exc, ConfigError) or (isinstance(exc, AutoharnessError)
                                                                and not self.cfg.schedule.start)
                        (self.log.info if told else self.log.error)("session_error", error=reason)
                        self.notifier.error(f"autoharness stopped on an error: {type(exc).__name__}: {exc}")
                        raise
                night = NightSummary.from_store(store, stop_reason=reason, budget_usd=self.cfg.loop.budget_usd,
                                                first_n=first_n)
        finally:
            if window_timer:
                window_timer.cancel()
            self.report.finish()  # drawn here, after the final test: complete when the session returns
        self.log.info("session_end", reason=reason)
        self.notifier.summary(night)
        self.console.print(f"stopped: {reason}{note}", highlight=False, markup=False)
        return reason

    def _window_over(self) -> None:
        if self.stop_reason is None:
            self.request_stop("window end")

    def _after(self, store: Store, rec: IterationRecord) -> None:
        self.console.print(decision_line(rec), highlight=False, markup=False)
        if rec.decision == "accepted":
            self.notifier.accepted(rec)
        self.report.request()  # current in the morning even if the night ends in a crash; drawn off this thread
        spend, budget = store.spend_usd(), self.cfg.loop.budget_usd
        warned = float(store.get("budget_warned", "0") or 0)
        for level in BUDGET_WARNINGS:
            if spend >= level * budget and warned < level:
                store.put("budget_warned", str(level))
                store.event("budget_warning", f"spent ${spend:.2f}, {level:.0%} of the ${budget:.2f} budget")
                self.log.warning("budget_warning", spend_usd=spend, budget_usd=budget, level=level)
                self.console.print(f"[yellow]budget: spent ${spend:.2f} of ${budget:.2f} ({level:.0%})[/yellow]")
                warned = level

    def _note_interrupted(self, store: Store) -> None:
        """A heartbeat left mid-phase by a dead daemon means an iteration was interrupted: record it."""
        old, self._previous_beat = self._previous_beat, None
        if old and old.get("phase") not in ("stopped", "waiting", "starting", None):
            store.event("interrupted", "found at restart: the previous daemon died mid-phase",
                        iteration=old.get("iteration"), phase=old.get("phase"), pid=old.get("pid"))

    # -- the schedule ------------------------------------------------------------------------------------
    def run(self) -> int:
        """The daemon: one session, or the scheduled windows. The exit code says how it ended (see cli.run)."""
        with self._held():
            self.end_reason = self.session(None) if not self.cfg.schedule.start else self._scheduled()
        return self.exit_code

    def _scheduled(self) -> str:
        trig = trigger(self.cfg)
        self.scheduler = BlockingScheduler(executors={"default": DebugExecutor()}, timezone=trig.timezone)
        last: list[str] = []

        def night(window_end: datetime | None = None) -> None:
            end = window_end or datetime.now(trig.timezone) + timedelta(hours=self.cfg.schedule.hours)
            reason = self.session(end.timestamp())
            last.append(reason)
            if self.stop_reason == "window end":
                self.stop_reason = None
            if self.stop_reason is None and reason.startswith(NIGHTLY):
                self._waiting()
            else:
                self.scheduler.shutdown(wait=False)

        self.scheduler.add_job(night, trig, id="night", coalesce=True, max_instances=1,
                               misfire_grace_time=int(self.cfg.schedule.hours * 3600))
        now = datetime.now(trig.timezone)
        window = current_window(self.cfg, now)
        if window is not None:
            self.scheduler.add_job(night, "date", run_date=now, args=[window[1]], id="resume")
        else:
            self._waiting()
        self.scheduler.start()
        return (last[-1] if last else None) or self.stop_reason or "stopped"

    def _waiting(self) -> None:
        nxt = next_window(self.cfg)
        self.beat.set("waiting", None, next_window=nxt.isoformat() if nxt else None)
        self.console.print(f"waiting for the next window: {nxt}", highlight=False)


def _observers(cfg: Config) -> tuple[Notifier, Any]:
    log = configure_logging(cfg.workspace / "logs", console_level="warning")
    return Notifier(cfg.notify.webhook, log=log), log


def _write_report(cfg: Config) -> None:
    write_report(cfg.workspace, budget_usd=cfg.loop.budget_usd, backend=cfg.backend, gate=cfg.gate, target=cfg.target)


class ReportWriter:
    """The report, redrawn off the loop's path. `request` only says the records changed and returns at once;
    one background thread draws, never two draws at a time, and requests made while it draws make one more
    draw, not one each (only the latest records matter), paced so that a fast stream of decisions does not
    keep a core drawing. `finish` stops the thread and draws a last time in the caller's thread, so the report
    is complete when it returns. A failed draw is logged, never raised: the morning report must never take
    the daemon down."""

    PACE = 9.0  # after a draw of d seconds, the next one waits PACE * d

    def __init__(self, write: Callable[[], None], log: Any):
        self._write, self._log = write, log
        self._cond = threading.Condition()
        self._drawing = threading.Lock()
        self._pending = self._closing = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        with self._cond:
            self._pending = True
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._serve, name="report-writer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def finish(self) -> None:
        with self._cond:
            thread, self._thread = self._thread, None
            self._closing, self._pending = True, False
            self._cond.notify()
        if thread is not None:
            thread.join()  # a draw in progress ends first
        self._draw()

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing)
                if self._closing:
                    return
                self._pending = False
            took = self._draw()
            with self._cond:  # paced: drawing takes at most 1 / (1 + PACE) of a core, however fast decisions come
                self._cond.wait_for(lambda: self._closing, timeout=took * self.PACE)

    def _draw(self) -> float:
        start = time.monotonic()
        with self._drawing:
            try:
                self._write()
            except Exception as exc:
                self._log.warning("report_failed", error=f"{type(exc).__name__}: {exc}")
        return time.monotonic() - start


def run_daemon(cfg: Config, console: Console) -> int:
    return Daemon(cfg, console).run()
