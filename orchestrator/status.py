"""What `status`, `report` and the demo show: the records read beside a running daemon (read-only), as data
and as a table."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.core.config import Config
from orchestrator.core.workspace import Workspace
from orchestrator.daemon import next_window
from orchestrator.heartbeat import is_running, is_stale, read
from orchestrator.notify import NightSummary
from orchestrator.report import paired_gain, recorded_noise
from orchestrator.store import Store


def status_data(cfg: Config) -> dict[str, Any]:
    """Everything `status` and `report` show: the rows, the run's summary, the benchmark's noise and the final
    test against the baseline (once measured), the daemon's heartbeat."""
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
            data["sandbox"] = store.get("sandbox") or ""
            noise = recorded_noise(store, cfg.gate)
            if noise is not None:
                data["noise"] = {"line": noise[0], "warnings": noise[1]}
            final = json.loads(store.get("final_test") or "{}")
            if "low" in final:  # scored against a baseline test: the paired difference and its interval
                data["test_vs_baseline"] = final
        finally:
            store.close()
    hb = read(ws.heartbeat)
    if hb is not None:
        hb["stale"], hb["running"] = is_stale(hb), is_running(hb)
    data["heartbeat"] = hb
    data["baseline_running"] = bool(hb and hb["running"] and not data["rows"]
                                    and str(hb.get("phase")).startswith(("starting", "baseline")))
    nxt = next_window(cfg)
    data["next_window"] = nxt.isoformat() if nxt else None
    return data


def now_line(hb: dict[str, Any], now: float | None = None) -> str:
    """What the process that holds (or held) the workspace is doing, from its heartbeat (rich markup):
    `daemon: pid 12, phase gate, iteration 3, val 2/4 tasks, for 1m05s`."""
    phase, n, progress = str(hb.get("phase")), hb.get("iteration"), hb.get("progress")
    who = "daemon" if hb.get("command", "run") == "run" else str(hb["command"])
    parts = [f"pid {hb.get('pid')}", f"phase {phase}"]
    if n and not phase.startswith("baseline"):  # iteration 0 is the baseline, whose phases say so
        parts.append(f"iteration {n}")
    if progress and phase != "stopped":
        parts.append(f"{progress['label']} {progress['done']}/{progress['total']} tasks")
    parts.append(f"for {dur((now or time.time()) - hb.get('since', now or time.time()))}")
    line = escape(f"{who}: {', '.join(parts)}")
    if phase == "stopped" and hb.get("stop_reason"):
        line += escape(f"; stopped: {hb['stop_reason']}")
    elif not hb.get("running", True):
        line += " [red](not running: its heartbeat is stale or its process is gone; the next start resumes)[/red]"
    return line


def in_flight_table(hb: dict[str, Any], parallel: int, now: float | None = None) -> Table | None:
    """The candidates a running process has in flight, one row each: shown when there are several, or any with
    `loop.parallel` > 1 (one alone is the line above it)."""
    flight = hb.get("in_flight") or []
    if not hb.get("running", True) or not (len(flight) > 1 or (flight and parallel > 1)):
        return None
    now = now or time.time()
    table = Table(title="in flight")
    for col in ("iter", "phase", "for", "base"):
        table.add_column(col)
    table.add_column("focus group", max_width=50, overflow="ellipsis", no_wrap=True)
    table.add_column("progress")
    for e in flight:
        progress = e.get("progress")
        table.add_row(str(e["iteration"]), escape(str(e.get("phase"))), dur(now - e.get("since", now)),
                      "" if e.get("base") is None else str(e["base"]), escape(str(e.get("group") or "")),
                      f"{escape(progress['label'])} {progress['done']}/{progress['total']}" if progress else "")
    return table


def print_findings(console: Console, data: dict[str, Any]) -> None:
    """The lines under the table (status, the demo): the sandbox, the benchmark's noise, the honest test gain."""
    if data.get("sandbox"):
        shown = ("[red]none[/red] (the coding agent runs unconfined, by choice)" if data["sandbox"] == "none"
                 else data["sandbox"])
        console.print(f"sandbox: {shown}", highlight=False)
    if data.get("noise"):
        console.print(f"noise: {escape(data['noise']['line'])}", highlight=False, soft_wrap=True)
        for warning in data["noise"]["warnings"]:
            console.print(f"  [yellow]{escape(warning)}[/yellow]", highlight=False, soft_wrap=True)
    if data.get("test_vs_baseline"):
        final = data["test_vs_baseline"]
        console.print(f"test: {fmt(final['baseline'])} -> {fmt(final['score'])} ({paired_gain(final)})",
                      highlight=False, soft_wrap=True)


def results_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="autoharness results")
    for col in ("iter", "decision", "val", "suite", "commit", "backend", "cost", "time", "reason"):
        table.add_column(col, overflow="fold", max_width=60 if col == "reason" else None)
    colours = {"accepted": "green", "rejected": "yellow", "error": "red", "baseline": "cyan"}
    for r in rows:
        cost = "" if r["n"] == 0 else ("unknown" if r["cost_usd"] is None else f"${r['cost_usd']:.2f}")
        reason = (f"{r['stage']}: " if r["stage"] else "") + r["reason"]
        table.add_row(str(r["n"]), f"[{colours.get(r['decision'], 'white')}]{r['decision']}[/]", fmt(r["val_score"]),
                      f"{r['evals_passed']}/{r['evals_total']}", (r["commit_sha"] or "")[:10], r["backend"], cost,
                      dur(r["duration_s"]), reason)
    return table


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def dur(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
