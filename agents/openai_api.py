"""The `openai` backend: our own tool-use loop over the OpenAI Responses API or Chat Completions.

`api = "responses"` (default) keeps no state at the server (store=false) and replays the conversation;
`api = "chat"` speaks Chat Completions, which most OpenAI-compatible servers (vLLM, Ollama, gateways) serve.
"""

from __future__ import annotations

from typing import Any, Literal

from agents.api_loop import SYSTEM_PROMPT, ApiAgent, ApiOptions, Session, ToolCall, Turn, parse_arguments
from agents.pricing import openai_usage
from agents.tools import ToolResult, chat_tools, responses_tools
from orchestrator.core.contracts import ProposalRequest, Usage
from orchestrator.core.errors import ConnectionFailed, Overloaded


class OpenAIOptions(ApiOptions):
    api: Literal["responses", "chat"] = "responses"


def _responses_usage(u: Any) -> Usage | None:
    if u is None:
        return None
    details = getattr(u, "input_tokens_details", None)
    return openai_usage(u.input_tokens, u.output_tokens, getattr(details, "cached_tokens", 0) or 0)


def _chat_usage(u: Any) -> Usage | None:
    if u is None:
        return None
    details = getattr(u, "prompt_tokens_details", None)
    return openai_usage(u.prompt_tokens, u.completion_tokens, getattr(details, "cached_tokens", 0) or 0)


class ResponsesSession(Session):
    def __init__(self, client: Any, model: str, max_tokens: int, stream: bool, prompt: str):
        self.client, self.model, self.max_tokens, self.stream = client, model, max_tokens, stream
        self.input: list[dict[str, Any]] = [{"role": "user", "content": prompt}]

    def _final(self, params: dict[str, Any]) -> Any:
        if not self.stream:
            return self.client.responses.create(**params)
        with self.client.responses.create(**params, stream=True) as events:
            for ev in events:
                if ev.type in ("response.completed", "response.incomplete"):
                    return ev.response
                if ev.type in ("response.failed", "error"):
                    err = getattr(getattr(ev, "response", None), "error", None) or ev
                    raise Overloaded(f"the response failed: {getattr(err, 'message', err)}")
        raise ConnectionFailed("the stream ended before response.completed")

    def ask(self, timeout_s: float) -> Turn:
        params = dict(model=self.model, instructions=SYSTEM_PROMPT, input=self.input, tools=responses_tools(),
                      max_output_tokens=self.max_tokens, store=False, timeout=timeout_s)
        resp = self._final(params)
        texts, calls, refused, echo = [], [], False, []
        for item in resp.output:
            if item.type == "message":
                parts = [{"type": "output_text", "text": p.text} for p in item.content if p.type == "output_text"]
                texts += [p["text"] for p in parts]
                refusals = [p.refusal for p in item.content if p.type == "refusal"]
                if refusals:
                    refused, texts = True, texts + refusals
                echo.append({"type": "message", "role": "assistant", "content": parts})
            elif item.type == "function_call":
                calls.append(ToolCall(item.call_id, item.name, parse_arguments(item.arguments)))
                echo.append({"type": "function_call", "call_id": item.call_id, "name": item.name,
                             "arguments": item.arguments})
            # reasoning items are not echoed: without server storage they cannot be referred to
        self.input += echo
        incomplete = getattr(resp, "incomplete_details", None)
        refused = refused or getattr(incomplete, "reason", None) == "content_filter"
        return Turn("\n".join(texts), calls, _responses_usage(resp.usage), refused)

    def answer(self, results: list[tuple[ToolCall, ToolResult]]) -> None:
        self.input += [{"type": "function_call_output", "call_id": call.id, "output": res.text or "(no output)"}
                       for call, res in results]


class ChatSession(Session):
    def __init__(self, client: Any, model: str, max_tokens: int, stream: bool, prompt: str):
        self.client, self.model, self.max_tokens, self.stream = client, model, max_tokens, stream
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                               {"role": "user", "content": prompt}]

    def _collect(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None, Any, str]:
        """(text, tool calls as the API spells them, finish reason, usage, refusal) from a stream or not."""
        if not self.stream:
            resp = self.client.chat.completions.create(**params)
            choice = resp.choices[0]
            msg = choice.message
            calls = [{"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                                    "arguments": c.function.arguments}}
                     for c in msg.tool_calls or []]
            return msg.content or "", calls, choice.finish_reason, resp.usage, getattr(msg, "refusal", None) or ""
        text, refusal, finish, usage = [], [], None, None
        calls: dict[int, dict[str, Any]] = {}
        with self.client.chat.completions.create(**params, stream=True,
                                                 stream_options={"include_usage": True}) as chunks:
            for chunk in chunks:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    delta = choice.delta
                    text.append(delta.content or "")
                    refusal.append(getattr(delta, "refusal", None) or "")
                    for tc in delta.tool_calls or []:
                        call = calls.setdefault(tc.index, {"id": "", "type": "function",
                                                           "function": {"name": "", "arguments": ""}})
                        call["id"] = tc.id or call["id"]
                        if tc.function is not None:
                            call["function"]["name"] += tc.function.name or ""
                            call["function"]["arguments"] += tc.function.arguments or ""
                    finish = choice.finish_reason or finish
        if finish is None:
            raise ConnectionFailed("the stream ended before a finish_reason")
        return "".join(text), [calls[i] for i in sorted(calls)], finish, usage, "".join(refusal)

    def ask(self, timeout_s: float) -> Turn:
        params = dict(model=self.model, messages=self.messages, tools=chat_tools(),
                      max_completion_tokens=self.max_tokens, timeout=timeout_s)
        text, calls, finish, usage, refusal = self._collect(params)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        self.messages.append(message)
        return Turn(text or refusal,
                    [ToolCall(c["id"], c["function"]["name"], parse_arguments(c["function"]["arguments"])) for c in calls],
                    _chat_usage(usage), refused=bool(refusal) or finish == "content_filter")

    def answer(self, results: list[tuple[ToolCall, ToolResult]]) -> None:
        self.messages += [{"role": "tool", "tool_call_id": call.id, "content": res.text or "(no output)"}
                          for call, res in results]


class OpenAIAgent(ApiAgent):
    kind = "openai"
    provider = "openai"
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    default_model = "gpt-5.5"   # used when backend.model is empty
    sdk = "openai"
    options_model = OpenAIOptions

    def _default_base_url(self) -> str:
        return "https://api.openai.com/v1"

    def _session(self, request: ProposalRequest, key: str, base_url: str | None) -> Session:
        import openai

        client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=self.options.request_timeout_s)
        kind = ResponsesSession if self.options.api == "responses" else ChatSession
        return kind(client, self.model, self.options.max_tokens, self.options.stream, request.prompt)
