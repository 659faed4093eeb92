"""The orchestrator's own cost per iteration as the task count grows, with a benchmark that answers at once.

`InstantRunner` is a benchmark runner (`kind = "tests.bench_scale:InstantRunner"`) that judges every task in
the calling process, no task process at all: what an iteration then costs is the orchestrator's own work
(the cache, the analysis, the prompt, the gate's bookkeeping, the records). Each task needs one skill; the
agent knows the skills listed in agent/skills.txt; a failing train task writes a trace `<task id>.json`.

    python -m tests.bench_scale 1000 5000      # per-iteration cost, and where it goes (cProfile)
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

from orchestrator.core.contracts import BenchmarkRunner, TaskResult
from tests.toy import init_repo

SKILLS = 8


def task_ids(n: int) -> list[str]:
    return [f"task-{i}" for i in range(n)]


def need(task_id: str) -> str:
    return f"s{int(task_id.rsplit('-', 1)[1]) % SKILLS}"


class InstantRunner(BenchmarkRunner):
    """Options: `tasks` (how many)."""

    def tasks(self) -> list[str]:
        return task_ids(int(self.config.options["tasks"]))

    def run(self, agent_dir: Path, task_ids: list[str], *, traces_dir: Path | None) -> dict[str, TaskResult]:
        known = set((agent_dir / "agent" / "skills.txt").read_text().split())
        out = {}
        for t in task_ids:
            ok = need(t) in known
            res = TaskResult(1.0 if ok else 0.0, 0.0, 0.0, "" if ok else f"the agent lacks the skill {need(t)!r}")
            if traces_dir is not None and not ok:
                (traces_dir / f"{t}.json").write_text(json.dumps({"task": t, "need": need(t)}))
            self.report(t, res)
            out[t] = res
        return out


def make_scale(root: Path, n: int, patches: int = 3) -> Path:
    """A target that knows skill s0, a split of `n` instant tasks, and a replay queue whose every patch
    teaches nothing the tasks need (so each iteration is judged in full and rejected); returns the config."""
    target = root / "target"
    (target / "agent").mkdir(parents=True)
    (target / "agent" / "skills.txt").write_text("s0\n")
    init_repo(target)
    queue = root / "patches"
    queue.mkdir()
    for k in range(1, patches + 1):
        (queue / f"{k:04d}-noop.patch").write_text(
            f"Learn skill x{k}\n\ndiff --git a/agent/skills.txt b/agent/skills.txt\n--- a/agent/skills.txt\n"
            f"+++ b/agent/skills.txt\n@@ -1 +1,2 @@\n s0\n+x{k}\n")
    config = root / "autoharness.toml"
    config.write_text(f"""\
workspace = "workspace"
[target]
repo = "target"
editable = ["agent/**"]
[benchmark]
kind = "tests.bench_scale:InstantRunner"
[benchmark.split]
seed = 1
train = 0.5
val = 0.25
test = 0.25
[benchmark.options]
tasks = {n}
[backend]
kind = "replay"
[backend.options]
patches = "patches"
[loop]
max_iterations = {patches}
plateau = {patches + 1}
""")
    return config


def per_iteration(root: Path, n: int, profile: bool = False) -> tuple[float, str]:
    """Seconds of the median iteration after the baseline at `n` tasks, and (with `profile`) the top of
    cProfile's cumulative listing for one of them."""
    from orchestrator import pipeline
    from orchestrator.core.config import load_config
    from orchestrator.driver import Driver
    from orchestrator.logs import configure_logging

    cfg = load_config(make_scale(root, n))
    times, listing = [], ""
    with Driver(cfg, log=configure_logging(cfg.workspace / "logs", console_level="off")) as driver:
        driver.baseline()
        for k in range(3):
            prof = cProfile.Profile() if profile and k == 1 else None
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            pipeline.iterate(driver.ctx)
            if prof:
                prof.disable()
                text = io.StringIO()
                pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
                listing = text.getvalue()
            times.append(time.perf_counter() - t0)
    return sorted(times)[1], listing


def scale_figures(root: Path, sizes: tuple[int, ...] = (120, 1000, 5000)) -> None:
    """Issue 12: nothing per iteration may grow faster than linearly in the tasks."""
    took = {n: per_iteration(root / f"scale-{n}", n)[0] for n in sizes}
    first = sizes[0]
    print("orchestration per iteration with instant tasks (in-process benchmark, nothing else runs): "
          + ", ".join(f"{n} tasks {took[n] * 1000:.0f} ms ({took[n] / took[first]:.1f}x for {n / first:.1f}x tasks)"
                      for n in sizes))


def main(sizes: list[int]) -> None:
    import tempfile
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="autoharness-scale-") as tmp:
            took, listing = per_iteration(Path(tmp), n, profile=True)
        print(f"== {n} tasks: {took * 1000:.0f} ms per iteration\n{listing}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000])
