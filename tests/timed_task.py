"""A benchmark task that takes a set time, for `make bench`: runs a command benchmark's eval script (argv[1]) in
this process, then waits until TIMED_TASK_S seconds have passed since the kernel started the process, and
appends `<start> <end> <task ids>` (time.time() seconds) to TIMED_TASK_LOG: what a clock outside the
orchestrator sees of each task process, interpreter start-up included. Standard library only, so that it runs
under `python -S` (no site-packages: a fast start). Copied next to the bench's files, not run from tests/,
whose files the benchmark's check would otherwise watch."""

import os
import runpy
import sys
import time


def started() -> float:
    """When the kernel started this process, on time.time()'s clock (to a clock tick: 10 ms)."""
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, counted after the name
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


def main() -> int:
    start, tasks = started(), os.environ.get("AUTOHARNESS_TASK_IDS")
    sys.argv = sys.argv[1:]
    code = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    if tasks is None:  # a listing of the tasks, not a task
        return code
    time.sleep(max(start + float(os.environ["TIMED_TASK_S"]) - time.time(), 0.0))
    with open(os.environ["TIMED_TASK_LOG"], "a") as fh:
        fh.write(f"{start:.6f} {time.time():.6f} {tasks}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
