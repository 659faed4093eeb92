"""Candidates in flight (`loop.parallel`): the iteration numbers taken, the failure group each aims at, the
money each may still spend, and the one lock under which a decision lands.

A decision (the best re-read, the commit, the record, the best tag) and putting back the target's git after a
proposal happen under `deciding`, so a candidate never commits on a best that moved under it, and a proposal's
clean-up never undoes another candidate's commit.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass
class Flight:
    n: int
    cap_usd: float          # what its proposal may spend; reserved from the budget until the proposal returns
    base: int = -1          # the best iteration it started from
    group: str = ""         # the failure signature its prompt aims at ("" when train has no failure)


class Flights:
    def __init__(self, parallel: int = 1):
        self.parallel = parallel
        self.deciding = threading.RLock()
        self._lock = threading.Lock()
        self._flying: dict[int, Flight] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._flying)

    def numbers(self) -> set[int]:
        with self._lock:
            return set(self._flying)

    def reserved_usd(self) -> float:
        """The caps of the proposals still running: money the budget must keep for them."""
        with self._lock:
            return sum(f.cap_usd for f in self._flying.values())

    def take(self, n: int, cap_usd: float) -> Flight:
        with self._lock:
            flight = self._flying[n] = Flight(n, cap_usd)
            return flight

    def land(self, n: int) -> None:
        with self._lock:
            self._flying.pop(n, None)

    def spent(self, flight: Flight) -> None:
        """Its proposal returned and its cost is recorded: nothing more to reserve."""
        with self._lock:
            flight.cap_usd = 0.0

    def aim(self, flight: Flight, base: int, groups: list[str]) -> int:
        """Choose the failure group (an index into `groups`, largest first) this candidate aims at: the largest
        that no other candidate in flight aims at, those started before it choosing first (so that the choice
        does not depend on which finished its analysis first); else the one fewest aim at."""
        with self._lock:
            flight.base = base
            if not groups:
                return -1
            peers = [f for f in self._flying.values() if f is not flight]
            taken = Counter(f.group for f in peers if f.group)
            ahead = sum(1 for f in peers if not f.group and f.n < flight.n)  # they will take the next free ones
            free = [k for k in range(len(groups)) if not taken[groups[k]]]
            i = free[ahead] if ahead < len(free) else min(range(len(groups)), key=lambda k: (taken[groups[k]], k))
            flight.group = groups[i]
            return i
