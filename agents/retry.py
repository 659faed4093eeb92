"""Backend failures classified into the BackendError types, and the one tenacity policy that retries them.

One classifier, `classify_failure`, reads an HTTP status (when known) and the failure's words; the SDK
backends reach it through `classify`, which goes by the SDK's exception class names, so it serves the
anthropic and openai SDKs alike without importing either (a missing `openai` must not break the Anthropic
path); the CLI backends call it with the error text their CLI reports.
Transient errors back off with full jitter, honour Retry-After up to a cap, and stop at the attempt
limit or the caller's deadline; auth, bad request, context-window and spent-quota errors never retry.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
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
    QuotaExhausted,
    RateLimited,
)

T = TypeVar("T")
MAX_WAIT_ENV = "AUTOHARNESS_RETRY_MAX_WAIT_S"  # lowers every backend's retry wait cap (tests, impatient users)

# Words that name a failure. Without an HTTP status (a CLI's own message) the auth, rate, overload and
# connection words decide alone; with one, the status does, but for quota and context.
_AUTH = re.compile(r"\b40[13]\b|unauthori[sz]ed|invalid (x-)?api[ _-]?key|authentication|not logged in|/login"
                   r"|permission_error|forbidden", re.I)
_RATE = re.compile(r"\b429\b|rate.?limit|too many requests", re.I)
_QUOTA = re.compile(r"insufficient_quota|quota exceeded|credit balance|usage limit|billing|spend limit", re.I)
_CONTEXT = re.compile(r"context (length|window)|context_length|prompt is too long|prompt_too_long|maximum context"
                      r"|exceeds the context|ran out of room|too many tokens|input is too long|request too large",
                      re.I)
_OVERLOADED = re.compile(r"\b(50[0234]|529)\b|overloaded|high demand|server.?error|internal error|service unavailable"
                         r"|bad gateway", re.I)
_CONNECTION = re.compile(r"stream disconnected|connection (failed|refused|reset|error)|econnrefused|econnreset"
                         r"|network|error sending request|timed? ?out|socket|unable to connect", re.I)


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


def classify_failure(text: str, status: int | None = None, *, detail: str = "",
                     retry_after_s: float | None = None) -> BackendError:
    """A failure as a typed BackendError, from its HTTP status when known and its words.

    `text` becomes the error's message; `detail` is judged too but not repeated (an SDK error's body).
    """
    message = " ".join(text.split())[:1000] or "failed without a message"
    words = f"{message} {detail}"
    unknown = status is None
    if status in (401, 403) or (unknown and _AUTH.search(words)):
        return AuthFailed(message)
    if status == 402 or _QUOTA.search(words):
        return QuotaExhausted(message)  # does not come back in a minute; a fallback backend may help
    if status == 429 or (unknown and _RATE.search(words)):
        return RateLimited(message, retry_after_s=retry_after_s)
    if status == 408:
        return BackendTimeout(message, retry_after_s=retry_after_s)
    if status == 413 or _CONTEXT.search(words):
        return ContextWindowExceeded(message)
    if status == 409 or (status or 0) >= 500 or (unknown and _OVERLOADED.search(words)):
        return Overloaded(message, retry_after_s=retry_after_s)
    if unknown and _CONNECTION.search(words):
        return ConnectionFailed(message)
    if status is not None and 400 <= status < 500:
        return BadRequest(message)
    return BackendError(message)


def classify(exc: BaseException) -> BackendError | None:
    """The BackendError for an SDK or transport failure; None for anything else (a bug: let it raise)."""
    if isinstance(exc, BackendError):
        return exc
    names = _names(exc)
    status = getattr(exc, "status_code", None)
    if "APIStatusError" in names and isinstance(status, int):
        body = getattr(exc, "body", None)
        return classify_failure(f"HTTP {status}: {str(exc)[:500]}", status,
                                detail=json.dumps(body, default=str) if body is not None else "",
                                retry_after_s=retry_after_s(getattr(getattr(exc, "response", None), "headers", None)))
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
