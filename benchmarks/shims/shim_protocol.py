"""The JSON-lines channel of a shim, shared by the `*_shim.py` scripts (stdlib only: it runs inside the
benchmark's own environment, imported from the shim's folder, never by autoharness itself).

One request arrives on stdin; events go back one JSON object a line. The channel is a private copy of
stdout, and fd 1 then points at stderr, so prints from the benchmark or the agent (Python or C level)
cannot corrupt it. Every event carries the request's token, read before any agent code loads: autoharness
ignores an event without it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections.abc import Callable

_channel = sys.stdout
_lock = threading.Lock()
_token: str | None = None


def emit(obj: dict) -> None:
    with _lock:
        _channel.write(json.dumps({**obj, "token": _token} if _token else obj, default=str) + "\n")
        _channel.flush()


def serve_requests(ops: dict[str, Callable[[dict], None]]) -> None:
    """Read the request, run its op, report `done` or `fatal`, and exit at once.

    The hard exit matters: service threads and abandoned (timed-out) tasks must not keep the process alive.
    """
    global _channel, _token
    _channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        req = json.loads(sys.stdin.readline())
        _token = req.pop("token", None)
        op = ops[req["op"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        emit({"event": "fatal", "error": f"bad request: {exc!r}", "error_class": "infra"})
        os._exit(2)
    try:
        op(req)
        emit({"event": "done"})
    except BaseException as exc:
        emit({"event": "fatal", "error": f"{type(exc).__name__}: {exc}", "error_class": "infra"})
        traceback.print_exc()
        _channel.flush()
        os._exit(1)
    _channel.flush()
    sys.stderr.flush()
    os._exit(0)
