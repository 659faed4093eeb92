"""Logging: structlog JSON lines to `logs/autoharness.jsonl` (rotated), readable lines on stderr, secrets
redacted in both, and `phase()` to trace every long phase with its start, end or error, and duration.

Nothing happens at import: `configure_logging` is called once by the command that runs, and calling it
again replaces the handlers it installed instead of adding more.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import structlog

from orchestrator.core.errors import (
    AutoharnessError,
    BudgetExceeded,
    Cancelled,
    ConfigError,
    NothingToPropose,
    Rejected,
)
from orchestrator.core.proc import redact, secret_values

LOG_FILE = "autoharness.jsonl"
LOGGER = "autoharness"
_MARK = "_autoharness_handler"   # tags the handlers we own, so a second configure can remove them


class Redactor:
    """A structlog processor that replaces secret values in every string of the event."""

    def __init__(self, secrets: list[str]):
        self.secrets = secrets

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        return {k: self._clean(v) for k, v in event.items()} if self.secrets else event

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, self.secrets)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, BaseException):
            return redact(f"{type(value).__name__}: {value}", self.secrets)
        return value


def configure_logging(logs_dir: Path, *, console_level: str = "info", secrets: list[str] | None = None,
                      max_bytes: int = 10 * 1024 * 1024, backups: int = 5,
                      capture: Iterable[str] = ("apscheduler",)) -> Any:
    """Send the `autoharness` logger (and the stdlib loggers named in `capture`) to the JSON file at debug
    level and to stderr at `console_level` ("off" for none). Returns the `autoharness` structlog logger."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    redactor = Redactor(secret_values() if secrets is None else secrets)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
            redactor]

    file_handler = logging.handlers.RotatingFileHandler(logs_dir / LOG_FILE, maxBytes=max_bytes,
                                                        backupCount=backups, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[*tail, structlog.processors.JSONRenderer(default=str)]))
    handlers: list[logging.Handler] = [file_handler]
    if console_level.lower() != "off":
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(_level(console_level))
        console.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[*tail, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]))
        handlers.append(console)
    for handler in handlers:
        setattr(handler, _MARK, True)

    for name, level in ((LOGGER, logging.DEBUG), *((n, logging.INFO) for n in capture)):
        std = logging.getLogger(name)
        for old in [h for h in std.handlers if getattr(h, _MARK, False)]:
            std.removeHandler(old)
            old.close()
        for handler in handlers:
            std.addHandler(handler)
        std.setLevel(level)
        std.propagate = False

    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # a later configure (another workspace, a test) must take effect
    )
    return structlog.get_logger(LOGGER)


class PhaseObserver(Protocol):
    """Hears `(phase, iteration, **fields)` of every phase entered, and `("done", iteration)` when an iteration
    is over (the daemon's heartbeat)."""

    def __call__(self, name: str, iteration: int | None, /, **fields: Any) -> None: ...


class Phases:
    """The current phase of a long job. Entering one ends the last (`phase_end` with its duration); `end(exc)`
    closes it as `phase_error` with the error, or normally for the loop's ordinary ends. Observers (the
    daemon's heartbeat) hear of every phase entered. One Phases follows one thread of work: iterations run at
    once each get their own (`fork`)."""

    ORDINARY_ENDS = (NothingToPropose, BudgetExceeded, Rejected)   # outcomes, not failures of the phase

    def __init__(self, log: Any, observers: Iterable[PhaseObserver] = ()):
        self.base = log
        self.log = log
        self.observers = list(observers)
        self._started: float | None = None

    def enter(self, name: str, **fields: Any) -> Any:
        self.end()
        self.log = self.base.bind(phase=name, **fields)
        self._started = time.monotonic()
        self.log.info("phase_start")
        told = {k: v for k, v in fields.items() if k != "iteration"}
        for observe in self.observers:
            observe(name, fields.get("iteration"), **told)
        return self.log

    def fork(self) -> Phases:
        """A Phases for another thread of work: the same logger and observers, its own open phase."""
        return Phases(self.base, self.observers)

    def finish(self, iteration: int | None) -> None:
        """The iteration is decided or abandoned: its open phase ends and the observers hear it is done."""
        self.end()
        for observe in self.observers:
            observe("done", iteration)

    def end(self, exc: BaseException | None = None) -> None:
        if self._started is None:
            return
        took = round(time.monotonic() - self._started, 3)
        self._started = None
        if exc is None or isinstance(exc, self.ORDINARY_ENDS):
            self.log.info("phase_end", duration_s=took, **({"outcome": str(exc)} if exc else {}))
        else:
            # Known outcomes (a gate failure, a spent budget) need no traceback; anything else does. A bad
            # config ends the command with its own one line, so it goes to the log file only; so does a cancel
            # that was asked for (a second Ctrl-C): the command says what it cancelled.
            log = self.log.info if isinstance(exc, ConfigError | Cancelled) else self.log.error
            log("phase_error", duration_s=took, error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__,
                exc_info=not isinstance(exc, AutoharnessError | Cancelled | KeyboardInterrupt))

    @contextmanager
    def traced(self) -> Iterator[None]:
        """Whatever phase is open when the block ends is closed: normally, or with the exception that ended it."""
        try:
            yield
        except BaseException as exc:
            self.end(exc)
            raise
        self.end()


@contextmanager
def phase(log: Any, name: str, **fields: Any) -> Iterator[Any]:
    """One phase as a block: `phase_start`, then `phase_end` with `duration_s`, or `phase_error` and re-raise.

    Yields the logger bound with the phase's fields, for the phase's own events."""
    phases = Phases(log)
    with phases.traced():
        yield phases.enter(name, **fields)


def _level(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ConfigError(f"console_level: unknown log level {name!r}; use debug, info, warning, error or off")
    return level
