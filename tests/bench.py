"""`make bench`: speed figures of the orchestrator itself, on the bundled example.

Prints: demo wall time; per-iteration orchestration overhead (time outside the benchmark and the backend);
task runs saved by the cache and by early stops; restart-to-resume time after a SIGKILL; the daemon's idle
CPU and memory while it waits for its window; what containment costs (a sandboxed command's start-up, the
coding agent's private checkout and taking its files back as a tree); and the gate on a noisy benchmark with
known ground truth (tests/gate_sim.py): three rules side by side. And issue 12's figures: the orchestration's
share of an iteration measured from outside, proposals per hour at loop.parallel = 1, 2, 4 and the task pool's
utilisation (tests/bench_parallel.py), the cost of an iteration as the task count grows (tests/bench_scale.py),
and the Ray pool's overhead per task run.
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
from tests import bench_parallel, bench_scale, gate_sim  # noqa: E402


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
        final = json.loads(driver.ctx.store.get("final_test") or "{}")
    wall = time.monotonic() - start
    props = [r for r in rows if r.n > 0]
    overhead = [r.duration_s - r.bench_s - r.backend_s for r in props]
    # The final test's runs count too, where its record says how many there were.
    ran = sum(r.tasks_run for r in rows) + final.get("tasks_run", 0)
    cached = sum(r.tasks_cached for r in rows) + final.get("tasks_cached", 0)
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


def median_s(run, n: int = 15) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2]


def containment_figures(root: Path) -> None:
    from orchestrator.core.proc import run_process
    from orchestrator.core.sandbox import Bwrap, bwrap_problem
    from orchestrator.core.sandbox_docker import Docker, problem
    from orchestrator.gitops import TargetRepo

    boxes = {"none": None}
    if not bwrap_problem():
        boxes["bwrap (coding agent)"] = Bwrap(hide=[root / "hidden"], bind=[root])
        boxes["bwrap (benchmark run)"] = Bwrap(read_only=[root / "hidden"], bind=[root], host_writable=True)
    if not problem("autoharness-sandbox-test"):
        boxes["docker (test image)"] = Docker(bind=[root], read_only=[], image="autoharness-sandbox-test",
                                              mounts=[Path("/usr")])
    base = median_s(lambda: run_process(["true"], cwd=root))
    for name, box in boxes.items():
        argv = ["true"] if box is None else box.wrap(["true"])
        took = median_s(lambda argv=argv: run_process(argv, cwd=root), n=5 if "docker" in name else 15)
        print(f"sandboxed command start-up, {name}: median {took * 1000:.0f} ms ({took / base:.1f}x a bare command)")
    cfg = load_config(make_demo(root / "checkout"))
    repo = TargetRepo(cfg.target.repo, cfg.target.base, cfg.target.branch)
    tip = repo.sha(cfg.target.base)
    with repo.workdir(root / "work") as work:
        checkout = median_s(lambda: work.checkout(tip))
        take = median_s(lambda: work.take(tip))
        score = median_s(lambda: work.score(tip))
        files = len(work.store.entries(tip))
    print(f"private checkout of the example ({files} files): checkout {checkout * 1000:.0f} ms, take as a tree "
          f"{take * 1000:.0f} ms, write out to score {score * 1000:.0f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="autoharness-bench-") as tmp:
        root = Path(tmp)
        containment_figures(root)
        loop_figures(root)
        bench_parallel.share_figures(root)
        bench_parallel.parallel_figures(root)
        # Tasks and proposals long enough that two cores are not the bottleneck: each task process costs some
        # 60 ms of CPU to start, a third of a 0.2 s task, and K = 4 gates at once start 56 of them.
        bench_parallel.parallel_figures(root, proposals=12, task_s=1.0, backend_s=5.0)
        bench_scale.scale_figures(root)
        bench_parallel.ray_figures(root)
        restart_figures(root)
        idle_figures(root)
    gate_sim.main(int(os.environ.get("GATE_SIM_SEEDS", "200")))


if __name__ == "__main__":
    main()
