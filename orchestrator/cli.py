"""The `autoharness` command. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage; a run or a
baseline cancelled by a signal exits 128 + the signal (130 after Ctrl-C, 143 after SIGTERM).

Commands that work on a workspace go through the run driver (orchestrator/driver.py) and hold the workspace
as the daemon does (orchestrator/daemon.py: its lock, heartbeat and signal policy); `status` and `report`
only read it.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.console import console, err_console
from orchestrator.core.config import Config, load_config
from orchestrator.core.errors import AutoharnessError
from orchestrator.core.workspace import Workspace
from orchestrator.status import fmt, in_flight_table, now_line, print_findings, results_table, status_data

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Improve an AI agent overnight.")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="config file (TOML)")]


def _version(shown: bool) -> None:
    if shown:
        try:
            console.print(f"autoharness {version('autoharness')}", highlight=False)
        except PackageNotFoundError:  # run from a checkout that was never installed
            console.print("autoharness (not installed: no version)", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(ctx: typer.Context, config: ConfigOption = None,
          _: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False) -> None:
    ctx.obj = config


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one line on stderr and their exit code. A command that takes the context reads the
    config, so it takes `--config`/`-c` after its name too (`status -c x.toml`), where it wins over one given
    before the name."""
    @wraps(fn)
    def wrapper(*args: Any, config: Path | None = None, **kwargs: Any) -> Any:
        if config is not None:
            kwargs["ctx"].obj = config
        try:
            return fn(*args, **kwargs)
        except AutoharnessError as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:  # a Ctrl-C where no work runs (work has the daemon's signal policy)
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
    params = inspect.signature(fn, eval_str=True).parameters
    if "ctx" in params:
        option = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOption)
        wrapper.__signature__ = inspect.Signature([*params.values(), option])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**fn.__annotations__, "config": ConfigOption}
    return wrapper


def _config(ctx: typer.Context) -> Config:
    return load_config(ctx.obj)


def _holder(cfg: Config, command: str) -> Any:
    """The process holding the workspace for work a user started: the daemon's lock, heartbeat and signals."""
    from orchestrator.daemon import Daemon
    return Daemon(cfg, console, command=command)


def _attend(holder: Any, work: Callable[[Any], Any], reason: Callable[[Any], str] = lambda _: "done") -> Any:
    """Run `work` on a driver under the daemon's signal policy: the first Ctrl-C lets it finish (up to
    schedule.grace_s), the second cancels it: one line, and the exit code of the signal."""
    result = holder.attended(work, reason)
    if holder.cancelled:
        console.print(f"stopped: {holder.end_reason}", highlight=False, markup=False)
        raise typer.Exit(holder.exit_code or 1)
    return result


@app.command()
@handled
def baseline(ctx: typer.Context) -> None:
    """Freeze the splits and score the base commit on train, val and test.

    Ctrl-C lets the baseline finish (up to schedule.grace_s); a second Ctrl-C cancels it (exit 130).
    """
    holder = _holder(_config(ctx), "baseline")
    rec = _attend(holder, lambda driver: driver.baseline())
    console.print(f"baseline: val {fmt(rec.val_score)}, {rec.reason}, commit {rec.commit_sha[:12]}", highlight=False)


@app.command()
@handled
def run(ctx: typer.Context,
        once: Annotated[bool, typer.Option("--once", help="run a single iteration and exit")] = False) -> None:
    """Run the loop: one iteration with --once, else the scheduled daemon.

    Ctrl-C, SIGTERM or `autoharness stop`: stop after the current iteration (up to schedule.grace_s).

    A second Ctrl-C or SIGTERM: cancel that iteration now; it is redone next time.

    Exit code: 0 ended, or stopped after its iteration; 130 Ctrl-C cancelled one, 143 SIGTERM did; 1 error.
    """
    from orchestrator.records import decision_line
    cfg = _config(ctx)
    if not once:
        from orchestrator.daemon import run_daemon
        raise typer.Exit(run_daemon(cfg, console=console))
    # A session of at most one iteration: it obeys STOP, max_iterations, plateau and the budget.
    holder = _holder(cfg, "run --once")
    done: list[Any] = []

    def one(driver: Any) -> str:
        return driver.session(limit=1, external_stop=lambda: holder.stop_reason, score_test=False,
                              on_iteration=lambda rec: (done.append(rec), console.print(
                                  decision_line(rec), highlight=False, markup=False)))
    reason = _attend(holder, one, reason=str)
    if not done:
        console.print(f"no iteration run: {reason}", highlight=False, markup=False)


@app.command()
@handled
def stop(ctx: typer.Context) -> None:
    """Ask the running daemon to stop after its current iteration.

    It waits up to schedule.grace_s for it; `run --once` and `baseline` stop the same way.

    With nothing running it says so, changes nothing and exits 0.
    """
    from orchestrator.heartbeat import read, unit
    from orchestrator.lock import holder
    cfg = _config(ctx)
    ws = Workspace(cfg.workspace)
    pid = holder(ws.lock)
    if pid is None:
        console.print(f"no daemon is running on {ws.root}; nothing to stop", highlight=False, markup=False)
        return
    hb = read(ws.heartbeat) or {}
    who = "the daemon" if hb.get("pid") != pid or hb.get("command", "run") == "run" else f"autoharness {hb['command']}"
    try:
        if pid <= 0:  # it holds the lock but has not written its pid yet
            raise PermissionError
        os.kill(pid, signal.SIGTERM)
        what = unit(hb.get("phase") if hb.get("pid") == pid else None)
        console.print(f"asked {who} (pid {pid}) to stop; it finishes {what} first (up to {cfg.schedule.grace_s:g} s)",
                      highlight=False, markup=False)
    except ProcessLookupError:
        console.print(f"no daemon is running on {ws.root} (pid {pid} just ended); nothing to stop",
                      highlight=False, markup=False)
    except PermissionError:  # not ours to signal: the STOP file asks it at its next iteration
        ws.stop_file.write_text("requested by `autoharness stop`\n")
        console.print(f"cannot signal {f'pid {pid}' if pid > 0 else 'the process holding the workspace'}; wrote "
                      f"{ws.stop_file}: it stops before its next iteration", highlight=False, markup=False)


@app.command()
@handled
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """What happened so far: one row per iteration, the best score against the baseline, the spend, and what the
    daemon (or `run --once`, `baseline`) is doing now."""
    cfg = _config(ctx)
    data = status_data(cfg)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    hb = data.get("heartbeat")
    if not data["rows"]:
        console.print("the baseline is running (no results yet)" if data["baseline_running"]
                      else "no baseline yet: run `autoharness baseline`")
    else:
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
    if hb:
        console.print(now_line(hb), highlight=False, soft_wrap=True)
        if (flight := in_flight_table(hb, cfg.loop.parallel)) is not None:
            console.print(flight)
    if data.get("next_window"):
        console.print(f"next window: {data['next_window']}", highlight=False)


@app.command()
@handled
def report(ctx: typer.Context,
           final: Annotated[bool, typer.Option("--final", help="score the test split on the best commit")] = False) -> None:
    """The results table; with --final, the honest held-out test score of the best commit."""
    cfg = _config(ctx)
    if final:
        _attend(_holder(cfg, "report --final"), lambda driver: driver.final_test())
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
    path = write_report(cfg.workspace, budget_usd=cfg.loop.budget_usd, backend=cfg.backend, gate=cfg.gate,
                        target=cfg.target)
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
