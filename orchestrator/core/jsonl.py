"""JSON lines as plugins read them: a CLI's event stream, a benchmark's result lines, a shim's events.

Such streams mix in logs and prints, so a line that is not one JSON object is skipped, not an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_json_line(line: str) -> dict[str, Any] | None:
    """The line's JSON object, or None for anything else (a log line, a print, a line cut short)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def json_objects(text_or_lines: str | Iterable[str]) -> list[dict[str, Any]]:
    """Every JSON-object line of a text (or of lines), in order."""
    lines = text_or_lines.splitlines() if isinstance(text_or_lines, str) else text_or_lines
    return [obj for obj in map(parse_json_line, lines) if obj is not None]
