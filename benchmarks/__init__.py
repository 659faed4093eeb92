"""Benchmark runners, selected by `benchmark.kind`; imported lazily."""

from __future__ import annotations

from orchestrator.registry import load_plugin

RUNNERS = {
    "command": "benchmarks.command:CommandRunner",
    "tau2": "benchmarks.tau2:Tau2Runner",
    "harbor": "benchmarks.harbor:HarborRunner",
    "bird-interact": "benchmarks.bird_interact:BirdInteractRunner",
}


def runner_class(kind: str) -> type:
    return load_plugin(RUNNERS, kind, "benchmark.kind")
