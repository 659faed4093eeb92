"""The scripted model server, spoken to by the real anthropic and openai SDKs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from agents.scripted_server import ScriptedServer
from tests.helpers import REPO

CALL = {"tool_calls": [{"name": "str_replace_based_edit_tool",
                        "input": {"command": "create", "path": "a.txt", "file_text": "hello\n"}}],
        "text": "I will create a.txt"}
USAGE = {"input_tokens": 1200, "output_tokens": 340, "cache_read_tokens": 5000, "cache_write_tokens": 700}
MSG = [{"role": "user", "content": "fix the agent"}]


def _anthropic(srv: ScriptedServer, stream: bool, timeout: float = 5):
    client = anthropic.Anthropic(api_key="sk-test-secret", base_url=srv.base_url, max_retries=0, timeout=timeout)
    if stream:
        with client.messages.stream(model="m", max_tokens=100, messages=MSG) as s:
            return s.get_final_message()
    return client.messages.create(model="m", max_tokens=100, messages=MSG)


def _openai(srv: ScriptedServer, timeout: float = 5) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-secret", base_url=srv.openai_base_url, max_retries=0, timeout=timeout)


def _responses(srv: ScriptedServer, stream: bool, timeout: float = 5):
    client = _openai(srv, timeout)
    if stream:
        with client.responses.stream(model="m", input="fix the agent") as s:
            kinds = [ev.type for ev in s]
            final = s.get_final_response()
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        return final
    return client.responses.create(model="m", input="fix the agent")


def _chat(srv: ScriptedServer, stream: bool):
    client = _openai(srv)
    if not stream:
        return client.chat.completions.create(model="m", messages=MSG)
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    return chunks


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_call_then_text(stream: bool) -> None:
    with ScriptedServer([CALL, {"text": "done"}], usage=USAGE) as srv:
        first = _anthropic(srv, stream)
        second = _anthropic(srv, stream)
        assert srv.steps_left == 0
        recorded = srv.completions("anthropic")
    assert first.stop_reason == "tool_use"
    assert first.content[0].text == "I will create a.txt"
    tool = first.content[1]
    assert tool.type == "tool_use" and tool.name == "str_replace_based_edit_tool"
    assert tool.input == CALL["tool_calls"][0]["input"]
    assert first.usage.input_tokens == 1200 and first.usage.output_tokens == 340
    assert first.usage.cache_read_input_tokens == 5000 and first.usage.cache_creation_input_tokens == 700
    assert second.stop_reason == "end_turn" and second.content[0].text == "done"
    assert len(recorded) == 2 and recorded[0]["body"]["messages"] == MSG
    assert recorded[0]["body"].get("stream", False) is stream
    assert "x-api-key" not in recorded[0]["headers"] and "sk-test-secret" not in json.dumps(recorded)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_call_then_text(stream: bool) -> None:
    with ScriptedServer([CALL, {"text": "done"}], usage=USAGE) as srv:
        first = _responses(srv, stream)
        second = _responses(srv, stream)
        recorded = srv.completions("responses")
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["str_replace_based_edit_tool"]
    assert json.loads(calls[0].arguments) == CALL["tool_calls"][0]["input"]
    assert first.output_text == "I will create a.txt"
    # OpenAI counts cached tokens inside input_tokens.
    assert first.usage.input_tokens == 1200 + 5000 + 700
    assert first.usage.input_tokens_details.cached_tokens == 5000
    assert first.usage.output_tokens == 340
    assert second.output_text == "done"
    assert recorded[0]["body"]["input"] == "fix the agent"
    assert "authorization" not in recorded[0]["headers"]


def test_chat_completions_non_streaming() -> None:
    with ScriptedServer([CALL, {"text": "done"}], usage=USAGE) as srv:
        first = _chat(srv, False)
        second = _chat(srv, False)
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls[0].function.name == "str_replace_based_edit_tool"
    assert json.loads(msg.tool_calls[0].function.arguments) == CALL["tool_calls"][0]["input"]
    assert first.usage.prompt_tokens == 6900 and first.usage.prompt_tokens_details.cached_tokens == 5000
    assert second.choices[0].message.content == "done"


def test_chat_completions_streaming_tool_call_deltas_and_usage_chunk() -> None:
    with ScriptedServer([CALL], usage=USAGE) as srv:
        chunks = _chat(srv, True)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    args = "".join(tc.function.arguments or "" for d in deltas for tc in (d.tool_calls or []))
    names = [tc.function.name for d in deltas for tc in (d.tool_calls or []) if tc.function.name]
    text = "".join(d.content or "" for d in deltas)
    assert names == ["str_replace_based_edit_tool"]
    assert len([d for d in deltas if d.tool_calls]) >= 3  # the head and at least two argument pieces
    assert json.loads(args) == CALL["tool_calls"][0]["input"]
    assert text == "I will create a.txt"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 340


@pytest.mark.parametrize("api", ["anthropic", "responses", "chat"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("fault", "error"), [
    ("429", "RateLimitError"), ("500", "InternalServerError"), ("401", "AuthenticationError"),
    ("context", "BadRequestError"), ("overloaded", "InternalServerError"),
])
def test_status_faults_in_each_format(api: str, stream: bool, fault: str, error: str) -> None:
    call = {"anthropic": _anthropic, "responses": _responses, "chat": _chat}[api]
    sdk = anthropic if api == "anthropic" else openai
    with ScriptedServer([{"fault": fault, "retry_after": 7}, {"text": "after the fault"}]) as srv:
        with pytest.raises(getattr(sdk, error)) as info:
            call(srv, stream)
        recovered = call(srv, stream)
    if fault == "429":
        assert info.value.response.headers["retry-after"] == "7"
    if fault == "context":
        assert "context length" in str(info.value) or "too long" in str(info.value)
    assert recovered is not None  # the fault consumed its step; the next request gets the next one


@pytest.mark.parametrize("api", ["anthropic", "responses", "chat"])
@pytest.mark.parametrize("stream", [False, True])
def test_cut_and_malformed_fail_in_the_client(api: str, stream: bool) -> None:
    call = {"anthropic": _anthropic, "responses": _responses, "chat": _chat}[api]
    sdk = anthropic if api == "anthropic" else openai
    with ScriptedServer([{**CALL, "fault": "cut"}, {**CALL, "fault": "malformed"}]) as srv:
        with pytest.raises((sdk.APIConnectionError, httpx2.TransportError)):
            call(srv, stream)
        with pytest.raises((ValueError, sdk.APIResponseValidationError)):
            call(srv, stream)


@pytest.mark.parametrize("api", ["anthropic", "responses"])
def test_hang_times_out_and_stop_releases_it(api: str) -> None:
    call = {"anthropic": _anthropic, "responses": _responses}[api]
    sdk = anthropic if api == "anthropic" else openai
    srv = ScriptedServer([{"fault": "hang"}]).start()
    try:
        with pytest.raises(sdk.APITimeoutError):
            call(srv, True, timeout=1)
    finally:
        srv.stop()


def test_exhausted_script_is_a_non_retryable_error() -> None:
    with ScriptedServer([]) as srv, pytest.raises(anthropic.BadRequestError, match="script exhausted"):
        _anthropic(srv, False)


def test_responder_answers_by_content_and_falls_back_to_the_script() -> None:
    def responder(api: str, body: dict) -> dict | None:
        text = json.dumps(body)
        return {"text": f"user-sim via {api}"} if "I am the user simulator" in text else None

    with ScriptedServer([{"text": "agent answer"}], responder=responder) as srv:
        client = _openai(srv)
        sim = client.chat.completions.create(model="m", messages=[{"role": "system", "content": "I am the user simulator"}])
        agent = client.chat.completions.create(model="m", messages=MSG)
    assert sim.choices[0].message.content == "user-sim via chat"
    assert agent.choices[0].message.content == "agent answer"


def test_models_and_probes() -> None:
    with ScriptedServer([], model="my-model") as srv:
        assert [m.id for m in _openai(srv).models.list().data] == ["my-model"]
        client = anthropic.Anthropic(api_key="k", base_url=srv.base_url, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["my-model"]
        with urllib.request.urlopen(srv.base_url + "/") as resp:
            assert resp.status == 200
        count = client.messages.count_tokens(model="m", messages=MSG)
        assert count.input_tokens > 0
        assert srv.completions() == []  # probes consume no step


def test_runs_as_a_script_for_a_users_trial(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"steps": [{"text": "hello from the script"}], "model": "trial"}))
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, str(REPO / "agents" / "scripted_server.py"),
                             "--script", str(script), "--port", "0", "--log", str(log)],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0, timeout=5)
        reply = client.responses.create(model="trial", input="hi")
        assert reply.output_text == "hello from the script" and reply.model == "trial"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert logged[0]["path"] == "/v1/responses" and logged[0]["body"]["input"] == "hi"


@pytest.mark.parametrize("stream", [False, True])
def test_refusal_in_each_format(stream: bool) -> None:
    refusal = {"refusal": "I can't help with that."}
    with ScriptedServer([refusal] * 3) as srv:
        message = _anthropic(srv, stream)
        response = _responses(srv, stream)
        chat = _chat(srv, stream)
    assert message.stop_reason == "refusal" and message.content[0].text == refusal["refusal"]
    assert response.output[0].content[0].type == "refusal"
    assert response.output[0].content[0].refusal == refusal["refusal"]
    if stream:
        assert "".join(c.choices[0].delta.refusal or "" for c in chat if c.choices) == refusal["refusal"]
    else:
        assert chat.choices[0].message.refusal == refusal["refusal"]


def test_model_server_command_serves_a_script(tmp_path: Path) -> None:
    """`autoharness model-server`: the URLs first, then real SDK requests answered from the script file."""
    script = tmp_path / "s.json"
    script.write_text(json.dumps([{"text": "hello from the model server", "usage": {"output_tokens": 7}}]))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "model-server", "--script", str(script),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        urls = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(2))
        assert set(urls) == {"ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"}, urls
        root = urls["ANTHROPIC_BASE_URL"]
        assert root.startswith("http://127.0.0.1:") and urls["OPENAI_BASE_URL"] == root + "/v1"
        client = anthropic.Anthropic(api_key="k", base_url=root, max_retries=0, timeout=30)
        reply = client.messages.create(model="m", max_tokens=100, messages=MSG)
        assert reply.content[0].text == "hello from the model server" and reply.usage.output_tokens == 7
        # The script is spent: the next request is the non-retryable "script exhausted".
        with pytest.raises(openai.BadRequestError, match="script exhausted"):
            openai.OpenAI(api_key="k", base_url=urls["OPENAI_BASE_URL"], max_retries=0,
                          timeout=30).chat.completions.create(model="m", messages=MSG)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot read the script"),
    ("{not json", "not JSON"),
    ('{"text": "a step, not a list"}', "unknown key 'text'"),
    ('[{"text": "fine"}, "not a step"]', "step 1 is not an object"),
    ('"just a string"', "a script is a JSON list of steps"),
])
def test_model_server_command_refuses_a_bad_script(tmp_path: Path, content: str | None, says: str) -> None:
    script = tmp_path / "s.json"
    if content is not None:
        script.write_text(content)
    res = subprocess.run([sys.executable, "-m", "orchestrator", "model-server", "--script", str(script)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2, res.stderr
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: --script: ") and str(script) in res.stderr and says in res.stderr
