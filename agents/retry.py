"""Backend failures classified into the BackendError types, and the one tenacity policy that retries them.

Classification goes by the SDK's exception class names and the HTTP status, so it serves the anthropic
and openai SDKs alike without importing either (a missing `openai` must not break the Anthropic path).
Transient errors back off with full jitter, honour Retry-After up to a cap, and stop at the attempt
limit or the caller's deadline; auth, bad request and context-window errors never retry.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from orchestrator.core.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadOutput,
    BadRequest,
    ConnectionFailed,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
)

T = TypeVar("T")
MAX_WAIT_ENV = "AUTOHARNESS_RETRY_MAX_WAIT_S"  # lowers every backend's retry wait cap (tests, impatient users)

_CONTEXT_HINTS = ("context length", "context_length", "context window", "prompt is too long", "too many tokens",
                  "maximum context", "exceeds the context", "input is too long", "request too large")
_QUOTA_HINTS = ("insufficient_quota", "billing", "spend limit", "credit balance", "quota exceeded", "usage limit")


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def retry_after_s(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None when absent."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _status_error(exc: BaseException, status: int) -> BackendError:
    body = getattr(exc, "body", None)
    text = f"{exc} {json.dumps(body, default=str) if body is not None else ''}".lower()
    message = f"HTTP {status}: {str(exc)[:500]}"
    wait = retry_after_s(getattr(getattr(exc, "response", None), "headers", None))
    if status in (401, 403):
        return AuthFailed(message)
    if status == 402 or (status == 429 and any(h in text for h in _QUOTA_HINTS)):
        err = RateLimited(message)
        err.transient = False  # a spent quota does not come back in a minute; the fallback may help
        return err
    if status == 429:
        return RateLimited(message, retry_after_s=wait)
    if status == 408:
        return BackendTimeout(message, retry_after_s=wait)
    if status == 413 or any(h in text for h in _CONTEXT_HINTS):
        return ContextWindowExceeded(message)
    if status == 409 or status >= 500:
        return Overloaded(message, retry_after_s=wait)
    return BadRequest(message)


def classify(exc: BaseException) -> BackendError | None:
    """The BackendError for an SDK or transport failure; None for anything else (a bug: let it raise)."""
    if isinstance(exc, BackendError):
        return exc
    names = _names(exc)
    status = getattr(exc, "status_code", None)
    if "APIStatusError" in names and isinstance(status, int):
        return _status_error(exc, status)
    if names & {"APITimeoutError", "TimeoutException", "TimeoutError"}:
        return BackendTimeout(f"timed out: {exc}")
    if names & {"APIConnectionError", "TransportError", "StreamError", "ConnectionError"}:
        return ConnectionFailed(f"connection failed: {exc.__cause__ or exc}")
    if names & {"APIResponseValidationError", "JSONDecodeError"}:
        return BadOutput(f"unreadable response: {exc}")
    return None


def max_wait_cap(option_s: float) -> float:
    env = os.environ.get(MAX_WAIT_ENV)
    try:
        return min(option_s, float(env)) if env else option_s
    except ValueError:
        return option_s


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the server gave one, else exponential backoff with full jitter; both capped."""

    def __init__(self, cap_s: float):
        self.cap_s = cap_s
        self.jitter = tenacity.wait_random_exponential(multiplier=0.5, max=cap_s)

    def __call__(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after_s", None)
        return min(self.cap_s, hinted) if hinted is not None else self.jitter(state)


def call_with_retries(fn: Callable[[], T], *, attempts: int, max_wait_s: float, deadline: float | None = None,
                      on_retry: Callable[[BackendError, int, float], None] | None = None) -> T:
    """Run fn, classifying its failure; retry transient ones. Raises the last BackendError.

    `deadline` is a time.monotonic() value: no retry sleeps past it.
    """
    def attempt() -> T:
        try:
            return fn()
        except BackendError:
            raise
        except Exception as exc:
            err = classify(exc)
            if err is None:
                raise
            raise err from exc

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= attempts:
            return True
        return deadline is not None and time.monotonic() + (state.upcoming_sleep or 0) >= deadline

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            exc = state.outcome.exception()
            assert isinstance(exc, BackendError)
            on_retry(exc, state.attempt_number, state.upcoming_sleep or 0.0)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, BackendError) and e.transient),
        wait=_Wait(max_wait_cap(max_wait_s)),
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(attempt)
