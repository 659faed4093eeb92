"""Scores the Kettle & Co. support agent on the tasks of tasks.json. Standard library only.

It speaks the `command` runner's contract, through the environment:
  AUTOHARNESS_AGENT_DIR   root of the agent repo; `support_agent` is imported from there
  AUTOHARNESS_TASK_IDS    comma-separated task ids (every task when unset)
  AUTOHARNESS_TRACES_DIR  when set, a trace `<task_id>.json` per task goes there; when unset nothing
                          is written anywhere (no trace, no bytecode in the agent repo)
  AUTOHARNESS_LIST_TASKS  when set, print every task id, one a line, and exit
  AUTOHARNESS_RESULT_TOKEN  when "stdin", the first line of stdin is the run's token: read before the
                          agent is imported, and put in every result line (the runner ignores a line
                          without it, so the agent's own prints cannot pass for results)
and prints one JSON object a line: {"task_id": ..., "reward": 1.0 | 0.0 | null, "error": "...", "token": ...}.
A task passes when every expected tool call was made, no order was changed beyond what was expected,
and the reply states every expected fact. An unknown task id is an infra error (reward null).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import sys
import traceback
from collections import Counter
from pathlib import Path

TASKS_FILE = Path(__file__).resolve().with_name("tasks.json")
ORDER_CHANGES = {"cancel_order", "issue_refund", "change_address"}
AGENT_PACKAGE = "support_agent"


def format_call(action) -> str:
    """`issue_refund(A1004, 34.50)`: the benchmark's own spelling, whatever the agent's __str__ says."""
    def arg(value) -> str:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return f"{value:.2f}" if is_number else str(value)
    return f"{action.tool}({', '.join(arg(a) for a in action.args)})"


def describe(exc: BaseException, agent_dir: Path) -> str:
    """`KeyError: 'eta' (support_agent/agent.py:88)`: the exception and the agent's line that raised it."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).is_relative_to(agent_dir)]
    if frames:
        text += f" ({Path(frames[-1].filename).relative_to(agent_dir).as_posix()}:{frames[-1].lineno})"
    return text


def load_agent(agent_dir: Path):
    """The agent's SupportAgent class, imported from agent_dir without leaving bytecode there."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(agent_dir))
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries results only
        module = importlib.import_module(AGENT_PACKAGE)
    origin = Path(module.__file__ or "").resolve()
    if not origin.is_relative_to(agent_dir):
        raise ImportError(f"{AGENT_PACKAGE} was imported from {origin}, not from the agent dir")
    return module.SupportAgent


def judge(expect: dict, actions: list[str], text: str) -> list[str]:
    """Why the agent's turn fails the task; empty when it passes."""
    problems = []
    wanted = expect.get("actions", [])
    missing = [a for a in wanted if a not in actions]
    unwanted = Counter(a for a in actions if a.split("(", 1)[0] in ORDER_CHANGES) - Counter(wanted)
    if missing or unwanted:
        problems.append(f"expected {', '.join(wanted) or 'no change to the order'}; "
                        f"agent did: {', '.join(actions) or 'nothing'}")
    lacking = [fact for fact in expect.get("facts", []) if fact.lower() not in text.lower()]
    if lacking:
        shown = text if len(text) <= 160 else text[:157] + "..."
        problems.append(f"reply lacks {', '.join(json.dumps(f) for f in lacking)}: {json.dumps(shown)}")
    return problems


def new_trace(task: dict) -> dict:
    return {"task_id": task["id"], "category": task["category"], "message": task["message"],
            "expected": task["expect"]}


def run_task(agent_cls, task: dict, db: dict, agent_dir: Path) -> dict:
    """One task on its own copy of the database; returns its trace, verdict included."""
    trace = new_trace(task)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            reply = agent_cls(copy.deepcopy(db)).handle(task["message"])
            text, actions = str(reply.text), [format_call(a) for a in reply.actions]
    except (Exception, SystemExit) as exc:
        trace.update(reward=0.0, error=f"agent raised {describe(exc, agent_dir)}",
                     traceback=traceback.format_exc())
        return trace
    problems = judge(task["expect"], actions, text)
    trace.update(reply=text, actions=actions, reward=0.0 if problems else 1.0, error="; ".join(problems))
    return trace


def read_token() -> str | None:
    return sys.stdin.readline().strip() if os.environ.get("AUTOHARNESS_RESULT_TOKEN") == "stdin" else None


def emit(task_id: str, reward: float | None, error: str, token: str | None) -> None:
    line = {"task_id": task_id, "reward": reward, "error": error} | ({"token": token} if token else {})
    print(json.dumps(line), flush=True)


def main() -> int:
    bench = json.loads(TASKS_FILE.read_text())
    tasks = {t["id"]: t for t in bench["tasks"]}
    if os.environ.get("AUTOHARNESS_LIST_TASKS"):
        print("\n".join(tasks))
        return 0
    raw_dir = os.environ.get("AUTOHARNESS_AGENT_DIR", "")
    agent_dir = Path(raw_dir).resolve()
    if not raw_dir or not agent_dir.is_dir():
        print("eval.py: AUTOHARNESS_AGENT_DIR must name the agent repo's folder", file=sys.stderr)
        return 2
    raw_ids = os.environ.get("AUTOHARNESS_TASK_IDS")
    ids = list(tasks) if raw_ids is None else [t.strip() for t in raw_ids.split(",") if t.strip()]
    traces_env = os.environ.get("AUTOHARNESS_TRACES_DIR")
    traces_dir = Path(traces_env) if traces_env else None
    token = read_token()  # before any of the agent's code runs

    agent_cls, load_error, load_tb = None, "", ""
    try:
        agent_cls = load_agent(agent_dir)
    except (Exception, SystemExit) as exc:
        load_error = f"could not import the agent: {describe(exc, agent_dir)}"
        load_tb = traceback.format_exc()

    for task_id in ids:
        task = tasks.get(task_id)
        if task is None:
            emit(task_id, None, f"unknown task id {task_id!r}", token)
            continue
        if agent_cls is None:
            trace = new_trace(task) | {"reward": 0.0, "error": load_error, "traceback": load_tb}
        else:
            trace = run_task(agent_cls, task, bench["db"], agent_dir)
        if traces_dir is not None:
            traces_dir.mkdir(parents=True, exist_ok=True)
            (traces_dir / f"{task_id}.json").write_text(json.dumps(trace, indent=2) + "\n")
        emit(task_id, trace["reward"], trace["error"], token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
