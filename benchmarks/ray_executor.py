"""The Ray executor: the `command` benchmark's task runs as tasks on an existing Ray cluster
(`benchmark.executor = "ray"`, `benchmark.address`), one Ray task a run.

A worker does what the local pool does (`TaskCommand.run`: the same environment variables, token, containment,
timeout and result parsing), so a result means the same wherever it was made. What travels with a run:
- the candidate's files, packed once per state of its checkout and put in Ray's object store, which brings
  them to each node once; every run unpacks its own copy into a private folder. Not a runtime_env
  `working_dir`: Ray puts that folder first on the worker's import path, ahead of the code that parses the
  results, so a candidate could replace it; and a task's `working_dir` can only be a package uploaded before.
- a train run's traces, packed on the worker and unpacked into the local traces folder. Val and test runs
  write no trace anywhere.
Nothing else: the benchmark (its program, its files, its working folder) and autoharness itself must be
installed at the same paths on every node. The run sees the worker's environment with `options.env` over it.

A Ray-level failure (a worker or a node lost, no answer in time) is an infra error, which the evaluator retries
like any other; Ray's own retries are off, so there is one policy and every run is counted.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import socket
import tarfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.command import CommandRunner, TaskCommand
from benchmarks.containment import private_dir
from orchestrator.core import proc
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.contracts import BenchmarkRunner, Check, TaskResult
from orchestrator.core.errors import ConfigError
from orchestrator.core.files import file_signature

# Beyond the run's own timeout, which the worker enforces: time for Ray to schedule it, start a worker and
# bring the candidate's files to the node. Past it the run is an infra error.
GET_SLACK_S = 120.0
SKIP = frozenset({".git", "__pycache__"})   # never part of what a run needs
KEPT = 8                                      # packed checkouts kept in the object store (candidates in flight)
CONNECT_TIMEOUT_S = 5.0

_connected: list[str] = []   # the address this process joined (Ray allows one cluster per process)


class RayExecutor:
    """Runs a command runner's tasks on the Ray cluster this process has joined."""

    def __init__(self, ray: ModuleType):
        self.ray = ray
        # One CPU a run, as the local pool gives each run a slot; the evaluator retries, not Ray.
        self.remote = ray.remote(num_cpus=1, max_retries=0)(run_remote)
        self._shipped: OrderedDict[tuple[str, frozenset[Any]], Any] = OrderedDict()
        self._running: set[Any] = set()   # the runs in flight, for `terminate`
        self._ended: set[Any] = set()     # the runs `terminate` ended
        self._lock = threading.Lock()          # the runs in flight
        self._ship_lock = threading.Lock()     # the packed checkouts: one packing at a time, not one per run

    @classmethod
    def build(cls, cfg: BenchmarkConfig, runner: BenchmarkRunner) -> RayExecutor:
        if not isinstance(runner, CommandRunner):
            raise ConfigError(f'benchmark.executor = "ray": only the command runner can run on Ray, not '
                              f'kind = "{cfg.kind}" (use executor = "local")')
        try:
            import ray
        except ImportError:
            raise ConfigError('benchmark.executor = "ray": the ray package is not installed (pip install '
                              '"autoharness[ray]", the same Ray version as the cluster)') from None
        connect(ray, cfg.address)
        executor = cls(ray)
        proc.on_terminate(executor.terminate)  # a cancel ends the runs on the cluster as it kills local ones
        return executor

    def run(self, runner: BenchmarkRunner, agent_dir: Path, task_ids: list[str],
            traces_dir: Path | None) -> dict[str, TaskResult]:
        assert isinstance(runner, CommandRunner)
        command = runner.task_command()
        try:
            agent = self.ship(agent_dir)
        except (OSError, self.ray.exceptions.RayError) as exc:
            failed = TaskResult(None, error=f"could not ship the candidate to Ray: {summary(exc)}", error_class="infra")
            return {t: failed for t in task_ids}
        return runner.run_trials(task_ids, lambda task_id: self._one(command, agent, task_id, traces_dir))

    def ship(self, agent_dir: Path) -> Any:
        """The object store's copy of the candidate's files: packed again only when a file changed."""
        key = (str(agent_dir), frozenset(file_signature([agent_dir]).items()))
        with self._ship_lock:
            if key in self._shipped:
                self._shipped.move_to_end(key)
                return self._shipped[key]
            ref = self._shipped[key] = self.ray.put(pack(agent_dir))
            while len(self._shipped) > KEPT:
                self._shipped.popitem(last=False)   # the last reference gone, Ray frees the object
            return ref

    def check(self) -> Check:
        """The `doctor` line: the cluster this process joined, and what it has to run tasks on."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        cpus = self.ray.cluster_resources().get("CPU", 0)
        return Check("task pool", cpus > 0, f"Ray {self.ray.__version__} cluster at {_connected[0] if _connected else '?'}"
                     f": {len(nodes)} node{'s' if len(nodes) != 1 else ''}, {cpus:g} CPUs for task runs")

    def close(self) -> None:
        proc.on_terminate(self.terminate, remove=True)
        with self._ship_lock:
            self._shipped.clear()

    def terminate(self) -> None:
        """End every run in flight now (a cancel: what `proc.terminate_all` does to the local pool's). Ray kills
        their workers, and the task processes die with them; each run comes back as an infra error."""
        with self._lock:
            refs = list(self._running)
            self._ended.update(refs)
        for ref in refs:
            self.ray.cancel(ref, force=True)

    def _one(self, command: TaskCommand, agent: Any, task_id: str, traces_dir: Path | None) -> TaskResult:
        start = time.monotonic()
        ref = self.remote.remote(command, agent, task_id, traces_dir is not None)
        wait_s = command.timeout_s + GET_SLACK_S
        with self._lock:
            self._running.add(ref)
        try:
            result, traces = self.ray.get(ref, timeout=wait_s)
        except self.ray.exceptions.GetTimeoutError:
            self.ray.cancel(ref, force=True)
            return TaskResult(None, time.monotonic() - start, None, f"no answer from the Ray cluster within {wait_s:g}s",
                              "infra")
        except self.ray.exceptions.RayError as exc:
            why = "the run was cancelled" if ref in self._ended else summary(exc)
            return TaskResult(None, time.monotonic() - start, None, f"Ray: {why}", "infra")
        finally:
            with self._lock:
                self._running.discard(ref)
                self._ended.discard(ref)
        if traces is not None and traces_dir is not None:
            unpack(traces, traces_dir, strict=False)
        return result


def run_remote(command: TaskCommand, agent: bytes, task_id: str, train: bool) -> tuple[TaskResult, bytes | None]:
    """On a Ray worker: the candidate unpacked into a private folder, the task run as the local pool runs it,
    and its result with (train only) its traces."""
    missing = missing_here(command)
    if missing:
        return TaskResult(None, error=missing, error_class="infra"), None
    with private_dir("autoharness-agent-") as agent_dir:
        try:
            unpack(agent, agent_dir, strict=True)
        except (tarfile.TarError, OSError) as exc:  # returned, not raised: tarfile's errors do not unpickle
            error = f"the candidate cannot be unpacked on Ray node {socket.gethostname()}: {exc}"
            return TaskResult(None, error=error, error_class="infra"), None
        if not train:
            return command.run(agent_dir, task_id, None), None
        with private_dir("autoharness-traces-") as traces:
            return command.run(agent_dir, task_id, traces), pack(traces)


def missing_here(command: TaskCommand) -> str:
    """Why this node cannot run the benchmark ("" when it can): its working folder or program is not here."""
    program = command.cmd[0]
    found = (shutil.which(program, path=os.environ.get("PATH")) if os.sep not in program
             else (command.cwd / program).is_file())
    what = (f"its working folder {command.cwd}" if not command.cwd.is_dir()
            else f"its program {program}" if not found else "")
    return (f"the benchmark is not installed on Ray node {socket.gethostname()}: {what} is missing (install it "
            "at the same path on every node)") if what else ""


def pack(folder: Path) -> bytes:
    """A folder as a gzipped tar, symlinks kept as links and never followed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(folder.iterdir()):
            if path.name not in SKIP:
                tar.add(path, arcname=path.name, filter=lambda info: None if SKIP & set(Path(info.name).parts) else info)
    return buf.getvalue()


def unpack(blob: bytes, dest: Path, *, strict: bool) -> None:
    """Unpack what `pack` made: nothing may land outside `dest` (tarfile's data filter). A candidate's
    entry that would is an error (`strict`: the run needs its files whole); a trace's is left out."""
    def lenient(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError:
            return None

    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(dest, filter="data" if strict else lenient)


def summary(exc: BaseException) -> str:
    """One line for a Ray error: the cause a task raised, else the first line Ray wrote."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"[:500]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def connect(ray: ModuleType, address: str) -> None:
    """Join the cluster at `address`, once per process, leaving this process's SIGTERM handler as it was
    (Ray's own would end the daemon at once instead of letting it drain)."""
    where = "benchmark.address"
    if not address:
        raise ConfigError(f'{where}: say where the Ray cluster is: "auto" (the one this machine is part of), '
                          '"host:6379" (its head) or "ray://host:10001" (Ray Client)')
    if address != "auto":
        reachable(address)
    if ray.is_initialized():
        if _connected and _connected[0] != address:
            raise ConfigError(f"{where}: this process is already connected to the Ray cluster at {_connected[0]}, "
                              f"not {address}")
        return
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError, RuntimeError (another Ray version), ValueError: all a refusal
        raise ConfigError(f"{where}: cannot connect to the Ray cluster at {address}: {summary(exc)}") from None
    finally:
        if handler is not None:  # None: a handler not set from Python, which Ray's cannot have replaced
            signal.signal(signal.SIGTERM, handler)
    _connected[:] = [address]


def reachable(address: str) -> None:
    """Fail in seconds, with the reason, where Ray would retry for a minute."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f'benchmark.address: {address!r} is not "auto", "host:port" or "ray://host:port"')
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"benchmark.address: cannot connect to {address}: {exc.strerror or exc}") from None
