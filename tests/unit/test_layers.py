"""The layers, read from the imports: the core imports neither `agents` nor `benchmarks` nor the rest of
`orchestrator`; plugins import the core and nothing else of `orchestrator`. An edge that runs back up fails."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "agents", "benchmarks", "prompts")


def layer(module: str) -> str:
    parts = module.split(".")
    return "core" if parts[:2] == ["orchestrator", "core"] else parts[0]


# Which layers each layer may import (besides itself).
ALLOWED = {
    "core": set(),
    "agents": {"core"},
    "benchmarks": {"core"},
    "prompts": set(),
    "orchestrator": {"core", "agents", "benchmarks", "prompts"},
}


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module of ours that `path` imports, at any depth of the file (lazy imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module not in PACKAGES else [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def modules() -> list[tuple[Path, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            out.append((path, ".".join(rel.with_suffix("").parts)))
    return out


def test_no_edge_runs_back_up() -> None:
    bad = []
    for path, module in modules():
        own = layer(module)
        for line, target in imports(path):
            other = layer(target)
            if other != own and other not in ALLOWED[own]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target} ({other})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_core_is_one_import_for_a_plugin_author() -> None:
    import orchestrator.core as core

    for name in ("CodingAgent", "BenchmarkRunner", "ProposalRequest", "Proposal", "TaskResult", "Check",
                 "ConfigError", "BackendError", "run_process", "git", "parse_options", "Starter"):
        assert hasattr(core, name), name


def test_the_checker_sees_a_bad_edge(tmp_path: Path) -> None:
    """The test above can fail: an import of `orchestrator.driver` from a core-like file is caught."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from orchestrator.driver import Driver\n    from orchestrator import pipeline\n")
    got = [layer(t) for _, t in imports(bad)]
    assert got == ["orchestrator", "orchestrator"] and all(g not in ALLOWED["core"] for g in got)
