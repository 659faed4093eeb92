"""Counted nouns in the sentences users read: `1 task`, `2 tasks`."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
