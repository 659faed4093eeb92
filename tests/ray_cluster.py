"""A real Ray cluster on this machine, for the tests and `make bench`: `ray start --head --block` on the
loopback address, in a temporary folder of its own, stopped with everything it started when the block ends.
And the Ray pool's overhead per task run against the local pool, on the bundled example."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

START_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_head(num_cpus: int = 2) -> Iterator[str]:
    """A Ray head with `num_cpus` CPUs; yields its address. This process leaves the cluster (ray.shutdown)
    before the head stops, since a Ray driver whose cluster is gone ends its own process."""
    temp = Path(tempfile.mkdtemp(prefix="ahray"))   # short: Ray's sockets live under it
    port = free_port()
    log = temp / "head.log"
    argv = [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}", f"--num-cpus={num_cpus}",
            "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={temp}", "--block"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with log.open("w") as out:
        head = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_started(head, log)
        yield f"127.0.0.1:{port}"
    finally:
        _leave()
        _stop(head)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_started(head: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if head.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start --head did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _leave() -> None:
    import ray
    if ray.is_initialized():
        ray.shutdown()


def _stop(head: subprocess.Popen) -> None:
    """`ray start --block` stops what it started on SIGTERM; its process group (ours) is killed if it hangs."""
    head.terminate()
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()


def ray_overhead_figures(root: Path) -> None:
    """Prints the ms per task run of the bundled example on the local pool and on a local Ray cluster: one run at
    a time, local and Ray in turn so that a load that comes and goes weighs on both (medians), then `concurrency`
    runs at once (the pool's threads). The difference is what Ray adds to each run."""
    from benchmarks.command import CommandRunner
    from benchmarks.ray_executor import RayExecutor
    from orchestrator.core.config import load_config
    from orchestrator.demo import make_demo

    config = make_demo(root / "ray-overhead")   # a folder of its own: make_demo empties the one it is given
    cfg = load_config(config).benchmark
    runner = CommandRunner(cfg, config.parent)
    agent = config.parent / "target"
    tasks = [*cfg.split.train, *cfg.split.val, *cfg.split.test]
    with local_head(num_cpus=cfg.concurrency) as address:
        executor = RayExecutor.build(cfg.model_copy(update={"executor": "ray", "address": address}), runner)
        runs = {"local": lambda t: runner.run(agent, [t], traces_dir=None),
                "Ray": lambda t: executor.run(runner, agent, [t], None)}
        _at_once(runs["Ray"], tasks, cfg.concurrency)   # its workers started, the candidate shipped
        one = {how: [] for how in runs}
        for t in tasks:
            for how, run in runs.items():
                one[how].append(_ms(run, t))
        many = {how: _at_once(run, tasks, cfg.concurrency) for how, run in runs.items()}
    local, ray = statistics.median(one["local"]), statistics.median(one["Ray"])
    added = statistics.median(r - loc for loc, r in zip(one["local"], one["Ray"], strict=True))
    print(f"Ray pool, the example's {len(tasks)} tasks one at a time: local {local:.0f} ms a run, Ray {ray:.0f} ms "
          f"(median of the differences +{added:.0f} ms); {cfg.concurrency} at once: local {many['local']:.0f} ms a "
          f"run, Ray {many['Ray']:.0f} ms")


def _ms(run: Callable[[str], object], task: str) -> float:
    start = time.perf_counter()
    run(task)
    return (time.perf_counter() - start) * 1000


def _at_once(run: Callable[[str], object], tasks: list[str], concurrency: int) -> float:
    """Wall ms per task run with `concurrency` runs at once."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, tasks))
    return (time.perf_counter() - start) * 1000 / len(tasks)
