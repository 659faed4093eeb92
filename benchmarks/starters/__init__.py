"""Starter agents for the named benchmarks: the files `autoharness init --benchmark KIND` copies into the target's
`agent/` package. Which files, and the config that goes with them, is each runner's `starter`."""

from pathlib import Path

STARTERS = Path(__file__).resolve().parent
