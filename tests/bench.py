"""`make bench`: speed figures of the orchestrator itself, on the bundled example.

Prints: demo wall time; per-iteration orchestration overhead (time outside the benchmark and the backend);
task runs saved by the cache and by early stops; restart-to-resume time after a SIGKILL; the daemon's idle
CPU and memory while it waits for its window.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.core.config import load_config  # noqa: E402
from orchestrator.demo import make_demo  # noqa: E402
from orchestrator.driver import Driver  # noqa: E402
from orchestrator.logs import configure_logging  # noqa: E402


def daemon(config: Path, kill_at: str = "") -> subprocess.Popen[bytes]:
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    entry = ["-m", "tests.kill_at", kill_at] if kill_at else ["-m", "orchestrator"]
    return subprocess.Popen([sys.executable, *entry, "--config", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full)


def heartbeat(ws: Path) -> dict:
    try:
        return json.loads((ws / "heartbeat.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def loop_figures(root: Path) -> None:
    cfg = load_config(make_demo(root / "loop"))
    start = time.monotonic()
    with Driver(cfg, log=configure_logging(cfg.workspace / "logs", console_level="off")) as driver:
        driver.session()
        rows = driver.ctx.store.iterations()
    wall = time.monotonic() - start
    props = [r for r in rows if r.n > 0]
    overhead = [r.duration_s - r.bench_s - r.backend_s for r in props]
    ran = sum(r.tasks_run for r in rows)
    cached = sum(r.tasks_cached for r in rows)
    skipped = sum(r.tasks_skipped for r in rows)
    print(f"loop on the example: {len(props)} proposals, wall {wall:.2f}s "
          f"({wall / max(len(props), 1):.2f}s per iteration, baseline and final test included)")
    print(f"  orchestration overhead per iteration: mean {sum(overhead) / len(overhead) * 1000:.0f} ms, "
          f"max {max(overhead) * 1000:.0f} ms; share of iteration time "
          f"{sum(overhead) / sum(r.duration_s for r in props):.1%}")
    print(f"  task runs: {ran} done, {cached} answered from the cache, {skipped} skipped by early stops; "
          f"without cache and early stop: {ran + cached + skipped} ({(cached + skipped) / (ran + cached + skipped):.0%} saved)")


def restart_figures(root: Path) -> None:
    config = make_demo(root / "restart")
    ws = config.parent / "workspace"
    killed = daemon(config, kill_at="gate:3")
    killed.wait(timeout=120)
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        proc = daemon(config, kill_at="gate:3")
        while True:
            hb = heartbeat(ws)
            if hb.get("pid") == proc.pid and hb.get("iteration") == 3 and hb.get("phase") in ("train", "analyze",
                                                                                               "propose", "gate"):
                times.append(time.monotonic() - t0)
                break
            if proc.poll() is not None and hb.get("pid") == proc.pid:
                times.append(time.monotonic() - t0)
                break
            time.sleep(0.005)
        proc.wait(timeout=120)
    print(f"restart to resume after SIGKILL (process start to the redone iteration's first phase): "
          f"median {sorted(times)[1] * 1000:.0f} ms over {len(times)} restarts")


def idle_figures(root: Path) -> None:
    config = make_demo(root / "idle")
    ws = config.parent / "workspace"
    config.write_text(config.read_text() + '\n[schedule]\nstart = "0 3 1 1 *"\nhours = 1\n')
    proc = daemon(config)
    try:
        end = time.monotonic() + 120
        while heartbeat(ws).get("phase") != "waiting" and time.monotonic() < end:
            time.sleep(0.1)
        tick = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        c0, t0 = cpu(), time.monotonic()
        time.sleep(10)
        c1, t1 = cpu(), time.monotonic()
        rss = next(int(ln.split()[1]) for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                   if ln.startswith("VmRSS"))
        print(f"idle daemon waiting for its window: CPU {(c1 - c0) / (t1 - t0):.2%} of one core over "
              f"{t1 - t0:.0f}s, RSS {rss / 1024:.0f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="autoharness-bench-") as tmp:
        root = Path(tmp)
        loop_figures(root)
        restart_figures(root)
        idle_figures(root)


if __name__ == "__main__":
    main()
