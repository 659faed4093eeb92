"""The webhook notifier against real local HTTP servers: one that works, one that recovers, one that never
does, and no server at all."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.core.errors import ConfigError
from orchestrator.notify import NightSummary, Notifier
from orchestrator.store import IterationRecord, Store

FAST = dict(backoff_s=0.01, max_wait_s=0.05, timeout_s=10.0)  # a timeout no local answer comes near, even loaded


class Hook:
    """A webhook on 127.0.0.1 that answers with the given statuses in turn (the last one repeats)."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append({"json": json.loads(body), "type": self.headers["Content-Type"],
                                    "path": self.path})
                status = hook.statuses.pop(0) if len(hook.statuses) > 1 else hook.statuses[0]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"nope")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/hooksecret"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_factory() -> Iterator:
    hooks: list[Hook] = []

    def make(statuses: list[int]) -> Hook:
        hooks.append(Hook(statuses).__enter__())
        return hooks[-1]
    yield make
    for h in hooks:
        h.__exit__()


class Recorder:
    """Stands in for the structlog logger, to see what a failure logs."""

    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **kw: self.events.append((level, event, kw))


def test_success_posts_slack_compatible_json(hook_factory):
    hook = hook_factory([200])
    assert Notifier(hook.url, secrets=[], **FAST).send("hello", iteration=3, best=0.5) is True
    (req,) = hook.bodies
    assert req["type"] == "application/json" and req["path"].endswith("/hooksecret")
    assert req["json"] == {"text": "autoharness: hello", "autoharness": {"iteration": 3, "best": 0.5}}


def test_transient_errors_are_retried(hook_factory):
    hook = hook_factory([500, 503, 200])
    assert Notifier(hook.url, secrets=[], **FAST).send("again") is True
    assert len(hook.bodies) == 3
    assert all(b["json"]["text"] == "autoharness: again" for b in hook.bodies)


def test_always_failing_webhook_returns_false_without_raising(hook_factory):
    hook = hook_factory([500])
    log = Recorder()
    assert Notifier(hook.url, secrets=[], attempts=3, log=log, **FAST).send("lost") is False
    assert len(hook.bodies) == 3  # bounded: exactly `attempts` tries
    (level, event, kw) = log.events[-1]
    assert (level, event, kw["attempts"]) == ("warning", "notify_failed", 3)
    assert "HTTP 500" in kw["error"] and "hooksecret" not in json.dumps(kw)


def test_client_error_is_not_retried(hook_factory):
    hook = hook_factory([404])
    log = Recorder()
    assert Notifier(hook.url, secrets=[], log=log, **FAST).send("gone") is False
    assert len(hook.bodies) == 1
    assert "HTTP 404" in log.events[-1][2]["error"]


def test_nothing_listening_returns_false():
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Recorder()
    n = Notifier(f"http://127.0.0.1:{port}/hook", secrets=[], attempts=3, log=log, **FAST)
    assert n.send("nobody") is False
    assert log.events[-1][1] == "notify_failed" and log.events[-1][2]["attempts"] == 3
    assert "refused" in log.events[-1][2]["error"].lower()


def test_deadline_bounds_a_hanging_webhook():
    with socket.socket() as srv:  # accepts the connection, never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        log = Recorder()
        n = Notifier(f"http://127.0.0.1:{srv.getsockname()[1]}/", secrets=[], timeout_s=0.2, attempts=50,
                     backoff_s=0.01, max_wait_s=0.01, deadline_s=0.5, log=log)
        assert n.send("slow") is False
    assert log.events[-1][2]["attempts"] < 50


def test_empty_webhook_is_disabled_and_bad_scheme_is_config_error():
    assert Notifier("", secrets=[]).enabled is False
    assert Notifier("   ").send("x") is False
    with pytest.raises(ConfigError, match="notify.webhook"):
        Notifier("file:///etc/passwd")


def test_secrets_are_redacted_in_text_and_fields(hook_factory):
    hook = hook_factory([200])
    secret = 'sk-ant-"quoted"\\secret'
    n = Notifier(hook.url, secrets=[secret], **FAST)
    assert n.send(f"key {secret} leaked", detail={"nested": [f"x{secret}y"]}) is True
    raw = json.dumps(hook.bodies[0]["json"])
    assert "sk-ant" not in raw and raw.count("[REDACTED]") == 2


def test_secret_values_from_environment_by_default(hook_factory, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "tok-1234567890")
    hook = hook_factory([200])
    assert Notifier(hook.url, **FAST).error("auth failed with tok-1234567890", iteration=4) is True
    body = hook.bodies[0]["json"]
    assert "tok-1234567890" not in json.dumps(body)
    assert body["text"] == "autoharness: run stopped by an error at iteration 4: auth failed with [REDACTED]"
    assert body["autoharness"]["event"] == "error"


def test_accepted_message(hook_factory):
    hook = hook_factory([200])
    rec = IterationRecord(n=3, started_at=0, decided_at=1, decision="accepted", val_score=0.75, best_before=0.25,
                          commit_sha="0123456789abcdef", backend="claude-code", model="sonnet", cost_usd=None,
                          summary="Teach beta\n\nlonger body")
    assert Notifier(hook.url, secrets=[], **FAST).accepted(rec) is True
    body = hook.bodies[0]["json"]
    assert body["text"] == ("autoharness: accepted iteration 3: val 0.2500 -> 0.7500, commit 0123456789ab, "
                            "claude-code (sonnet), cost unknown\nTeach beta")
    assert body["autoharness"]["cost_usd"] is None and body["autoharness"]["val_after"] == 0.75


def test_night_summary_from_store(hook_factory, tmp_path):
    store = Store(tmp_path / "state.db")
    rows = [("baseline", 0.25, 0.0), ("accepted", 0.5, 1.25), ("rejected", None, None), ("error", None, 0.5),
            ("accepted", 0.75, 2.0)]
    for n, (decision, val, cost) in enumerate(rows):
        store.record_iteration(IterationRecord(n=n, started_at=n, decided_at=n, decision=decision, val_score=val,
                                               cost_usd=cost, commit_sha=f"c{n}" * 8))
        if n:
            store.event("proposal", "ok", iteration=n, cost_usd=cost)
    store.put("baseline_test", json.dumps({"score": 0.3}))
    store.put("final_test", json.dumps({"score": 0.6}))
    night = NightSummary.from_store(store, stop_reason="plateau (8 rejections in a row)", budget_usd=50.0, first_n=2)
    store.close()
    assert (night.iterations, night.accepted, night.rejected, night.errors) == (3, 1, 1, 1)
    assert (night.best_val, night.baseline_val, night.final_test) == (0.75, 0.25, 0.6)
    assert night.spend_usd == pytest.approx(3.75) and night.unknown_cost == 1

    hook = hook_factory([200])
    assert Notifier(hook.url, secrets=[], **FAST).summary(night) is True
    text = hook.bodies[0]["json"]["text"]
    assert "stopped: plateau" in text and "3 iterations: 1 accepted, 1 rejected, 1 errors" in text
    assert "best val 0.7500 (baseline 0.2500)" in text and "test 0.6000 (baseline 0.3000)" in text
    assert "spent $3.75 of $50.00 (+1 proposals of unknown cost)" in text
    assert hook.bodies[0]["json"]["autoharness"]["budget_usd"] == 50.0
