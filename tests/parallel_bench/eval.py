"""A stand-in benchmark for the parallel-candidate tests: each task needs one skill of the agent, and a task
whose skill is off fails with its skill's own error text, so the failures fall into one group per skill.

The tasks and error texts are in tasks.json and errors.json beside it (tests/parallel_bench writes them). The
agent keeps each skill in its own file (agent/<skill>.py, `ENABLED = True` when it has it), so that fixes
of different skills never touch the same lines. Deterministic: no clock, no randomness.
"""

import json
import os
import runpy
import sys
from pathlib import Path

here = Path(__file__).parent
tasks = json.loads((here / "tasks.json").read_text())  # task id -> the skill it needs
errors = json.loads((here / "errors.json").read_text())  # skill -> what its tasks say when they fail
if os.environ.get("AUTOHARNESS_LIST_TASKS"):
    for task_id in tasks:
        print(json.dumps({"task_id": task_id}))
    sys.exit(0)
token = sys.stdin.readline().strip() if os.environ.get("AUTOHARNESS_RESULT_TOKEN") == "stdin" else None
stamp = {"token": token} if token else {}
agent = Path(os.environ["AUTOHARNESS_AGENT_DIR"]) / "agent"
traces = os.environ.get("AUTOHARNESS_TRACES_DIR")


def has(skill: str) -> bool:
    path = agent / f"{skill}.py"
    return path.is_file() and runpy.run_path(str(path)).get("ENABLED") is True


for task_id in os.environ["AUTOHARNESS_TASK_IDS"].split(","):
    skill = tasks.get(task_id)
    if skill is None:
        print(json.dumps({"task_id": task_id, "reward": None, "error": "unknown task", **stamp}))
        continue
    ok = has(skill)
    if traces:
        Path(traces, f"{task_id}.json").write_text(json.dumps({"task": task_id, "skill": skill, "ok": ok}))
    print(json.dumps({"task_id": task_id, "reward": 1.0 if ok else 0.0, "error": "" if ok else errors[skill],
                      **stamp}))
