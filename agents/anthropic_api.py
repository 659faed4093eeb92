"""The `anthropic` backend: our own tool-use loop over the Anthropic Messages API.

Prompt caching: cache breakpoints on the system prompt and the tools (the stable prefix, the same for
every proposal) and on the newest message, so each turn reads the conversation so far from the cache.
"""

from __future__ import annotations

import copy
from typing import Any

from agents.api_loop import SYSTEM_PROMPT, ApiAgent, Session, ToolCall, Turn
from agents.tools import ToolResult, anthropic_tools
from orchestrator.core.contracts import ProposalRequest, Usage

_CACHE = {"type": "ephemeral"}


def _block(block: Any) -> dict[str, Any]:
    """An assistant content block as the next request must echo it."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(mode="json", exclude_none=True)  # thinking and the like, signature included


class AnthropicSession(Session):
    def __init__(self, client: Any, model: str, max_tokens: int, stream: bool, prompt: str):
        self.client, self.model, self.max_tokens, self.stream = client, model, max_tokens, stream
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        tools = anthropic_tools()
        tools[-1]["cache_control"] = _CACHE
        self.tools = tools
        self.system = [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": _CACHE}]

    def _messages(self) -> list[dict[str, Any]]:
        messages = copy.deepcopy(self.messages)
        messages[-1]["content"][-1]["cache_control"] = _CACHE
        return messages

    def ask(self, timeout_s: float) -> Turn:
        params = dict(model=self.model, max_tokens=self.max_tokens, system=self.system, tools=self.tools,
                      messages=self._messages(), timeout=timeout_s)
        if self.stream:
            with self.client.messages.stream(**params) as stream:
                msg = stream.get_final_message()
        else:
            msg = self.client.messages.create(**params)
        content = [_block(b) for b in msg.content]
        if content:
            self.messages.append({"role": "assistant", "content": content})
        u = msg.usage
        usage = None if u is None else Usage(
            input_tokens=u.input_tokens or 0, output_tokens=u.output_tokens or 0,
            cache_read_tokens=getattr(u, "cache_read_input_tokens", 0) or 0,
            cache_write_tokens=getattr(u, "cache_creation_input_tokens", 0) or 0)
        return Turn(
            text="\n".join(b.text for b in msg.content if b.type == "text"),
            calls=[ToolCall(b.id, b.name, b.input) for b in msg.content if b.type == "tool_use"],
            usage=usage,
            refused=msg.stop_reason == "refusal",
        )

    def answer(self, results: list[tuple[ToolCall, ToolResult]]) -> None:
        self.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": res.text or "(no output)", "is_error": res.is_error}
            for call, res in results]})


class AnthropicAgent(ApiAgent):
    kind = "anthropic"
    provider = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    default_model = "claude-sonnet-5-5"   # used when backend.model is empty
    sdk = "anthropic"

    def _default_base_url(self) -> str:
        return "https://api.anthropic.com"

    def _session(self, request: ProposalRequest, key: str, base_url: str | None) -> Session:
        import anthropic

        client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0,
                                     timeout=self.options.request_timeout_s)
        return AnthropicSession(client, self.model, self.options.max_tokens, self.options.stream, request.prompt)
