"""Every example config in config/ is valid: the schema, and each backend's and runner's own options."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from orchestrator.core import registry
from orchestrator.core.config import Config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid(path, monkeypatch):
    monkeypatch.setenv("AUTOHARNESS_WEBHOOK", "http://127.0.0.1:9/hook")
    cfg = Config.model_validate(tomllib.loads(path.read_text()))
    for backend in [cfg.backend, *cfg.backend.fallback]:
        cls = registry.load("backend", backend.kind)
        opts = getattr(cls, "options_model", None)
        if opts is not None:
            opts.model_validate(backend.options)
        else:
            cls(backend, path.parent)  # validates its options in the constructor


def test_there_is_an_example_per_backend():
    kinds = {Config.model_validate(tomllib.loads(p.read_text())).backend.kind for p in EXAMPLES}
    assert {"claude-code", "codex", "anthropic", "openai"} <= kinds
