"""String-keyed plugin lookup: a table of lazy import paths, or any `pkg.module:Class`."""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.errors import ConfigError


def load_plugin(table: dict[str, str], name: str, what: str) -> Any:
    """Return the class registered as `name`, importing it only now.

    `what` names the config key, for the error message.
    """
    path = table.get(name)
    if path is None:
        if ":" not in name:
            valid = ", ".join(sorted(table))
            raise ConfigError(f"{what}: unknown kind {name!r}; valid: {valid}, or pkg.module:Class")
        path = name
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import {module_name!r} for {name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{what}: {module_name!r} has no attribute {attr!r}") from None
