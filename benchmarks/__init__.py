"""Benchmark runners. Each is a row of the registry (orchestrator/core/registry.py), imported only when chosen."""
