"""Webhook notifications: a Slack-compatible JSON POST on an accepted change, on an error that stops the
run, and a summary at the end of a night.

A notification is a courtesy: a dead or failing webhook is retried briefly, logged, and `send` returns
False. It never raises, so it can never stop the loop.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from orchestrator.core.errors import ConfigError
from orchestrator.core.proc import redact, secret_values
from orchestrator.store import IterationRecord, Store


class _Transient(Exception):
    """Worth another try: no connection, a timeout, HTTP 429 or 5xx."""


class _Permanent(Exception):
    """Retrying cannot help: HTTP 4xx (a wrong or revoked webhook)."""


class Notifier:
    def __init__(self, webhook: str, secrets: list[str] | None = None, *, label: str = "autoharness",
                 timeout_s: float = 5.0, attempts: int = 4, backoff_s: float = 0.5, max_wait_s: float = 4.0,
                 deadline_s: float = 10.0, log: Any = None):
        webhook = webhook.strip()
        if webhook and urlsplit(webhook).scheme not in ("http", "https"):
            raise ConfigError(f"notify.webhook: {urlsplit(webhook).scheme or 'no'} scheme; give an http(s) URL")
        self.webhook = webhook
        self.label = label
        self.timeout_s, self.attempts = timeout_s, attempts
        self.backoff_s, self.max_wait_s, self.deadline_s = backoff_s, max_wait_s, deadline_s
        # The webhook URL is itself a credential (Slack's carries a token): it never reaches a log.
        self.secrets = sorted({*(secret_values() if secrets is None else secrets), *([webhook] if webhook else [])},
                              key=len, reverse=True)
        self.log = log if log is not None else structlog.get_logger("autoharness.notify")

    @property
    def enabled(self) -> bool:
        return bool(self.webhook)

    def send(self, text: str, **fields: Any) -> bool:
        """POST {"text": text, "autoharness": fields}. True when the webhook took it."""
        if not self.enabled:
            return False
        host = urlsplit(self.webhook).netloc
        try:
            payload = _redact_obj({"text": f"{self.label}: {text}", "autoharness": fields}, self.secrets)
            body = json.dumps(payload, default=str).encode()
            retrying = Retrying(
                stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline_s),
                wait=wait_exponential(multiplier=self.backoff_s, max=self.max_wait_s),
                retry=retry_if_exception_type(_Transient),
            )
            retrying(self._post, body)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            self.log.warning("notify_failed", host=host, attempts=exc.last_attempt.attempt_number,
                             error=redact(str(last), self.secrets))
            return False
        except Exception as exc:  # a notification must never stop the loop, whatever went wrong
            self.log.warning("notify_failed", host=host, error=redact(f"{type(exc).__name__}: {exc}", self.secrets))
            return False
        self.log.debug("notify_sent", host=host)
        return True

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.webhook, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "autoharness"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read(4096)
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Transient(f"HTTP {exc.code}") from None
            raise _Permanent(f"HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise _Transient(str(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None

    # -- the three messages ----------------------------------------------------------------------------
    def accepted(self, rec: IterationRecord) -> bool:
        text, fields = format_accepted(rec)
        return self.send(text, **fields)

    def error(self, message: str, *, iteration: int | None = None, **extra: Any) -> bool:
        text, fields = format_error(message, iteration=iteration, **extra)
        return self.send(text, **fields)

    def summary(self, night: NightSummary) -> bool:
        text, fields = format_summary(night)
        return self.send(text, **fields)


@dataclass
class NightSummary:
    iterations: int
    accepted: int
    rejected: int
    errors: int
    baseline_val: float | None
    best_val: float | None
    best_commit: str
    spend_usd: float
    unknown_cost: int           # proposals whose price is unknown: not counted in spend_usd
    budget_usd: float | None
    stop_reason: str
    baseline_test: float | None = None
    final_test: float | None = None
    best_val_remeasured: float | None = None   # an accepted best's val from draws after it was chosen (noisy)

    def best_val_text(self) -> str:
        """The best's val as its gate measured it, and, on a noisy benchmark, as re-measured since."""
        again = self.best_val_remeasured
        return _f(self.best_val) + ("" if again is None else f", re-measured {_f(again)}")

    @classmethod
    def from_store(cls, store: Store, *, stop_reason: str, budget_usd: float | None = None,
                   first_n: int = 1) -> NightSummary:
        """Counts over iterations `first_n` and later (the night's first iteration; 1 = the whole run);
        scores and spend are the run's."""
        rows = [r for r in store.iterations() if r.n >= max(first_n, 1)]
        base, best = store.iteration(0), store.best()
        return cls(
            iterations=len(rows),
            accepted=sum(r.decision == "accepted" for r in rows),
            rejected=sum(r.decision == "rejected" for r in rows),
            errors=sum(r.decision == "error" for r in rows),
            baseline_val=base.val_score if base else None,
            best_val=best.val_score if best else None,
            best_commit=best.commit_sha if best else "",
            spend_usd=store.spend_usd(),
            unknown_cost=sum(r.cost_usd is None for r in store.iterations() if r.n > 0),
            budget_usd=budget_usd,
            stop_reason=stop_reason,
            baseline_test=_kv_score(store, "baseline_test"),
            final_test=_kv_score(store, "final_test"),
            best_val_remeasured=store.fresh_mean(best.code_hash) if best and best.n > 0 else None,
        )


def format_accepted(rec: IterationRecord) -> tuple[str, dict[str, Any]]:
    backend = rec.backend + (f" ({rec.model})" if rec.model else "")
    text = (f"accepted iteration {rec.n}: val {_f(rec.best_before)} -> {_f(rec.val_score)}, "
            f"commit {rec.commit_sha[:12]}, {backend}, cost {_cost(rec.cost_usd)}")
    first = rec.summary.strip().splitlines()[0][:200] if rec.summary.strip() else ""
    if first:
        text += f"\n{first}"
    return text, {"event": "accepted", "iteration": rec.n, "val_before": rec.best_before, "val_after": rec.val_score,
                  "commit": rec.commit_sha, "backend": rec.backend, "model": rec.model, "cost_usd": rec.cost_usd}


def format_error(message: str, *, iteration: int | None = None, **fields: Any) -> tuple[str, dict[str, Any]]:
    where = f" at iteration {iteration}" if iteration is not None else ""
    return f"run stopped by an error{where}: {message}", {"event": "error", "iteration": iteration,
                                                          "message": message, **fields}


def format_summary(s: NightSummary) -> tuple[str, dict[str, Any]]:
    spend = f"${s.spend_usd:.2f}" + (f" of ${s.budget_usd:.2f}" if s.budget_usd is not None else "")
    if s.unknown_cost:
        spend += f" (+{s.unknown_cost} proposals of unknown cost)"
    lines = [
        f"night summary: stopped: {s.stop_reason}",
        f"{s.iterations} iterations: {s.accepted} accepted, {s.rejected} rejected, {s.errors} errors",
        f"best val {s.best_val_text()} (baseline {_f(s.baseline_val)})"
        + (f", commit {s.best_commit[:12]}" if s.best_commit else ""),
    ]
    if s.final_test is not None or s.baseline_test is not None:
        lines.append(f"test {_f(s.final_test)} (baseline {_f(s.baseline_test)})")
    lines.append(f"spent {spend}")
    return "\n".join(lines), {"event": "summary", **asdict(s)}


def _kv_score(store: Store, key: str) -> float | None:
    try:
        return json.loads(store.get(key, "{}") or "{}").get("score")
    except (json.JSONDecodeError, AttributeError):
        return None


def _redact_obj(obj: Any, secrets: list[str]) -> Any:
    """Redact before serialising: a secret JSON-escaped in the body would slip past a text replace."""
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {str(k): _redact_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_redact_obj(v, secrets) for v in obj]
    return obj


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _cost(x: float | None) -> str:
    return "unknown" if x is None else f"${x:.2f}"
