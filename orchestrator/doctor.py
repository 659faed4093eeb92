"""`autoharness doctor`: every check a night would fail on, all of them, before the night, each FAIL with why.

The checks run in order and are yielded as they finish (the benchmark trial takes as long as one task).
One failing check never hides an independent later one; a check that needs what failed (the trial needs a
runner, a base commit and a train task) is skipped with the reason.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from agents.fallback import build_agent
from orchestrator.core import registry, sandbox
from orchestrator.core.config import Config
from orchestrator.core.contracts import BenchmarkRunner, Check, TaskResult
from orchestrator.core.errors import AutoharnessError, ConfigError
from orchestrator.core.taskids import check_ids
from orchestrator.core.words import count
from orchestrator.core.workspace import Workspace
from orchestrator.gitops import TargetRepo, tracked_files
from orchestrator.guard import is_editable
from orchestrator.pool import build_executor
from orchestrator.report import recorded_noise
from orchestrator.splits import SPLITS, Splits, load_or_freeze, make_splits
from orchestrator.store import Store

TRIAL_LIMIT_S = 300.0  # doctor waits at most this long for its one task (less when task_timeout_s is less)
LISTING = "benchmark tasks"  # the listing checked id by id, for every runner
T = TypeVar("T")


def checks(cfg: Config) -> Iterator[Check]:
    yield Check("config", True, str(cfg.source))
    runner, broken = _build(cfg)
    repo = yield from _attempt("target", lambda: TargetRepo(cfg.target.repo, cfg.target.base, cfg.target.branch))
    base = None
    if repo is not None:
        base = repo.sha(cfg.target.base)
        yield _base(cfg, repo, base)
        yield from _collect("target locks", lambda: repo.check_ref_locks() or [])  # a FAIL only when a lock is left
    if repo is not None and base is not None:
        yield from _on_base(cfg, repo, base, runner)
    splits = None
    if runner is None:
        yield broken
    else:
        splits = yield from _listing_and_splits(cfg, runner)
        yield from _collect("benchmark", runner.check)
        yield from _collect("task pool", lambda: _pool(cfg, runner))
    yield from _collect("backend", lambda: build_agent(cfg.backend, cfg.config_dir).check())
    yield from _collect("sandbox", lambda: _sandbox(cfg))
    yield from _collect("benchmark trial", lambda: _trial(cfg, repo, base, runner, splits))
    yield from _noise(cfg)


def exit_code(found: Iterable[Check]) -> int:
    """2 when a failing check came from a bad config or input, else 1 when any check failed, else 0."""
    failed = [c for c in found if not c.ok and c.fatal]
    return 2 if any(c.config for c in failed) else 1 if failed else 0


def _failed(label: str, exc: AutoharnessError) -> Check:
    return Check(label, False, str(exc), config=isinstance(exc, ConfigError))


def _collect(label: str, make: Callable[[], Iterable[Check]]) -> Iterator[Check]:
    """Doctor reports; it does not stop at the first problem."""
    try:
        yield from make()
    except AutoharnessError as exc:
        yield _failed(label, exc)


def _attempt(label: str, make: Callable[[], T]) -> Generator[Check, None, T | None]:
    """What `make` builds, or None and a FAIL line when it cannot be built (used as `x = yield from ...`)."""
    try:
        return make()
    except AutoharnessError as exc:
        yield _failed(label, exc)
        return None


def _build(cfg: Config) -> tuple[BenchmarkRunner | None, Check | None]:
    """The benchmark runner, or why there is none (reported after the target's lines)."""
    try:
        return registry.load("benchmark", cfg.benchmark.kind)(cfg.benchmark, cfg.config_dir), None
    except AutoharnessError as exc:
        return None, _failed("benchmark", exc)


def _pool(cfg: Config, runner: BenchmarkRunner) -> list[Check]:
    """A cluster as the task pool is joined here, as the run would (an address nothing listens on fails now)."""
    if cfg.benchmark.executor == "local":
        return []
    executor = build_executor(cfg.benchmark, runner)
    try:
        return [executor.check()]
    finally:
        executor.close()


def _them(items: list[str]) -> str:
    return "it" if len(items) == 1 else "them"


def _globs(globs: list[str]) -> str:
    """The globs, quoted, and the verb that goes with them."""
    return f"{', '.join(map(repr, globs))} {'matches' if len(globs) == 1 else 'match'}"


def _few(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- the target ---------------------------------------------------------------------------------------------
def _base(cfg: Config, repo: TargetRepo, base: str | None) -> Check:
    where = f"{cfg.target.base} in {cfg.target.repo}"
    if base is not None:
        return Check("target base", True, f"{where} at {base[:12]}")
    names = repo.branches()
    if not names:
        why = (f"{cfg.target.repo} has no commits yet; commit the agent's code (on {cfg.target.base}) "
               "before the night: a run starts from target.base's commit")
    else:
        why = (f"{cfg.target.base!r} is not a branch or commit of {cfg.target.repo}; its branches: {_few(names)}; "
               "set target.base to the branch that holds the agent")
    return Check("target base", False, why, config=True)


def _on_base(cfg: Config, repo: TargetRepo, base: str, runner: BenchmarkRunner | None) -> Iterator[Check]:
    """The checks that need base's commit: the run's branch, and the files the night will and will not see."""
    yield from _collect("target branch", lambda: _branch(cfg, repo))
    tracked = yield from _attempt("target files", lambda: tracked_files(repo.path, base))
    if tracked is None:
        return
    agent = yield from _attempt("target agent", lambda: runner.agent_files() if runner is not None else [])
    dirty = yield from _attempt("target files", lambda: repo.dirty_paths())
    yield from _collect("target editable", lambda: _editable(cfg, tracked, dirty or []))
    yield from _collect("target agent", lambda: _agent_committed(cfg, agent or [], tracked))
    if dirty is not None:
        yield from _collect("target files", lambda: _dirty(cfg, dirty, agent or []))


def _branch(cfg: Config, repo: TargetRepo) -> list[Check]:
    """The refusal `baseline` would meet on a fresh workspace; a workspace with a baseline owns its branch."""
    if _baseline_recorded(cfg):
        return [Check("target branch", True, f"{cfg.target.branch} (this workspace's run)")]
    refusal = repo.branch_conflict()
    if refusal is not None:
        return [Check("target branch", False, f"baseline would refuse: {refusal}", config=True)]
    exists = repo.sha(f"refs/heads/{cfg.target.branch}") is not None
    how = f"at {cfg.target.base}" if exists else f"baseline creates it from {cfg.target.base}"
    return [Check("target branch", True, f"{cfg.target.branch} ({how})")]


def _baseline_recorded(cfg: Config) -> bool:
    ws = Workspace(cfg.workspace)
    if not ws.db.is_file():
        return False
    store = Store(ws.db, readonly=True)  # a daemon may be running
    try:
        return store.iteration(0) is not None
    finally:
        store.close()


def _editable(cfg: Config, tracked: list[str], dirty: list[str]) -> list[Check]:
    """A glob that matches no file on base lets the coding agent add files only; none matching at all means
    the guard rejects every proposal, unless the files are there but not committed yet."""
    globs = cfg.target.editable
    idle = [g for g in globs if not any(is_editable(p, [g]) for p in tracked)]
    if not idle:
        n = sum(1 for p in tracked if is_editable(p, globs))
        return [Check("target editable", True, f"{', '.join(globs)}: {count(n, 'tracked file')} on {cfg.target.base}")]
    folders = _code_folders(tracked)
    hint = f"; folders with code on {cfg.target.base}: {_few(folders)}" if folders else ""
    if len(idle) == len(globs) and any(is_editable(p, globs) for p in dirty):
        return [Check("target editable", False, f"{_globs(globs)} no file committed on {cfg.target.base} yet, only "
                      f"uncommitted ones (see target files); commit them on {cfg.target.base}")]
    if len(idle) == len(globs):
        why = (f"{_globs(globs)} no file tracked on {cfg.target.base}: the guard would reject "
               f"every proposal; set target.editable to the agent's code{hint}")
        return [Check("target editable", False, why, config=True)]
    return [Check("target editable", False, f"{_globs(idle)} no file tracked on "
                  f"{cfg.target.base} (the coding agent could only add files there){hint}", fatal=False)]


def _code_folders(tracked: list[str]) -> list[str]:
    """Where the agent's code is on base, as the globs `autoharness init` writes into target.editable."""
    from orchestrator.init import code_globs
    return code_globs(tracked)


def _agent_committed(cfg: Config, agent: list[str], tracked: list[str]) -> list[Check]:
    """The benchmark loads these from base's commit: missing there, every task fails to load the agent."""
    if not agent:
        return []
    committed = set(tracked)
    missing = [p for p in agent if p not in committed]
    if missing:
        return [Check("target agent", False, f"{_few(missing)} not committed on {cfg.target.base}: the benchmark "
                      f"loads the agent from there, so every task would fail; commit {_them(missing)} on {cfg.target.base}")]
    return [Check("target agent", True, f"{_few(agent)} committed on {cfg.target.base}")]


def _dirty(cfg: Config, dirty: list[str], agent: list[str]) -> list[Check]:
    """The night scores base's commit, never the working tree: uncommitted agent code is code it never sees."""
    if not dirty:
        return [Check("target files", True, "no uncommitted changes")]
    runs = [p for p in dirty if is_editable(p, cfg.target.editable) or p in agent]
    others = [p for p in dirty if p not in runs]
    out = []
    if runs:
        out.append(Check("target files", False, f"{count(len(runs), 'uncommitted change')} to the agent's code: "
                         f"{_few(runs)}; the night starts from {cfg.target.base}'s commit, not the working tree: "
                         f"commit {_them(runs)} on {cfg.target.base}"))
    if others:
        out.append(Check("target files", False, f"{count(len(others), 'uncommitted change')} outside the agent's "
                         f"code: {_few(others)} (the night does not see {_them(others)})", fatal=False))
    return out


# -- the benchmark ------------------------------------------------------------------------------------------
def _listing_and_splits(cfg: Config, runner: BenchmarkRunner) -> Generator[Check, None, Splits | None]:
    """The listing line by line, the split lists against it, and the splits a baseline would freeze (returned)."""
    try:
        tasks = check_ids(runner.tasks(), "the benchmark's task listing")
    except AutoharnessError as exc:
        yield _failed(LISTING, exc)
        return None
    except Exception as exc:  # a user's runner with a bug: a line to read, not a traceback
        yield Check(LISTING, False, f"listing the tasks raised {type(exc).__name__}: {exc}")
        return None
    yield Check(LISTING, True, f"{count(len(tasks), 'task')} listed")
    split, known = cfg.benchmark.split, set(tasks)
    unknown = [t for name in SPLITS for t in getattr(split, name) if t not in known] if split.explicit else []
    if unknown:
        yield Check("benchmark split", False, f"{count(len(unknown), 'task')} in benchmark.split not listed by the "
                    f"benchmark: {_few(unknown)}; baseline would refuse {_them(unknown)}: fix the lists or the listing",
                    config=True)
        return None
    frozen = Workspace(cfg.workspace).splits
    try:
        splits = make_splits(split, tasks, runner.default_split())
        if frozen.is_file():
            splits = load_or_freeze(frozen, splits)  # the file exists: this only compares
    except AutoharnessError as exc:
        yield _failed("benchmark split", exc)
        return None
    sizes = ", ".join(f"{name} {len(getattr(splits, name))}" for name in SPLITS)
    yield Check("benchmark split", True, sizes + (f" (frozen in {frozen})" if frozen.is_file() else ""))
    return splits


def _trial(cfg: Config, repo: TargetRepo | None, base: str | None, runner: BenchmarkRunner | None,
           splits: Splits | None) -> list[Check]:
    """One real train task on base's commit, as the night would run it: a benchmark that cannot judge it
    would make the whole night worthless."""
    missing = ("a benchmark runner" if runner is None else "a base commit" if repo is None or base is None
               else "the splits" if splits is None else "")
    if missing:
        return [Check("benchmark trial", False, f"skipped: it needs {missing} (see above)", fatal=False)]
    task = sorted(splits.train)[0]
    limit = min(cfg.benchmark.task_timeout_s, TRIAL_LIMIT_S)
    runner.config = runner.config.model_copy(update={"task_timeout_s": limit, "trials": 1})
    root = Path(tempfile.mkdtemp(prefix="autoharness-doctor-"))
    try:
        with repo.workdir(root / "work") as work:
            agent_dir = work.score(base)  # base's tree, exported as the pipeline scores a tree
            traces = root / "traces"
            traces.mkdir()
            t0 = time.monotonic()
            result = _run_one(runner, agent_dir, task, traces)
            seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [_judge(cfg, task, result, seconds, limit)]


def _run_one(runner: BenchmarkRunner, agent_dir: Path, task: str, traces: Path) -> TaskResult:
    try:
        got = runner.run(agent_dir, [task], traces_dir=traces)
    except AutoharnessError:
        raise
    except Exception as exc:  # as the evaluator treats it: the benchmark died as a whole
        return TaskResult(None, error=f"benchmark crashed: {type(exc).__name__}: {exc}", error_class="crash")
    return got.get(task) or TaskResult(None, error="no result from the benchmark", error_class="missing")


def _judge(cfg: Config, task: str, res: TaskResult, seconds: float, limit: float) -> Check:
    if res.unscorable or not 0.0 <= (res.reward or 0.0) <= 1.0:
        kind = res.error_class or "bad_reward"
        error = _excerpt(res.error or f"reward {res.reward!r} is outside [0, 1]")
        return Check("benchmark trial", False, f"train task {task} could not be scored ({kind}), so a night would "
                     f"judge nothing; fix the benchmark or the agent on {cfg.target.base}:\n{error}")
    if res.error_class == "agent_error":  # scored 0, but so would every task be: the agent does not load
        return Check("benchmark trial", False, f"train task {task}: the agent on {cfg.target.base} did not load "
                     f"(agent_error), so every task would score 0; fix it on {cfg.target.base}:\n{_excerpt(res.error)}")
    if res.error_class == "timeout":
        night = cfg.benchmark.task_timeout_s
        why = (f"doctor waits at most {limit:g} s (the night allows {night:g} s), so it was not judged here"
               if limit < night else "the night counts that as 0; raise benchmark.task_timeout_s if tasks need longer")
        return Check("benchmark trial", False, f"train task {task} timed out after {limit:g} s: {why}", fatal=False)
    return Check("benchmark trial", True, f"train task {task} scored {res.reward:.2f} in {seconds:.1f} s")


def _excerpt(text: str, head: int = 3, tail: int = 3) -> str:
    """The error's first lines, and its last ones when it is long (a traceback ends with what went wrong)."""
    lines = [ln[:200] for ln in text.strip().splitlines()] or [""]
    if len(lines) > head + tail + 1:
        lines = [*lines[:head], "...", *lines[-tail:]]
    return "\n".join(f"    {ln}" for ln in lines)


# -- the rest -----------------------------------------------------------------------------------------------
def _sandbox(cfg: Config) -> list[Check]:
    """Which sandbox the night's coding agent will run in, and why; "none" passes, but says so."""
    kind, why = sandbox.choose(cfg.backend.sandbox, cfg.backend.sandbox_image)
    return [Check("sandbox", True, f"{kind}: {why}")]


def _noise(cfg: Config) -> list[Check]:
    """The benchmark's noise as the baseline measured it; each warning a non-fatal check ("warn"), so it is seen."""
    ws, runs = Workspace(cfg.workspace), cfg.gate.baseline_runs
    described = None
    if ws.db.exists():
        store = Store(ws.db, readonly=True)  # a daemon may be running
        try:
            described = recorded_noise(store, cfg.gate)
        finally:
            store.close()
    if described is None:
        return [Check("noise", True, f"not measured yet: the baseline's A/A check runs val {runs} times"
                      if runs > 1 else "will not be measured: gate.baseline_runs = 1 runs val once")]
    line, warnings = described
    return [Check("noise", True, line), *(Check("noise", False, w, fatal=False) for w in warnings)]
