"""Cancellation by cooperation: whoever wants the work to stop (a signal handler, a timer) asks; the work
checks at its safe points and raises `Cancelled` there, in its own frame. Nothing is thrown into a frame
that happens to be running (a half-done transaction, a half-written file)."""

from __future__ import annotations

import threading

from orchestrator.core.errors import Cancelled


class Cancellation:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        """Safe from a signal handler or another thread: it only sets a flag."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """A safe point: raise Cancelled if a cancel was asked for."""
        if self._event.is_set():
            raise Cancelled(self.reason)
