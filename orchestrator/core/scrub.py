"""The one scrubber: every text that comes back from a coding agent passes it before it is written anywhere
(records, learnings, prompts, commit messages, transcripts, diffs, the report).

It hides two things. Secret values, by value: everything handed to a backend (its `env` tables, whatever
the variables are called) and the environment's variables whose names say they are secrets. Held-out
(val/test) task ids, by the guard's own rule (`id_pattern`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from orchestrator.core.config import BackendSection
from orchestrator.core.workspace import atomic_write

# The usual key variables (ANTHROPIC_API_KEY, OPENAI_API_KEY, CODEX_API_KEY) all match.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
# Shorter values ("1", "true", "main", the "not-set" placeholder key) would blank out ordinary words
# everywhere, and no real credential is that short: they are not hidden.
MIN_SECRET_CHARS = 8
REDACTED = "[REDACTED]"
HELD_OUT = "[held-out id]"


def secret_values(env: Mapping[str, str] | None = None, handed: Iterable[str] = ()) -> list[str]:
    """The values to hide: those of `env`'s (default: ours) secret-named variables and every value in
    `handed`, each also as it reads inside a JSON string; longest first, so a secret that contains another
    is hidden whole."""
    env = os.environ if env is None else env
    named = [v for k, v in env.items() if SECRET_NAME.search(k)]
    found = {form for v in (*named, *handed) if len(v) >= MIN_SECRET_CHARS for form in _forms(v)}
    return sorted(found, key=len, reverse=True)


def _forms(value: str) -> set[str]:
    """The value raw and JSON-escaped (a transcript line, a CLI's event stream), with and without \\u escapes."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        text = _cut_edges(text.replace(value, REDACTED), value)
    return text


def _cut_edges(text: str, value: str) -> str:
    """A text cut to length before it reached us may end with a secret's head or start with its tail:
    hide such a piece too, when it is long enough to matter."""
    for k in range(min(len(value) - 1, len(text)), MIN_SECRET_CHARS - 1, -1):
        if text.endswith(value[:k]):
            text = text[:-k] + REDACTED
            break
    for k in range(min(len(value) - 1, len(text)), MIN_SECRET_CHARS - 1, -1):
        if text.startswith(value[-k:]):
            return REDACTED + text[k:]
    return text


def ids_pattern(task_ids: Iterable[str]) -> re.Pattern[str]:
    """How held-out task ids are recognised in text, all in one pattern (one pass over a long transcript).

    Distinctive ids (3+ characters, not all digits) match as whole tokens; short or numeric ids (tau2's
    "12") would match any number in code, so they count only when quoted as a string literal.
    """
    ids = sorted(set(task_ids), key=len, reverse=True)
    tokens = "|".join(re.escape(t) for t in ids if len(t) >= 3 and not t.isdigit())
    quoted = "|".join(re.escape(t) for t in ids if len(t) < 3 or t.isdigit())
    parts = ([rf"(?<![A-Za-z0-9_\-.])(?:{tokens})(?![A-Za-z0-9_\-])"] if tokens else []) + \
            ([rf"""["'`](?:{quoted})["'`]"""] if quoted else [])
    return re.compile("|".join(parts) or r"(?!)")  # (?!) matches nothing: no held-out ids


def id_pattern(task_id: str) -> re.Pattern[str]:
    return ids_pattern([task_id])


@dataclass(frozen=True)
class Scrubber:
    """Built once per run (RunContext.scrubber); call it on a text, or `file` on a file written from one."""

    secrets: tuple[str, ...] = ()
    held_out: tuple[str, ...] = ()

    @classmethod
    def build(cls, held_out: Iterable[str] = (), backend: BackendSection | None = None) -> Scrubber:
        """Hide the environment's secret-named values, every value of the backend's env tables (its
        fallbacks' too) and the held-out ids."""
        tables = [] if backend is None else [backend, *backend.fallback]
        handed = [v for table in tables for v in table.env.values()]
        return cls(tuple(secret_values(None, handed)), tuple(held_out))

    @cached_property
    def _ids(self) -> re.Pattern[str]:
        return ids_pattern(self.held_out)

    def __call__(self, text: str) -> str:
        return self._ids.sub(HELD_OUT, redact(text, self.secrets))

    def file(self, path: Path) -> None:
        """Rewrite a file in place (atomically) when it holds something to hide. Only such a file is rewritten,
        and only there do bytes that are not UTF-8 become U+FFFD (transcripts and diffs are text)."""
        if not path.is_file():
            return
        text = path.read_bytes().decode("utf-8", errors="replace")
        clean = self(text)
        if clean != text:
            atomic_write(path, clean)
