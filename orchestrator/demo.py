"""`make demo`: the whole loop, offline, on the bundled support agent with the replay backend.

Copies the example agent into ./demo/target (a fresh git repo), writes ./demo/autoharness.toml, runs the
baseline and iterations until the patch queue is empty, then prints the results and the branch's log, and
writes the report (./demo/workspace/report.html), whose path is the last line it prints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "benchmarks" / "example"  # the agent, its benchmark and patches
CONFIG = """\
workspace = "workspace"

[target]
repo = "target"
base = "main"
branch = "autoharness"
editable = ["support_agent/**"]

[benchmark]
kind = "command"
concurrency = 4
task_timeout_s = 30

[benchmark.split]
train = {train}
val = {val}
test = {test}

[benchmark.options]
cmd = [{python}, {eval}]
token = true                  # result lines must carry the run's token (see benchmarks/command.py)

[backend]
kind = "replay"
{sandbox}

[backend.options]
patches = {patches}

[loop]
max_iterations = 20
"""


def make_demo(root: Path) -> Path:
    """A fresh target repo and config under `root`; returns the config path."""
    if root.exists():
        shutil.rmtree(root)
    target = root / "target"
    shutil.copytree(HERE / "target", target, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=demo", "-c", "user.email=demo@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "The support agent, before autoharness"], cwd=target, check=True)
    split = json.loads((HERE / "split.json").read_text())
    config = root / "autoharness.toml"
    config.write_text(CONFIG.format(
        train=json.dumps(split["train"]), val=json.dumps(split["val"]), test=json.dumps(split["test"]),
        python=json.dumps(sys.executable), eval=json.dumps(str(HERE / "bench" / "eval.py")),
        patches=json.dumps(str(HERE / "patches")),
        sandbox=_sandbox_line(),
    ))
    return config


def _sandbox_line() -> str:
    """The demo runs sandboxed where a sandbox can run; elsewhere it still runs, and says it is unconfined
    (the replay backend only applies the bundled patches)."""
    from orchestrator.core.errors import ConfigError
    from orchestrator.core.sandbox import choose
    try:
        choose("auto", "autoharness-sandbox")
        return 'sandbox = "auto"'
    except ConfigError as exc:
        return f'sandbox = "none"            # {exc}'.replace("\n", " ")


def main() -> None:
    from orchestrator.console import console, progress_bars
    from orchestrator.core.config import load_config
    from orchestrator.driver import Driver
    from orchestrator.records import decision_line
    from orchestrator.report import write_report
    from orchestrator.status import print_findings, results_table, status_data

    start = time.monotonic()
    root = Path.cwd() / "demo"
    cfg = load_config(make_demo(root))
    console.print(f"[bold]autoharness demo[/bold]: improving the support agent in {root / 'target'}")
    with progress_bars() as progress, Driver(cfg, progress=progress) as driver:
        reason = driver.session(on_iteration=lambda r: console.print(decision_line(r), highlight=False, markup=False))
        rows = driver.ctx.store.iterations()
        log = driver.ctx.repo.log()
    data = status_data(cfg)
    console.print(results_table(data["rows"]))
    print_findings(console, data)
    console.print(f"stopped: {reason}")
    console.print(f"\n[bold]git log autoharness[/bold] ({root / 'target'})\n{log}\n", highlight=False)
    props = [r for r in rows if r.n > 0]
    overhead = [r.duration_s - r.bench_s - r.backend_s for r in props]
    console.print(
        f"wall time {time.monotonic() - start:.1f}s; per-iteration orchestration overhead "
        f"{sum(overhead) / max(len(overhead), 1):.2f}s (max {max(overhead, default=0):.2f}s); "
        f"task runs {sum(r.tasks_run for r in rows)}, answered from the cache {sum(r.tasks_cached for r in rows)}, "
        f"saved by early stop {sum(r.tasks_skipped for r in rows)}", highlight=False)
    # The page the README promises for the morning; its path is the last line, to open or to script.
    report = write_report(cfg.workspace, title="autoharness demo", budget_usd=cfg.loop.budget_usd,
                          backend=cfg.backend, gate=cfg.gate, target=cfg.target)
    console.print(f"report: {report}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
