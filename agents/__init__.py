"""Coding-agent backends, selected by `backend.kind`; imported lazily so a missing SDK breaks only its own kind."""

from __future__ import annotations

from orchestrator.registry import load_plugin

BACKENDS = {
    "claude-code": "agents.claude_code:ClaudeCodeAgent",
    "codex": "agents.codex:CodexAgent",
    "anthropic": "agents.anthropic_api:AnthropicAgent",
    "openai": "agents.openai_api:OpenAIAgent",
    "replay": "agents.replay:ReplayAgent",
}


def backend_class(kind: str) -> type:
    return load_plugin(BACKENDS, kind, "backend.kind")
