"""Runs inside the BIRD-Interact-ADK Python environment, with the ADK checkout as working directory.

Serves the three BIRD-Interact-ADK services in this process (uvicorn, on free local ports): the system
agent, with `system_agent.agent` replaced by the agent under optimization (a module of the worktree
exposing `build_agent(mode)`), the user simulator and the DB environment (PostgreSQL in Docker). Then it
runs the ADK's own a-interact pipeline (`orchestrator.ainteract.run_single_task`) on the selected tasks.

Request (one JSON line on stdin):
    {"op": "run", "agent_dir": ..., "agent": "agent.bird_agent", "data": ".../bird_interact_data.jsonl",
     "task_ids": [...], "concurrency": 3, "task_timeout_s": 1800, "save_dir": null | "dir"}
Events (JSON lines on the real stdout; everything else goes to stderr):
    {"event": "result", "task_id", "reward", "phase1_passed", "phase2_passed", "has_follow_up", "budget_used",
     "budget_remaining", "duration_s", "error", "error_class", "trace"} per task, then {"event": "done"};
    {"event": "fatal", "error", "error_class"} when nothing can run.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from shim_protocol import emit, serve_requests

# Errors from the agent endpoint that are the model API failing, not the agent.
TRANSIENT = ("ratelimit", "rate limit", "429", "503", "overloaded", "apiconnectionerror", "serviceunavailable",
             "internalservererror", "timeout")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app, port: int):
    import uvicorn
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    return server


def wait_healthy(ports: list[int], timeout_s: float = 60.0) -> None:
    import httpx
    deadline = time.monotonic() + timeout_s
    pending = list(ports)
    while pending:
        port = pending[0]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0, trust_env=False).status_code == 200:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"service on port {port} did not become healthy in {timeout_s:g}s")
        time.sleep(0.1)


def classify(exc: BaseException, agent_port: int) -> str:
    """infra, unless the agent's own endpoint failed for a reason other than the model API."""
    request = getattr(exc, "request", None)
    port = getattr(getattr(request, "url", None), "port", None) if request is not None else None
    response = getattr(exc, "response", None)
    detail = f"{type(exc).__name__} {exc} {getattr(response, 'text', '')}".lower()
    if port == agent_port and response is not None and not any(t in detail for t in TRANSIENT):
        return "agent_error"
    return "infra"


def load_data(path: str) -> dict[str, dict]:
    tasks = {}
    with open(path) as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                tasks[str(row["instance_id"])] = row
    return tasks


def op_run(req: dict) -> None:
    ports = {"SYSTEM_AGENT_PORT": free_port(), "USER_SIM_PORT": free_port(), "DB_ENV_PORT": free_port()}
    os.environ.update({k: str(v) for k, v in ports.items()})   # read by the ADK's settings at import
    sys.path[:0] = [req["agent_dir"], os.getcwd()]
    try:
        agent_module = importlib.import_module(req["agent"])
        if not callable(getattr(agent_module, "build_agent", None)):
            raise AttributeError(f"{req['agent']} has no build_agent(mode)")
    except BaseException as exc:  # the candidate's agent does not load: its tasks fail, not infra
        emit({"event": "fatal", "error": f"agent {req['agent']}: {type(exc).__name__}: {exc}",
              "error_class": "agent_error"})
        return
    importlib.import_module("system_agent")
    sys.modules["system_agent.agent"] = agent_module   # the ADK runtime builds its agent from this module
    apps = [importlib.import_module(f"{m}.server").app for m in ("system_agent", "user_simulator", "db_environment")]
    for app, port in zip(apps, ports.values(), strict=True):
        serve(app, port)
    wait_healthy(list(ports.values()))
    pipeline = importlib.import_module("orchestrator.ainteract")
    data = load_data(req["data"])
    asyncio.run(run_tasks(req, data, pipeline.run_single_task, ports["SYSTEM_AGENT_PORT"]))


async def run_tasks(req: dict, data: dict[str, dict], run_single_task, agent_port: int) -> None:
    gate = asyncio.Semaphore(req["concurrency"])
    save_dir = req.get("save_dir")
    timeout = float(req["task_timeout_s"])

    async def one(task_id: str) -> None:
        async with gate:
            start = time.monotonic()
            out = {"event": "result", "task_id": task_id, "phase1_passed": None, "phase2_passed": None,
                   "error": "", "error_class": "", "trace": None}
            try:
                if task_id not in data:
                    raise KeyError(f"task {task_id} is not in {req['data']}")
                result = await asyncio.wait_for(run_single_task(data[task_id]), timeout)
                out.update(reward=result.get("total_reward"),
                           **{k: result.get(k) for k in ("phase1_passed", "phase2_passed", "has_follow_up",
                                                         "budget_used", "budget_remaining")})
                if save_dir is not None:
                    path = Path(save_dir) / f"{task_id}.json"
                    path.write_text(json.dumps(result, indent=2, default=str))
                    out["trace"] = str(path)
            except TimeoutError:
                out.update(reward=0.0, error=f"timed out after {timeout:g}s", error_class="timeout")
            except Exception as exc:
                kind = classify(exc, agent_port)
                out.update(reward=0.0 if kind == "agent_error" else None, error_class=kind,
                           error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)[-1200:]}")
            out["duration_s"] = time.monotonic() - start
            emit(out)

    await asyncio.gather(*(one(t) for t in req["task_ids"]))


def main() -> None:
    serve_requests({"run": op_run})


if __name__ == "__main__":
    main()
