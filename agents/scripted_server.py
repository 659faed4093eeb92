"""A scripted model server: Anthropic Messages, OpenAI Responses and Chat Completions on 127.0.0.1.

The real SDKs and CLIs talk to it through their base-URL settings, so backends are tested against
the real clients. Each request that asks for a completion consumes the next step of a script:

    {"tool_calls": [{"name": "bash", "input": {"command": "ls"}}], "text": "optional preamble"}
    {"tool_calls": [{"name": "apply_patch", "input": "*** Begin Patch ..."}]}   a string input is a
                            freeform tool call (Responses `custom_tool_call`, as codex's apply_patch)
    {"text": "final answer"}
    {"refusal": "I can't help with that"}   the provider's refusal shape
    {"fault": "429", "retry_after": 1}     429 with Retry-After
    {"fault": "500"} | {"fault": "overloaded"}   server error (529 for Anthropic, 503 for OpenAI)
    {"fault": "401"} | {"fault": "context"}      auth error, the provider's context-length error
    {"fault": "cut"}        the stream (or body) stops half-way and the connection closes
    {"fault": "malformed"}  invalid JSON body or SSE data
    {"fault": "hang"}       never answers until the server stops

Any step may also carry "usage" (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
input_tokens counts uncached input only, as Anthropic reports it) and "delay_s" (sleep first).
A `responder(api, body) -> step | None` answers by content; None falls back to the script.
`api` is "anthropic", "responses" or "chat". When neither has a step, the server answers 400
"script exhausted" (a non-retryable error, so a test fails fast and visibly).

A script file is a JSON list of these steps, or {"steps": [...], "usage": {...}, "model": "..."} to set
the default usage and the model name the server reports.

Use: `with ScriptedServer(steps) as srv: ...srv.base_url...` (the root; OpenAI clients want
`srv.openai_base_url`, which ends in /v1), or from a shell `autoharness model-server --script s.json`
(also `python -m agents.scripted_server --script s.json --port 0`), which prints the URLs and serves
until interrupted: a way to try a backend offline or to rehearse a night.
`srv.requests` holds every request (method, path, api, headers without credentials, JSON body);
`srv.completions(api)` only those that asked for a completion; `srv.add(step)` extends the script.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Step = dict[str, Any]
Responder = Callable[[str, dict[str, Any]], "Step | None"]

DEFAULT_USAGE = {"input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0}
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie", re.IGNORECASE)
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def _usage(step: Step, default: dict[str, int]) -> dict[str, int]:
    return {**DEFAULT_USAGE, **default, **step.get("usage", {})}


def _calls(step: Step) -> list[tuple[str, str, str]]:
    """(name, arguments as JSON text, id suffix) for each scripted tool call."""
    return [(c["name"], json.dumps(c.get("input", {})), c.get("id") or _id("call")) for c in step.get("tool_calls", [])]


def _halves(text: str) -> list[str]:
    """Two pieces, so every delta stream really has more than one delta."""
    mid = len(text) // 2
    return [p for p in (text[:mid], text[mid:]) if p] or [""]


# ---------------------------------------------------------------- Anthropic Messages

def anthropic_message(step: Step, model: str, usage: dict[str, int]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if step.get("text") or step.get("refusal"):
        content.append({"type": "text", "text": step.get("text") or step["refusal"]})
    for name, args, cid in _calls(step):
        content.append({"type": "tool_use", "id": cid.replace("call_", "toolu_"), "name": name, "input": json.loads(args)})
    stop = "refusal" if step.get("refusal") else "tool_use" if step.get("tool_calls") else "end_turn"
    return {
        "id": _id("msg"), "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": None,
        "usage": _anthropic_usage(usage),
    }


def _anthropic_usage(u: dict[str, int]) -> dict[str, int]:
    return {"input_tokens": u["input_tokens"], "output_tokens": u["output_tokens"],
            "cache_read_input_tokens": u["cache_read_tokens"], "cache_creation_input_tokens": u["cache_write_tokens"]}


def anthropic_events(step: Step, model: str, usage: dict[str, int]) -> Iterator[tuple[str, dict[str, Any]]]:
    msg = anthropic_message(step, model, usage)
    start = {**msg, "content": [], "stop_reason": None, "usage": {**msg["usage"], "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            yield "content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}
            for piece in _halves(block["text"]):
                yield "content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}}
        else:
            head = {**block, "input": {}}
            yield "content_block_start", {"type": "content_block_start", "index": i, "content_block": head}
            for piece in _halves(json.dumps(block["input"])):
                yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                              "delta": {"type": "input_json_delta", "partial_json": piece}}
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                            "usage": msg["usage"]}
    yield "message_stop", {"type": "message_stop"}


# ---------------------------------------------------------------- OpenAI Responses

def _responses_usage(u: dict[str, int]) -> dict[str, Any]:
    total_in = u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"]
    return {"input_tokens": total_in, "input_tokens_details": {"cached_tokens": u["cache_read_tokens"]},
            "output_tokens": u["output_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": total_in + u["output_tokens"]}


def _responses_items(step: Step) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if step.get("text"):
        items.append({"type": "message", "id": _id("msg"), "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": step["text"], "annotations": [], "logprobs": []}]})
    if step.get("refusal"):
        items.append({"type": "message", "id": _id("msg"), "status": "completed", "role": "assistant",
                      "content": [{"type": "refusal", "refusal": step["refusal"]}]})
    for name, args, cid in _calls(step):
        if isinstance(json.loads(args), str):  # a string input: a freeform (custom) tool, like codex's apply_patch
            items.append({"type": "custom_tool_call", "id": _id("ctc"), "call_id": cid, "name": name,
                          "input": json.loads(args), "status": "completed"})
            continue
        items.append({"type": "function_call", "id": _id("fc"), "call_id": cid, "name": name,
                      "arguments": args, "status": "completed"})
    return items


def responses_object(step: Step, model: str, usage: dict[str, int], items: list[dict[str, Any]] | None = None,
                     status: str = "completed") -> dict[str, Any]:
    return {
        "id": _id("resp"), "object": "response", "created_at": int(time.time()), "status": status, "model": model,
        "output": _responses_items(step) if items is None else items, "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None, "instructions": None,
        "metadata": {}, "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}},
        "usage": _responses_usage(usage) if status == "completed" else None,
    }


def responses_events(step: Step, model: str, usage: dict[str, int]) -> Iterator[tuple[str, dict[str, Any]]]:
    final = responses_object(step, model, usage)
    seq = itertools.count()

    def ev(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    shell = {**final, "status": "in_progress", "output": [], "usage": None}
    yield ev("response.created", response=shell)
    yield ev("response.in_progress", response=shell)
    for idx, item in enumerate(final["output"]):
        iid = item["id"]
        if item["type"] == "message" and item["content"][0]["type"] == "refusal":
            text = item["content"][0]["refusal"]
            yield ev("response.output_item.added", output_index=idx,
                     item={**item, "status": "in_progress", "content": []})
            part = {"type": "refusal", "refusal": ""}
            yield ev("response.content_part.added", item_id=iid, output_index=idx, content_index=0, part=part)
            yield ev("response.refusal.delta", item_id=iid, output_index=idx, content_index=0, delta=text)
            yield ev("response.refusal.done", item_id=iid, output_index=idx, content_index=0, refusal=text)
            yield ev("response.content_part.done", item_id=iid, output_index=idx, content_index=0,
                     part={**part, "refusal": text})
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            yield ev("response.output_item.added", output_index=idx,
                     item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield ev("response.content_part.added", item_id=iid, output_index=idx, content_index=0, part=part)
            for piece in _halves(text):
                yield ev("response.output_text.delta", item_id=iid, output_index=idx, content_index=0,
                         delta=piece, logprobs=[])
            yield ev("response.output_text.done", item_id=iid, output_index=idx, content_index=0, text=text, logprobs=[])
            yield ev("response.content_part.done", item_id=iid, output_index=idx, content_index=0,
                     part={**part, "text": text})
        elif item["type"] == "custom_tool_call":
            yield ev("response.output_item.added", output_index=idx, item={**item, "input": "", "status": "in_progress"})
            for piece in _halves(item["input"]):
                yield ev("response.custom_tool_call_input.delta", item_id=iid, output_index=idx, delta=piece)
            yield ev("response.custom_tool_call_input.done", item_id=iid, output_index=idx, input=item["input"])
        else:
            yield ev("response.output_item.added", output_index=idx,
                     item={**item, "arguments": "", "status": "in_progress"})
            for piece in _halves(item["arguments"]):
                yield ev("response.function_call_arguments.delta", item_id=iid, output_index=idx, delta=piece)
            yield ev("response.function_call_arguments.done", item_id=iid, output_index=idx,
                     name=item["name"], arguments=item["arguments"])
        yield ev("response.output_item.done", output_index=idx, item=item)
    yield ev("response.completed", response=final)


# ---------------------------------------------------------------- OpenAI Chat Completions

def _chat_usage(u: dict[str, int]) -> dict[str, Any]:
    prompt = u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": u["output_tokens"], "total_tokens": prompt + u["output_tokens"],
            "prompt_tokens_details": {"cached_tokens": u["cache_read_tokens"]},
            "completion_tokens_details": {"reasoning_tokens": 0}}


def chat_completion(step: Step, model: str, usage: dict[str, int]) -> dict[str, Any]:
    calls = [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}} for name, args, cid in _calls(step)]
    message: dict[str, Any] = {"role": "assistant", "content": step.get("text") or None,
                               "refusal": step.get("refusal")}
    if calls:
        message["tool_calls"] = calls
    return {"id": _id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop",
                         "logprobs": None}],
            "usage": _chat_usage(usage)}


def chat_chunks(step: Step, model: str, usage: dict[str, int]) -> Iterator[tuple[str, dict[str, Any]]]:
    full = chat_completion(step, model, usage)
    base = {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"], "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[str, dict[str, Any]]:
        return "", {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    message = full["choices"][0]["message"]
    yield chunk({"role": "assistant", "content": ""})
    if message["refusal"]:
        yield chunk({"refusal": message["refusal"]})
    for piece in _halves(message["content"] or ""):
        if piece:
            yield chunk({"content": piece})
    for i, call in enumerate(message.get("tool_calls", [])):
        yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                     "function": {"name": call["function"]["name"], "arguments": ""}}]})
        for piece in _halves(call["function"]["arguments"]):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, full["choices"][0]["finish_reason"])
    yield "", {**base, "choices": [], "usage": full["usage"]}


RENDER = {
    "anthropic": (anthropic_message, anthropic_events),
    "responses": (responses_object, responses_events),
    "chat": (chat_completion, chat_chunks),
}


# ---------------------------------------------------------------- faults

def fault_response(api: str, fault: str) -> tuple[int, dict[str, Any]]:
    """(status, body) in the provider's own error shape."""
    anthropic = api == "anthropic"
    table = {
        "429": (429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached; retry later."),
        "500": (500, "api_error", "server_error", "Internal server error."),
        "overloaded": (529 if anthropic else 503, "overloaded_error", "server_overloaded", "Overloaded."),
        "401": (401, "authentication_error", "invalid_api_key", "invalid x-api-key"),
        "context": (400, "invalid_request_error", "context_length_exceeded",
                    "prompt is too long: 250000 tokens > 200000 maximum" if anthropic else
                    "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                    "250000 tokens. Please reduce the length of the messages."),
        "exhausted": (400, "invalid_request_error", "script_exhausted", "scripted server: script exhausted"),
    }
    if fault not in table:
        raise ValueError(f"unknown fault {fault!r}")
    status, atype, code, message = table[fault]
    if anthropic:
        return status, {"type": "error", "error": {"type": atype, "message": message}}
    otype = "invalid_request_error" if status == 400 else atype
    return status, {"error": {"message": message, "type": otype, "param": None, "code": code}}


# ---------------------------------------------------------------- HTTP

def _api_of(path: str) -> str | None:
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection ends, so stopping never waits on it
    server: _HTTPServer

    def log_message(self, *args: Any) -> None:  # quiet: the recorded requests are the log
        pass

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._record(self, None, None)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/models"):
            model = owner.model
            entry = {"id": model, "object": "model", "type": "model", "display_name": model,
                     "created": 0, "created_at": "2025-01-01T00:00:00Z", "owned_by": "scripted"}
            self._send_json(200, {"object": "list", "data": [entry], "has_more": False,
                                  "first_id": model, "last_id": model})
        elif path.rsplit("/", 1)[-1] in ("", "v1", "health", "healthz"):
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}})

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self._read_body()
        api = _api_of(self.path)
        owner._record(self, body, api)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/count_tokens"):
            self._send_json(200, {"input_tokens": len(json.dumps(body)) // 4})
            return
        if api is None:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}})
            return
        step = owner._next_step(api, body if isinstance(body, dict) else {})
        if step.get("delay_s"):
            owner._stopping.wait(float(step["delay_s"]))
        stream = isinstance(body, dict) and bool(body.get("stream"))
        self._answer(api, step, stream)

    def _answer(self, api: str, step: Step, stream: bool) -> None:
        owner = self.server.owner
        fault = step.get("fault")
        if fault == "hang":
            owner._stopping.wait()
            self.close_connection = True
            return
        if fault in ("429", "500", "overloaded", "401", "context", "exhausted"):
            status, err = fault_response(api, fault)
            headers = {"Retry-After": str(step.get("retry_after", 1))} if fault == "429" else {}
            self._send_json(status, err, headers)
            return
        whole, events = RENDER[api]
        usage = _usage(step, owner.usage)
        if not stream:
            data = json.dumps(whole(step, owner.model, usage)).encode()
            if fault == "malformed":
                data = data[: len(data) // 2] + b"<<not json"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if fault == "cut":
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return
            self.wfile.write(data)
            return
        self._stream(api, list(events(step, owner.model, usage)), fault)

    def _stream(self, api: str, events: list[tuple[str, dict[str, Any]]], fault: str | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        frames = [(f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n" for name, data in events]
        if api == "chat":
            frames.append("data: [DONE]\n\n")
        if fault == "malformed":  # a data line that is not JSON, in an event every client parses
            mid = len(events) // 2
            frames[mid] = (f"event: {events[mid][0]}\n" if events[mid][0] else "") + 'data: {"type": <<not json\n\n'
        if fault == "cut":
            frames = frames[: len(frames) // 2]
        for frame in frames:
            raw = frame.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
            self.wfile.flush()
        if fault == "cut":
            self.close_connection = True  # no terminating chunk: the client sees an incomplete body
            return
        self.wfile.write(b"0\r\n\r\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up mid-answer (a cut or malformed stream): expected here
        super().handle_error(request, client_address)


class ScriptedServer:
    """A local model server answering from a script; records every request it receives."""

    def __init__(self, script: list[Step] | None = None, *, responder: Responder | None = None,
                 usage: dict[str, int] | None = None, model: str = "scripted-model", port: int = 0,
                 log_path: Path | None = None):
        self.steps: list[Step] = list(script or [])
        self.responder = responder
        self.usage = {**DEFAULT_USAGE, **(usage or {})}
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.log_path = log_path
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> ScriptedServer:
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="scripted-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging and delayed requests
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The root: what the Anthropic SDK and ANTHROPIC_BASE_URL want."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What the OpenAI SDK, OPENAI_BASE_URL and codex want."""
        return self.base_url + "/v1"

    # -- script
    def add(self, *steps: Step) -> None:
        with self._lock:
            self.steps.extend(steps)

    @property
    def steps_left(self) -> int:
        with self._lock:
            return len(self.steps)

    def completions(self, api: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests that asked for a completion (of one api, if given)."""
        with self._lock:
            return [r for r in self.requests if r["api"] and (api is None or r["api"] == api)
                    and not r["path"].split("?")[0].endswith("/count_tokens")]

    def _next_step(self, api: str, body: dict[str, Any]) -> Step:
        if self.responder is not None:
            step = self.responder(api, body)
            if step is not None:
                return step
        with self._lock:
            return self.steps.pop(0) if self.steps else {"fault": "exhausted"}

    def _record(self, handler: BaseHTTPRequestHandler, body: Any, api: str | None) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items() if not _SECRET_HEADER.search(k)}
        entry = {"method": handler.command, "path": handler.path, "api": api, "headers": headers, "body": body,
                 "time": time.time()}
        with self._lock:
            self.requests.append(entry)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")


def load_script(path: Path) -> tuple[list[Step], dict[str, Any]]:
    """A script file: a JSON list of steps, or {"steps": [...], "usage": {...}, "model": "..."}.

    Returns the steps and the server's other settings (usage, model); anything else raises ValueError
    with a one-line message naming the file.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the script: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not JSON (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    extra: dict[str, Any] = {}
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"steps", "usage", "model"})
        if unknown:
            raise ValueError(f"{path}: unknown key {unknown[0]!r} (a script is a list of steps, or an object "
                             f"with steps, usage and model)")
        if "usage" in data:
            if not isinstance(data["usage"], dict) or not all(isinstance(v, int) for v in data["usage"].values()):
                raise ValueError(f"{path}: usage must be an object of token counts")
            extra["usage"] = data["usage"]
        if "model" in data:
            if not isinstance(data["model"], str) or not data["model"]:
                raise ValueError(f"{path}: model must be a non-empty string")
            extra["model"] = data["model"]
        steps = data.get("steps", [])
    else:
        steps = data
    if not isinstance(steps, list):
        raise ValueError(f"{path}: a script is a JSON list of steps, not {type(steps).__name__}")
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ValueError(f"{path}: step {i} is not an object: {json.dumps(step)[:80]}")
    return steps, extra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a scripted model on 127.0.0.1 until interrupted.")
    parser.add_argument("--script", type=Path, required=True, help="JSON list of steps (see the module docstring)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log", type=Path, help="append every request as a JSON line here")
    args = parser.parse_args(argv)
    try:
        steps, extra = load_script(args.script)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    with ScriptedServer(steps, port=args.port, log_path=args.log, **extra) as srv:
        print(srv.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
