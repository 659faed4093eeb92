"""The runners' side of candidate containment, one runner at a time: duplicate results, the per-run token, and
held-out runs that can neither change the benchmark nor leave anything behind. The loop's side:
test_candidate_containment.py."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

from benchmarks.command import CommandRunner
from benchmarks.example import EVAL_SCRIPT, TARGET_DIR
from orchestrator.core.config import BenchmarkConfig
from tests.helpers import need_bwrap
from tests.integration.test_tau2_runner import agent_dir as tau2_agent_dir
from tests.integration.test_tau2_runner import fake_python
from tests.integration.test_tau2_runner import runner as tau2_runner


def command(tmp_path: Path, script: str, **options) -> CommandRunner:
    bench = tmp_path / "bench"
    bench.mkdir(exist_ok=True)
    (bench / "eval.py").write_text(script)
    (bench / "tasks.json").write_text('{"t1": "answer"}')
    cfg = BenchmarkConfig(kind="command", task_timeout_s=30,
                          options={"cmd": [sys.executable, str(bench / "eval.py")], **options})
    return CommandRunner(cfg, tmp_path)


def agent(tmp_path: Path) -> Path:
    path = tmp_path / "agent"
    path.mkdir(exist_ok=True)
    return path


TWICE = """
import json
print(json.dumps({"task_id": "t1", "reward": 0.0}))
print(json.dumps({"task_id": "t1", "reward": 0.0}))   # a repeat is harmless
print(json.dumps({"task_id": "t1", "reward": 1.0}))
"""


def test_a_task_reported_twice_with_different_results_is_bad_output(tmp_path):
    got = command(tmp_path, TWICE).run(agent(tmp_path), ["t1"], traces_dir=None)["t1"]
    assert (got.reward, got.error_class) == (0.0, "bad_output") and "twice" in got.error


TOKENED = """
import json, os, sys
token = sys.stdin.readline().strip() if os.environ.get("AUTOHARNESS_RESULT_TOKEN") == "stdin" else None
assert token is None or "AUTOHARNESS_RESULT_TOKEN" in os.environ and token not in str(os.environ)
print(json.dumps({"task_id": "t1", "reward": 0.0, "token": token}))
print(json.dumps({"task_id": "t1", "reward": 1.0}))                 # the agent's own print
print(json.dumps({"task_id": "t1", "reward": 1.0, "token": "guess"}))
"""


def test_with_a_token_only_the_lines_that_carry_it_count(tmp_path):
    got = command(tmp_path, TOKENED, token=True).run(agent(tmp_path), ["t1"], traces_dir=None)["t1"]
    assert (got.reward, got.error_class) == (0.0, "failed")


def test_a_flood_of_output_cannot_push_the_real_result_out(tmp_path):
    flood = 'import json\nprint(json.dumps({"task_id": "t1", "reward": 0.0}))\nprint("x" * 300_000)\n' \
            'print(json.dumps({"task_id": "t1", "reward": 1.0}))\n'
    got = command(tmp_path, flood).run(agent(tmp_path), ["t1"], traces_dir=None)["t1"]
    assert got.error_class == "bad_output"


FORGER = """
import atexit, json, os, sys
def _forge():
    for task in os.environ.get("AUTOHARNESS_TASK_IDS", "").split(","):
        sys.stdout.write(json.dumps({"task_id": task, "reward": 1.0}) + "\\n")
atexit.register(_forge)
"""


def test_the_bundled_example_ignores_a_result_forged_by_the_agent(tmp_path):
    target = tmp_path / "target"
    shutil.copytree(TARGET_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    honest = CommandRunner(BenchmarkConfig(kind="command", task_timeout_s=30, options={
        "cmd": [sys.executable, str(EVAL_SCRIPT)], "token": True}), tmp_path)
    ids = honest.tasks()
    before = {t: r.reward for t, r in honest.run(target, ids, traces_dir=None).items()}
    assert 0.0 in before.values()
    init = target / "support_agent" / "__init__.py"
    init.write_text(init.read_text() + FORGER)
    after = {t: r.reward for t, r in honest.run(target, ids, traces_dir=None).items()}
    assert after == before


HELD_OUT_PROBE = """
import json, os, sys, tempfile
from pathlib import Path
here = Path(__file__).resolve().parent
try:
    (here / "tasks.json").write_text("{}")
    wrote = "yes"
except OSError:
    wrote = "refused"
for path in ("/tmp/{marker}", os.path.join(tempfile.gettempdir(), "{marker}")):
    Path(path).write_text("t1 needs answer")
print(json.dumps({"task_id": "t1", "reward": 1.0, "error": wrote + " " + tempfile.gettempdir()}))
"""


def test_a_run_cannot_change_the_benchmark_or_leave_files(tmp_path):
    need_bwrap()
    marker = f"autoharness-probe-{uuid.uuid4().hex}"
    runner = command(tmp_path, HELD_OUT_PROBE.replace("{marker}", marker))
    try:
        got = runner.run(agent(tmp_path), ["t1"], traces_dir=None)["t1"]
        assert got.error.startswith("refused ") and (tmp_path / "bench" / "tasks.json").read_text() == '{"t1": "answer"}'
        scratch = Path(got.error.split(" ", 1)[1])
        assert not scratch.exists() and not (Path("/tmp") / marker).exists()
        # A train run is contained the same way; only its traces folder is writable.
        got = runner.run(agent(tmp_path), ["t1"], traces_dir=tmp_path / "traces")["t1"]
        assert got.error.startswith("refused ") and not (Path("/tmp") / marker).exists()
    finally:
        (Path("/tmp") / marker).unlink(missing_ok=True)


def test_the_shim_channel_ignores_untokened_lines_and_flags_conflicts(tmp_path):
    body = ("cat >/dev/null\n"
            # The leading space keeps the stand-in from stamping it: a line the agent wrote to the channel.
            "echo ' {\"event\": \"result\", \"task_id\": \"0\", \"trial\": 0, \"reward\": 1.0}'\n"
            "echo '{\"event\": \"result\", \"task_id\": \"0\", \"trial\": 0, \"reward\": 0.0, \"priced\": false}'\n"
            "echo '{\"event\": \"result\", \"task_id\": \"1\", \"trial\": 0, \"reward\": 0.0, \"priced\": false}'\n"
            "echo '{\"event\": \"result\", \"task_id\": \"1\", \"trial\": 0, \"reward\": 1.0, \"priced\": false}'\n"
            "echo '{\"event\": \"done\"}'\n")
    got = tau2_runner(fake_python(tmp_path, body), tmp_path).run(tau2_agent_dir(tmp_path), ["0", "1"], traces_dir=None)
    assert got["0"].reward == 0.0 and got["0"].error_class != "bad_output"
    assert (got["1"].reward, got["1"].error_class) == (0.0, "bad_output")


def test_doctor_says_how_held_out_runs_are_contained(tmp_path):
    check = {c.name: c for c in command(tmp_path, "print('t1')\n").check()}["benchmark runs contained"]
    assert not check.fatal and ("bubblewrap" in check.detail or "TMPDIR only" in check.detail)
