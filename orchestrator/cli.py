"""The `autoharness` command. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.config import Config, load_config
from orchestrator.console import console, err_console, progress_bars
from orchestrator.errors import AutoharnessError, BudgetExceeded, NothingProposed

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Improve an AI agent overnight.")


class State:
    config_path: Path | None = None


STATE = State()


@app.callback()
def _main(config: Annotated[Path | None, typer.Option("--config", "-c", help="config file (TOML)")] = None) -> None:
    STATE.config_path = config


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one line on stderr and their exit code."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AutoharnessError as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
    return wrapper


def _config() -> Config:
    return load_config(STATE.config_path)


def _orchestrator(cfg: Config, progress: Callable[[str, int, int], None] | None):
    from orchestrator.logs import configure_logging
    from orchestrator.loop import Orchestrator
    # Phases go to workspace/logs as JSON lines; the console keeps the progress bars and results.
    log = configure_logging(cfg.workspace / "logs", console_level="warning")
    return Orchestrator(cfg, on_progress=progress, log=log)


@app.command()
@handled
def baseline() -> None:
    """Freeze the splits and score the base commit on train, val and test."""
    from orchestrator.lock import WorkspaceLock
    cfg = _config()
    with WorkspaceLock(cfg.workspace / "run.lock"), progress_bars() as progress:
        orch = _orchestrator(cfg, progress)
        try:
            orch.reconcile()
            rec = orch.baseline()
        finally:
            orch.close()
    console.print(f"baseline: val {_f(rec.val_score)}, {rec.reason}, commit {rec.commit_sha[:12]}")


@app.command()
@handled
def run(once: Annotated[bool, typer.Option("--once", help="run a single iteration and exit")] = False) -> None:
    """Run the loop: one iteration with --once, else the scheduled daemon."""
    cfg = _config()
    if not once:
        from orchestrator.daemon import run_daemon
        raise typer.Exit(run_daemon(cfg, console=console))
    from orchestrator.lock import WorkspaceLock
    with WorkspaceLock(cfg.workspace / "run.lock"), progress_bars() as progress:
        orch = _orchestrator(cfg, progress)
        try:
            orch.reconcile()
            rec = orch.iterate()
        except NothingProposed as exc:
            console.print(f"nothing left to propose: {exc}")
            return
        except BudgetExceeded as exc:
            console.print(f"budget spent: {exc}")
            return
        finally:
            orch.close()
    console.print(f"iteration {rec.n}: [bold]{rec.decision}[/bold] {rec.stage + ': ' if rec.stage else ''}{rec.reason}",
                  highlight=False)


def _status_data(cfg: Config) -> dict[str, Any]:
    """Everything `status` and `report` show: the rows, the run's summary, the daemon's heartbeat."""
    from dataclasses import asdict

    from orchestrator.daemon import next_window
    from orchestrator.heartbeat import is_stale, read
    from orchestrator.notify import NightSummary
    from orchestrator.store import Store
    from orchestrator.workspace import Workspace
    ws = Workspace(cfg.workspace)
    data: dict[str, Any] = {"workspace": str(ws.root), "rows": []}
    if ws.db.exists():
        store = Store(ws.db, readonly=True)
        try:
            data["rows"] = [
                {k: getattr(r, k) for k in ("n", "decision", "stage", "reason", "val_score", "commit_sha",
                                            "evals_passed", "evals_total", "backend", "cost_usd", "duration_s")}
                for r in store.iterations()]
            last = store.conn.execute("SELECT stop_reason FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            summary = NightSummary.from_store(store, stop_reason=(last[0] if last else None) or "",
                                              budget_usd=cfg.loop.budget_usd)
            data |= asdict(summary)
            data["events"] = [dict(e) for e in store.events()[-5:]]
        finally:
            store.close()
    hb = read(ws.heartbeat)
    if hb is not None:
        hb["stale"] = is_stale(hb)
    data["heartbeat"] = hb
    nxt = next_window(cfg)
    data["next_window"] = nxt.isoformat() if nxt else None
    return data


@app.command()
@handled
def stop() -> None:
    """Ask a running daemon to stop: it finishes the current iteration (up to schedule.grace_s)."""
    import os
    import signal as sig
    cfg = _config()
    from orchestrator.workspace import Workspace
    ws = Workspace(cfg.workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.stop_file.write_text(f"requested at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    try:
        pid = int(ws.lock.read_text().strip())
        os.kill(pid, sig.SIGTERM)
        console.print(f"asked the daemon (pid {pid}) to stop; it drains the current iteration first")
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        console.print(f"wrote {ws.stop_file}; no daemon is running, so the next one will stop at once")


@app.command()
@handled
def status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """What happened so far: one row per iteration, the best score against the baseline, the spend."""
    cfg = _config()
    data = _status_data(cfg)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    if not data["rows"]:
        console.print("no baseline yet: run `autoharness baseline`")
        return
    console.print(_results_table(data["rows"]))
    console.print(
        f"best val {_f(data['best_val'])} (baseline {_f(data['baseline_val'])}); "
        f"accepted {data['accepted']}, rejected {data['rejected']}, errors {data['errors']}; "
        f"spent ${data['spend_usd']:.2f} of ${data['budget_usd']:.2f}"
        + (f" ({data['unknown_cost']} proposals of unknown cost)" if data["unknown_cost"] else ""),
        highlight=False,
    )
    hb = data.get("heartbeat")
    if hb:
        from orchestrator.heartbeat import is_stale
        stale = " [red](stale heartbeat: the daemon is not running)[/red]" if is_stale(hb) else ""
        line = (f"daemon: pid {hb.get('pid')}, phase {hb.get('phase')}"
                + (f", iteration {hb['iteration']}" if hb.get("iteration") is not None else "")
                + f", for {_dur(time.time() - hb.get('since', time.time()))}{stale}")
        if hb.get("phase") == "stopped" and hb.get("stop_reason"):
            line += f"; stopped: {hb['stop_reason']}"
        console.print(line, highlight=False)
    if data.get("next_window"):
        console.print(f"next window: {data['next_window']}", highlight=False)


def _results_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="autoharness results")
    for col in ("iter", "decision", "val", "suite", "commit", "backend", "cost", "time", "reason"):
        table.add_column(col, overflow="fold", max_width=60 if col == "reason" else None)
    colours = {"accepted": "green", "rejected": "yellow", "error": "red", "baseline": "cyan"}
    for r in rows:
        cost = "" if r["n"] == 0 else ("unknown" if r["cost_usd"] is None else f"${r['cost_usd']:.2f}")
        reason = (f"{r['stage']}: " if r["stage"] else "") + r["reason"]
        table.add_row(str(r["n"]), f"[{colours.get(r['decision'], 'white')}]{r['decision']}[/]", _f(r["val_score"]),
                      f"{r['evals_passed']}/{r['evals_total']}", (r["commit_sha"] or "")[:10], r["backend"], cost,
                      _dur(r["duration_s"]), reason)
    return table


@app.command()
@handled
def report(final: Annotated[bool, typer.Option("--final", help="score the test split on the best commit")] = False) -> None:
    """The results table; with --final, the honest held-out test score of the best commit."""
    cfg = _config()
    if final:
        from orchestrator.lock import WorkspaceLock
        with WorkspaceLock(cfg.workspace / "run.lock"), progress_bars() as progress:
            orch = _orchestrator(cfg, progress)
            try:
                out = orch.score_test()
                if out is not None:
                    orch.store.put("final_test", json.dumps({"score": out.score, "n": len(out.results),
                                                             "commit": orch.store.best().commit_sha}))
            finally:
                orch.close()
    data = _status_data(cfg)
    if not data["rows"]:
        console.print("no baseline yet: run `autoharness baseline`")
        return
    console.print(_results_table(data["rows"]))
    table = Table(title="scores")
    for col in ("split", "baseline", "best"):
        table.add_column(col)
    table.add_row("val", _f(data["baseline_val"]), _f(data["best_val"]))
    table.add_row("test", _f(data["baseline_test"]), _f(data["final_test"]) if final or data["final_test"] is not None
                  else "(run report --final)")
    console.print(table)
    from orchestrator.report import write_report
    path = write_report(cfg.workspace, budget_usd=cfg.loop.budget_usd)
    console.print(f"report: {path}", highlight=False)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _dur(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


INIT_TEMPLATE = """\
# autoharness config, written by `autoharness init`. Reference: README.md, section "Config".
workspace = "workspace"

[target]
repo = {repo}
base = {base}
branch = "autoharness"
editable = {editable}

{benchmark}
[benchmark.split]
seed = 42
train = 0.5
val = 0.25
test = 0.25

[backend]
kind = {backend}
model = ""
timeout_s = 1800
max_cost_usd = 5.0

[backend.options]
{backend_options}
[gate]
suite_threshold = 0.8
min_improvement = 0.0
promote_after = 2

[loop]
max_iterations = 50
plateau = 8
budget_usd = 50.0

[schedule]
start = ""
hours = 9
timezone = "UTC"

[notify]
webhook = ""
"""


def _toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, dict) else "{ " + ", ".join(
        f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"


def _toml_table(name: str, table: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if k not in subtables]
    for key, sub in subtables.items():
        lines += ["", f"[{name}.{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


@app.command()
@handled
def init(
    target: Annotated[Path, typer.Option(help="git repo of the agent to improve")],
    benchmark: Annotated[str, typer.Option(help="command | tau2 | harbor | bird-interact")] = "command",
    backend: Annotated[str, typer.Option(help="claude-code | codex | anthropic | openai | replay")] = "claude-code",
    output: Annotated[Path, typer.Option(help="where to write the config")] = Path("autoharness.toml"),
    force: Annotated[bool, typer.Option(help="overwrite an existing config")] = False,
) -> None:
    """Write a working config (and, for a named benchmark, a starter agent in the target)."""
    from agents import BACKENDS
    from orchestrator.errors import ConfigError
    if output.exists() and not force:
        raise ConfigError(f"{output}: exists; pass --force to overwrite")
    if not (target / ".git").exists():
        raise ConfigError(f"--target: {target} is not a git repository")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: unknown kind {backend!r}; valid: {', '.join(sorted(BACKENDS))}")
    written: list[str] = []
    if benchmark == "command":
        bench = {"kind": "command", "trials": 1, "concurrency": 4, "task_timeout_s": 600, "infra_error": "fail",
                 "options": {"cmd": ["python3", "/path/to/your/eval.py"]}}
        editable = ["agent/**"]
    else:
        from benchmarks.starters import starter_config, starter_files
        try:
            fragment = starter_config(benchmark)
            files = starter_files(benchmark)
        except KeyError:
            raise ConfigError(f"--benchmark: unknown kind {benchmark!r}; valid: command, tau2, harbor, bird-interact") from None
        bench, editable = fragment["benchmark"], fragment["editable"]
        for rel, content in files.items():
            dest = target / rel
            if dest.exists() and not force:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(content)
            written.append(rel)
    backend_options = {"replay": 'patches = "patches"\n'}.get(backend, "")
    repo = Path(target).resolve()
    try:
        repo_text = str(repo.relative_to(output.resolve().parent))
    except ValueError:
        repo_text = str(repo)
    text = INIT_TEMPLATE.format(repo=json.dumps(repo_text), base=json.dumps(_current_branch(repo)),
                                editable=json.dumps(editable), benchmark=_toml_table("benchmark", bench),
                                backend=json.dumps(backend), backend_options=backend_options)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    console.print(f"wrote {output}" + (f"; starter files in {target}: {', '.join(written)} (commit them on your base branch)"
                                       if written else ""))
    console.print("next: edit the config, then `autoharness doctor`")


def _sandbox_check():
    from agents.base import Check
    from orchestrator.proc import run_process
    from orchestrator.sandbox import Sandbox, build
    try:
        box: Sandbox = build("bwrap", [], [])
    except AutoharnessError as exc:
        return Check("sandbox", False, str(exc))
    res = run_process(box.wrap(["true"]), timeout_s=30)
    detail = "bwrap runs" if res.ok else f"bwrap cannot start here: {(res.stderr.strip() or '?')[-200:]}"
    return Check("sandbox", res.ok, detail)


def _current_branch(repo: Path) -> str:
    import git
    try:
        return git.Repo(repo).active_branch.name
    except (TypeError, ValueError):
        return "main"


@app.command()
@handled
def doctor() -> None:
    """Check everything a night would fail on: config, target, benchmark, backend and fallbacks."""
    from agents.base import Check
    checks: list[Check] = []
    cfg = _config()
    checks.append(Check("config", True, str(cfg.source)))
    from benchmarks import runner_class
    from orchestrator.gitops import TargetRepo
    try:
        repo = TargetRepo(cfg.target.repo, cfg.target.base, cfg.target.branch)
        base_ok = repo._sha(cfg.target.base) is not None
        checks.append(Check("target base", base_ok, f"{cfg.target.base} in {cfg.target.repo}"))
    except Exception as exc:  # doctor reports; it does not stop at the first problem
        checks.append(Check("target", False, str(exc)))
    for label, build in (
        ("benchmark", lambda: runner_class(cfg.benchmark.kind)(cfg.benchmark, cfg.config_dir)),
        ("backend", lambda: __import__("agents.fallback", fromlist=["build_agent"]).build_agent(cfg.backend, cfg.config_dir)),
    ):
        try:
            checks += build().check()
        except AutoharnessError as exc:
            checks.append(Check(label, False, str(exc)))
    if cfg.backend.sandbox == "bwrap":
        checks.append(_sandbox_check())
    failed = False
    for c in checks:
        mark = "[green]ok[/green]  " if c.ok else ("[red]FAIL[/red]" if c.fatal else "[yellow]warn[/yellow]")
        console.print(f"{mark} {escape(c.name)}: {escape(c.detail)}", highlight=False)
        failed |= (not c.ok and c.fatal)
    raise typer.Exit(1 if failed else 0)
