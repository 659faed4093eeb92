"""`autoharness init`: a config that loads as written, and for a named benchmark its starter agent.

Every default in the file comes from the config models themselves, so the two cannot drift apart. The
`editable` globs are read from the target: the folders that hold its code on the base branch (see `infer`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core import registry
from orchestrator.core.config import (
    BackendConfig,
    BenchmarkConfig,
    GateConfig,
    LoopConfig,
    NotifyConfig,
    ScheduleConfig,
    SplitConfig,
)
from orchestrator.core.contracts import Starter
from orchestrator.core.errors import ConfigError
from orchestrator.core.proc import git
from orchestrator.gitops import tracked_files

HEADER = '# autoharness config, written by `autoharness init`. Reference: README.md, section "Config".\n'
# What `editable` says when init finds no code: a glob that matches nothing, which doctor fails on.
PLACEHOLDER = "path/to/your/agent/**"
# Source files of the usual languages an agent is written in (not shell scripts: those are tooling).
CODE_SUFFIXES = frozenset((
    ".py", ".pyi", ".ipynb", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".rs", ".rb", ".java", ".kt",
    ".scala", ".swift", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".php", ".lua", ".jl", ".ex", ".exs", ".clj",
))
# Top-level folders that are not the agent even when they hold code: tests, docs, examples, other people's
# code, build output, and the usual homes of a benchmark or evaluation.
NOT_AGENT = frozenset((
    "test", "tests", "testing", "spec", "specs", "doc", "docs", "documentation", "example", "examples",
    "vendor", "vendored", "third_party", "third-party", "thirdparty", "external", "extern", "node_modules",
    "site-packages", "venv", "env", "build", "dist", "bench", "benchmark", "benchmarks", "eval", "evals",
    "evaluation",
))
PROMPT_FOLDERS = frozenset(("prompt", "prompts"))   # an agent's prompts are its code too, whatever their suffix
# Top-level files that are packaging or tooling, not the agent.
TOOLING = frozenset(("setup.py", "conftest.py", "noxfile.py", "fabfile.py", "manage.py", "tasks.py"))


@dataclass(frozen=True)
class Editable:
    """The globs init found for `target.editable` (none: it writes the placeholder), and how it chose them."""

    found: list[str]
    why: str

    @property
    def globs(self) -> list[str]:
        return self.found or [PLACEHOLDER]

    def line(self) -> str:
        """What init says about its choice."""
        if self.found:
            return f"editable: {', '.join(self.found)} ({self.why}; edit the config to change)"
        return (f"editable: {self.why}; wrote the placeholder {PLACEHOLDER}: set target.editable to the "
                "agent's folders (doctor fails until you do)")


@dataclass(frozen=True)
class Written:
    config: Path
    starter: list[str]      # the starter files written into the target
    editable: Editable


def _value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # a JSON string, number, bool or list of them is valid TOML


def _table(name: str, table: dict[str, Any]) -> str:
    """A TOML table; nested dicts become sub-tables, empty lists and dicts are left out."""
    plain = {k: v for k, v in table.items() if not isinstance(v, dict) and v != []}
    lines = [f"[{name}]", *(f"{k} = {_value(v)}" for k, v in plain.items())]
    text = "\n".join(lines) + "\n"
    for key, sub in table.items():
        if isinstance(sub, dict):
            text += "\n" + _table(f"{name}.{key}", sub)
    return text


def _defaults(model: type, **override: Any) -> dict[str, Any]:
    return {**model().model_dump(mode="json"), **override}


def _starter(benchmark: str) -> Starter:
    valid = f"valid: {', '.join(registry.names('benchmark'))}"
    try:
        starter = registry.load("benchmark", benchmark).starter
    except ConfigError:
        raise ConfigError(f"--benchmark: unknown kind {benchmark!r}; {valid}") from None
    if starter is None:
        raise ConfigError(f"--benchmark: {benchmark!r} has no starter config for init; {valid}")
    return starter


def config_text(*, repo: str, base: str, benchmark: str, backend: str,
                editable: list[str]) -> tuple[str, dict[str, str]]:
    """The config file's text and the starter files (target-relative path -> content) for the target."""
    if backend not in registry.PLUGINS["backend"]:
        raise ConfigError(f"--backend: unknown kind {backend!r}; valid: {', '.join(registry.names('backend'))}")
    starter = _starter(benchmark)
    bench = _defaults(BenchmarkConfig, **{k: v for k, v in starter.benchmark.items() if k != "options"})
    bench.pop("split")
    bench["options"] = json.loads(json.dumps(starter.benchmark.get("options", {})))
    back = {k: v for k, v in _defaults(BackendConfig, kind=backend).items() if k not in ("options", "env")}
    back["options"] = {"patches": "patches"} if backend == "replay" else {}
    parts = [
        HEADER + 'workspace = "workspace"\n',
        _table("target", {"repo": repo, "base": base, "branch": "autoharness", "editable": editable}),
        _table("benchmark", bench),
        _table("benchmark.split", _defaults(SplitConfig)),
        _table("backend", back),
        _table("gate", _defaults(GateConfig)),
        _table("loop", _defaults(LoopConfig)),
        _table("schedule", _defaults(ScheduleConfig)),
        _table("notify", _defaults(NotifyConfig)),
    ]
    return "\n".join(parts), starter.file_texts()


def write(target: Path, output: Path, *, benchmark: str, backend: str, force: bool) -> Written:
    """Write the config at `output` and the starter files into `target`; say what was written and chosen."""
    if output.exists() and not force:
        raise ConfigError(f"{output}: exists; pass --force to overwrite")
    if not (target / ".git").exists():
        raise ConfigError(f"--target: {target} is not a git repository")
    repo = target.resolve()
    try:
        repo_text = str(repo.relative_to(output.resolve().parent))
    except ValueError:
        repo_text = str(repo)
    base = _current_branch(repo)
    editable = infer(repo, base, _starter(benchmark), config_dir=output.resolve().parent)
    text, files = config_text(repo=repo_text, base=base, benchmark=benchmark, backend=backend,
                              editable=editable.globs)
    written = []
    for rel, content in files.items():
        dest = target / rel
        if dest.exists() and not force:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content)
        written.append(rel)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return Written(output, written, editable)


def _current_branch(repo: Path) -> str:
    res = git("symbolic-ref", "--short", "-q", "HEAD", cwd=repo, check=False)
    return res.stdout.strip() if res.ok and res.stdout.strip() else "main"


# -- what the coding agent may edit -------------------------------------------------------------------------
def infer(repo: Path, base: str, starter: Starter, *, config_dir: Path) -> Editable:
    """The folders that hold the agent's code on `base` (its top-level folders with source files, leaving out
    tests, docs, hidden, vendored and benchmark folders and the files the benchmark's options name), else
    the top-level source files; plus, for a named benchmark, the folder of the starter agent init writes."""
    tracked = tracked_files(repo, base)
    found = code_globs(tracked, _benchmark_paths(repo, starter, config_dir))
    in_folders = any("/" in g for g in found)
    what = ("the folders holding tracked code" if in_folders else "the code files tracked at the top level") + f" on {base}"
    own = list(starter.editable) if starter.files else []
    if own:
        extra = [g for g in found if g not in own]
        found, what = own + extra, "the starter agent's folder" + (f" and {what}" if extra else "")
    if found:
        return Editable(found, what)
    return Editable([], f"found no agent code on {base} ({_nothing_why(repo, base, tracked)})")


def _nothing_why(repo: Path, base: str, tracked: list[str]) -> str:
    if tracked:
        return "no source files outside tests, docs and vendored code"
    if git("rev-parse", "--verify", "-q", f"{base}^{{commit}}", cwd=repo, check=False).ok:
        return "it holds no files"
    if git("rev-parse", "--verify", "-q", "HEAD", cwd=repo, check=False).ok:
        return f"there is no branch {base}; set target.base"
    return "it has no commits yet"


def code_globs(tracked: list[str], avoid: Sequence[str] = ()) -> list[str]:
    """Globs for the agent's code among `tracked` paths, none of them matching a path under `avoid`: the
    folders holding source files (see `_is_code`), else the source files at the top level; [] when none."""
    code = [p for p in tracked if _is_code(p) and not _under(p, avoid)]
    nested = [p for p in code if "/" in p]
    if nested:
        return _cover(nested, [p for p in tracked if _under(p, avoid)])
    return [p for p in code if "/" not in p]


def _is_code(path: str) -> bool:
    parts = path.split("/")
    if any(part.startswith(".") for part in parts):
        return False
    if len(parts) > 1 and parts[0].lower() in NOT_AGENT:
        return False
    if len(parts) > 1 and parts[0].lower() in PROMPT_FOLDERS:
        return True
    if len(parts) == 1 and (path in TOOLING or _is_test(path)):
        return False
    return Path(path).suffix.lower() in CODE_SUFFIXES


def _is_test(name: str) -> bool:
    stem = Path(name).stem
    return stem.startswith("test_") or stem.endswith("_test") or stem == "test"


def _benchmark_paths(repo: Path, starter: Starter, config_dir: Path) -> list[str]:
    """Target-relative paths the benchmark's starter options name (an evaluator, a dataset, a checkout), when
    they are inside the target: the benchmark's own files, which the coding agent must not edit."""
    options = starter.benchmark.get("options", {})
    values = [v for v in options.values() if isinstance(v, str)] + [
        v for vs in options.values() if isinstance(vs, list) for v in vs if isinstance(v, str)]
    out = []
    for value in values:
        path = (config_dir / value).resolve()
        if path.exists() and path.is_relative_to(repo) and path != repo:
            out.append(path.relative_to(repo).as_posix())
    return out


def _under(path: str, folders: Sequence[str]) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def _cover(code: list[str], avoid: list[str], prefix: str = "") -> list[str]:
    """Globs matching every path of `code` and none of `avoid`: a folder whole (`dir/**`) when nothing in it is
    to be avoided, else what is inside it, one level down, and so on (files by name)."""
    globs = []
    for name in sorted({p.split("/", 1)[0] for p in code}):
        inside = [p.split("/", 1)[1] for p in code if p.startswith(name + "/")]
        if not inside:
            globs.append(prefix + name)     # a file
            continue
        blocked = [p.split("/", 1)[1] for p in avoid if p.startswith(name + "/")]
        globs += _cover(inside, blocked, f"{prefix}{name}/") if blocked else [f"{prefix}{name}/**"]
    return globs
