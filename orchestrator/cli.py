"""The `autoharness` command. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.

Commands that work on a workspace go through the run driver (orchestrator/driver.py); `status` and `report`
only read it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.console import console, err_console, progress_bars
from orchestrator.core.config import Config, load_config
from orchestrator.core.errors import AutoharnessError
from orchestrator.core.workspace import Workspace
from orchestrator.heartbeat import is_stale
from orchestrator.status import dur, fmt, print_findings, results_table, status_data

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Improve an AI agent overnight.")


@app.callback()
def _main(ctx: typer.Context,
          config: Annotated[Path | None, typer.Option("--config", "-c", help="config file (TOML)")] = None) -> None:
    ctx.obj = config


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


def _config(ctx: typer.Context) -> Config:
    return load_config(ctx.obj)


def _iteration_line(rec: Any) -> str:
    return f"iteration {rec.n}: [bold]{rec.decision}[/bold] {rec.stage + ': ' if rec.stage else ''}{rec.reason}"


@app.command()
@handled
def baseline(ctx: typer.Context) -> None:
    """Freeze the splits and score the base commit on train, val and test."""
    from orchestrator.driver import Driver
    with progress_bars() as progress, Driver(_config(ctx), progress=progress) as driver:
        rec = driver.baseline()
    console.print(f"baseline: val {fmt(rec.val_score)}, {rec.reason}, commit {rec.commit_sha[:12]}")


@app.command()
@handled
def run(ctx: typer.Context,
        once: Annotated[bool, typer.Option("--once", help="run a single iteration and exit")] = False) -> None:
    """Run the loop: one iteration with --once, else the scheduled daemon."""
    cfg = _config(ctx)
    if not once:
        from orchestrator.daemon import run_daemon
        raise typer.Exit(run_daemon(cfg, console=console))
    # A session of at most one iteration: it obeys STOP, max_iterations, plateau and the budget.
    from orchestrator.driver import Driver
    done: list[Any] = []
    with progress_bars() as progress, Driver(cfg, progress=progress) as driver:
        reason = driver.session(limit=1, on_iteration=done.append, score_test=False)
    for rec in done:
        console.print(_iteration_line(rec), highlight=False)
    if not done:
        console.print(f"no iteration run: {reason}", highlight=False)


@app.command()
@handled
def stop(ctx: typer.Context) -> None:
    """Ask a running daemon to stop: it finishes the current iteration (up to schedule.grace_s)."""
    cfg = _config(ctx)
    ws = Workspace(cfg.workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.stop_file.write_text(f"requested at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    try:
        pid = int(ws.lock.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        console.print(f"asked the daemon (pid {pid}) to stop; it drains the current iteration first")
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        console.print(f"wrote {ws.stop_file}; no daemon is running, so the next one will stop at once")


@app.command()
@handled
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """What happened so far: one row per iteration, the best score against the baseline, the spend."""
    cfg = _config(ctx)
    data = status_data(cfg)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    if not data["rows"]:
        console.print("no baseline yet: run `autoharness baseline`")
        return
    console.print(results_table(data["rows"]))
    console.print(
        f"best val {fmt(data['best_val'])}"
        + (f", re-measured {fmt(data['best_val_remeasured'])}" if data.get("best_val_remeasured") is not None else "")
        + f" (baseline {fmt(data['baseline_val'])}); "
        f"accepted {data['accepted']}, rejected {data['rejected']}, errors {data['errors']}; "
        f"spent ${data['spend_usd']:.2f} of ${data['budget_usd']:.2f}"
        + (f" ({data['unknown_cost']} proposals of unknown cost)" if data["unknown_cost"] else ""),
        highlight=False,
    )
    print_findings(console, data)
    hb = data.get("heartbeat")
    if hb:
        stale = " [red](stale heartbeat: the daemon is not running)[/red]" if is_stale(hb) else ""
        line = (f"daemon: pid {hb.get('pid')}, phase {hb.get('phase')}"
                + (f", iteration {hb['iteration']}" if hb.get("iteration") is not None else "")
                + f", for {dur(time.time() - hb.get('since', time.time()))}{stale}")
        if hb.get("phase") == "stopped" and hb.get("stop_reason"):
            line += f"; stopped: {hb['stop_reason']}"
        console.print(line, highlight=False)
    if data.get("next_window"):
        console.print(f"next window: {data['next_window']}", highlight=False)


@app.command()
@handled
def report(ctx: typer.Context,
           final: Annotated[bool, typer.Option("--final", help="score the test split on the best commit")] = False) -> None:
    """The results table; with --final, the honest held-out test score of the best commit."""
    cfg = _config(ctx)
    if final:
        from orchestrator.driver import Driver
        with progress_bars() as progress, Driver(cfg, progress=progress) as driver:
            driver.final_test()
    data = status_data(cfg)
    if not data["rows"]:
        console.print("no baseline yet: run `autoharness baseline`")
        return
    console.print(results_table(data["rows"]))
    table = Table(title="scores")
    for col in ("split", "baseline", "best"):
        table.add_column(col)
    table.add_row("val", fmt(data["baseline_val"]), fmt(data["best_val"]))
    table.add_row("test", fmt(data["baseline_test"]), fmt(data["final_test"]) if final or data["final_test"] is not None
                  else "(run report --final)")
    console.print(table)
    from orchestrator.report import write_report
    path = write_report(cfg.workspace, budget_usd=cfg.loop.budget_usd, backend=cfg.backend, gate=cfg.gate)
    console.print(f"report: {path}", highlight=False)


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
    from orchestrator import init as initialise
    done = initialise.write(target, output, benchmark=benchmark, backend=backend, force=force)
    console.print(f"wrote {output}" + (f"; starter files in {target}: {', '.join(done.starter)} (commit them on your "
                                       "base branch)" if done.starter else ""), highlight=False, markup=False, soft_wrap=True)
    console.print(done.editable.line(), highlight=False, markup=False, soft_wrap=True)
    console.print("next: edit the config, then `autoharness doctor`")


@app.command()
@handled
def doctor(ctx: typer.Context) -> None:
    """Check everything a night would fail on: config, target, benchmark, backend and fallbacks."""
    from orchestrator.doctor import checks, exit_code
    found = []
    for c in checks(_config(ctx)):  # printed as each check finishes
        mark = "[green]ok[/green]  " if c.ok else ("[red]FAIL[/red]" if c.fatal else "[yellow]warn[/yellow]")
        console.print(f"{mark} {escape(c.name)}: {escape(c.detail)}", highlight=False, soft_wrap=True)
        found.append(c)
    raise typer.Exit(exit_code(found))  # 2: a FAIL from the config or input; 1: any other FAIL


@app.command()
@handled
def install(name: Annotated[str, typer.Argument(help="the benchmark: tau2 | harbor")]) -> None:
    """Build a benchmark's own Python environment where its runner looks for it (reused when already built)."""
    from orchestrator.install import install as build
    build(name, say=lambda line: console.print(line, highlight=False, soft_wrap=True))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


@app.command("model-server")
@handled
def model_server(
    script: Annotated[Path, typer.Option("--script", help="JSON list of steps (the format: agents/scripted_server.py)")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 0,
    log: Annotated[Path | None, typer.Option(help="append every request as a JSON line here")] = None,
) -> None:
    """Serve a scripted model on 127.0.0.1 until interrupted: try a backend offline, rehearse a night."""
    from agents.scripted_server import ScriptedServer, load_script
    from orchestrator.core.errors import ConfigError
    try:
        steps, extra = load_script(script)
    except ValueError as exc:
        raise ConfigError(f"--script: {exc}") from None
    try:
        srv = ScriptedServer(steps, port=port, log_path=log, **extra).start()
    except OSError as exc:
        raise ConfigError(f"--port {port}: cannot listen on 127.0.0.1: {exc.strerror or exc}") from None
    try:
        # The URLs first, as shell assignments: the Anthropic root, then the OpenAI base (ends in /v1).
        print(f"ANTHROPIC_BASE_URL={srv.base_url}", flush=True)
        print(f"OPENAI_BASE_URL={srv.openai_base_url}", flush=True)
        err_console.print(f"serving {len(steps)} scripted steps; Ctrl-C stops", highlight=False)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
