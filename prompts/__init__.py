"""Prompt templates the orchestrator renders for the coding agent."""

from __future__ import annotations

from importlib import resources
from string import Template


def render(name: str, **values: str) -> str:
    """Render `prompts/<name>.md`; every $placeholder must be given (a typo fails loudly)."""
    text = resources.files(__name__).joinpath(f"{name}.md").read_text()
    return Template(text).substitute(values)
