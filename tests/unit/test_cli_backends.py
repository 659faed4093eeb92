"""The claude-code and codex backends in-process: the config codex is given, the environment the CLIs get,
and how a CLI's failure text is classified."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agents.claude_code import ClaudeCodeAgent
from agents.codex import CodexAgent
from agents.retry import classify_failure
from orchestrator.core.config import BackendConfig
from orchestrator.core.errors import ConfigError
from tests.cli_backends import ROOT


def test_codex_config_names_the_endpoint_and_key(tmp_path: Path) -> None:
    agent = CodexAgent(BackendConfig(kind="codex", options={"base_url": "http://127.0.0.1:1/v1"},
                                     env={"CODEX_API_KEY": "k" * 8}), ROOT)
    env = agent.env(home=tmp_path)
    cfg = tomllib.loads(agent.config_toml(env))
    assert cfg["model_provider"] == "autoharness"
    assert cfg["model_providers"]["autoharness"] == {"name": "autoharness", "base_url": "http://127.0.0.1:1/v1",
                                                     "env_key": "CODEX_API_KEY", "wire_api": "responses"}
    assert env["CODEX_HOME"] == str(tmp_path)


@pytest.mark.parametrize(("text", "status", "expected"), [
    ("Invalid API key · Fix external API key", 401, "auth"),
    ("unexpected status 401 Unauthorized: invalid x-api-key", None, "auth"),
    ("exceeded retry limit, last status: 429 Too Many Requests", None, "rate_limit"),
    ("API Error: 529 Overloaded.", 529, "overloaded"),
    ("We're currently experiencing high demand, which may cause temporary errors.", None, "overloaded"),
    ("Codex ran out of room in the model's context window.", None, "context_window"),
    ("prompt is too long: 250000 tokens > 200000 maximum", 400, "context_window"),
    ("stream disconnected before completion: Transport error", None, "connection"),
    ("invalid tool schema", 400, "bad_request"),
    ("something odd", None, "error"),
])
def test_cli_failure_text_is_classified(text: str, status: int | None, expected: str) -> None:
    err = classify_failure(text, status)
    assert err.error_class == expected
    assert err.transient == (expected in {"rate_limit", "overloaded", "connection"})


def test_quota_exhaustion_is_not_transient() -> None:
    err = classify_failure("You exceeded your current quota: insufficient_quota", 429)
    assert err.error_class == "rate_limit" and not err.transient


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="backend.options.permision_mode: unknown key"):
        ClaudeCodeAgent(BackendConfig(kind="claude-code", options={"permision_mode": "x"}), ROOT)
    with pytest.raises(ConfigError, match="backend.options.sandbox"):
        CodexAgent(BackendConfig(kind="codex", options={"sandbox": "none"}), ROOT)


def test_claude_code_environment_is_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"CLAUDECODE": "1", "CLAUDE_CODE_SSE_PORT": "1234", "CLAUDE_CONFIG_DIR": "/users/own",
                        "ANTHROPIC_API_KEY": "from-env", "CODEX_HOME": "/users/codex"}.items():
        monkeypatch.setenv(name, value)
    agent = ClaudeCodeAgent(BackendConfig(kind="claude-code", env={"CLAUDE_CODE_OAUTH_TOKEN": "explicit"}), ROOT)
    env = agent.env({"AUTOHARNESS_ITERATION": "3"}, home=tmp_path)
    assert "CLAUDECODE" not in env and "CLAUDE_CODE_SSE_PORT" not in env
    assert env["HOME"] == str(tmp_path) and env["CLAUDE_CONFIG_DIR"] == str(tmp_path / ".claude")
    assert env["CLAUDE_CODE_OAUTH_TOKEN"] == "explicit"  # what [backend.env] names explicitly gets through
    assert env["ANTHROPIC_API_KEY"] == "from-env" and env["AUTOHARNESS_ITERATION"] == "3"
    codex_env = CodexAgent(BackendConfig(kind="codex"), ROOT).env(home=tmp_path)
    assert codex_env["CODEX_HOME"] == str(tmp_path)
