"""The harbor runner against a stand-in `harbor` writing job folders from harbor's own result models
(tests/fixtures/harbor). The real harbor 0.24.0 is in tests/e2e/test_harbor_real.py."""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path

import pytest

import benchmarks.harbor as harbor_mod
from benchmarks.harbor import HarborRunner, glob_escape
from orchestrator.analyze import group_failures
from orchestrator.core.config import BenchmarkConfig
from orchestrator.core.errors import ConfigError
from orchestrator.store import StoredResult
from tests.helpers import FIXTURES_DIR, cli, dump_toml, git, mentions, starter_agent

FIXTURES = FIXTURES_DIR / "harbor"
STANDIN = FIXTURES / "harbor"
CANARY = "HARBOR-CANARY-9931"


def agent_dir(tmp_path: Path) -> Path:
    return starter_agent(tmp_path, "harbor")


def runner(tmp_path: Path, plan: dict, **over) -> HarborRunner:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    options = {"harbor": str(STANDIN), "tasks": list(plan), "model": "openai/gpt-5",
               "env": {"HARBOR_STANDIN_PLAN": str(tmp_path / "plan.json"), "HARBOR_STANDIN_LOG": str(tmp_path / "calls.jsonl"),
                       "HARBOR_STANDIN_CANARY": CANARY}}
    options.update(over.pop("options", {}))
    return HarborRunner(BenchmarkConfig(**{"kind": "harbor", "concurrency": 3, "task_timeout_s": 60,
                                           "options": options, **over}), tmp_path)


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def run_call(tmp_path: Path) -> dict:
    return next(c for c in calls(tmp_path) if c["argv"][:1] == ["run"] and "--help" not in c["argv"])


def test_success_partial_failure_costs_and_flags(tmp_path):
    plan = {"fix-git": "pass", "build-kernel": "fail", "regex-log": "partial", "hello": "unpriced"}
    r = runner(tmp_path, plan)
    seen = []
    r.on_result = lambda task_id, res: seen.append(task_id)
    target = agent_dir(tmp_path)
    got = r.run(target, list(plan), traces_dir=None)
    assert {t: g.reward for t, g in got.items()} == {"fix-git": 1.0, "build-kernel": 0.0, "regex-log": 0.5, "hello": 1.0}
    assert {t: g.cost_usd for t, g in got.items()} == {"fix-git": 0.0125, "build-kernel": 0.02, "regex-log": 0.01,
                                                        "hello": None}
    assert [got[t].error_class for t in plan] == ["", "failed", "failed", ""]
    assert got["fix-git"].duration_s == 95.0
    assert sorted(seen) == sorted(plan)
    call = run_call(tmp_path)
    argv = call["argv"]
    assert argv[argv.index("--agent") + 1] == "agent.harbor_agent:Agent"
    assert argv[argv.index("--n-concurrent") + 1] == "3" and argv[argv.index("--n-attempts") + 1] == "1"
    assert argv[argv.index("--env") + 1] == "docker" and argv[argv.index("--model") + 1] == "openai/gpt-5"
    assert argv[argv.index("--dataset") + 1] == "terminal-bench@2.0"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--include-task-name"] == list(plan)
    assert call["pythonpath"].split(os.pathsep)[0] == str(target)


def test_timeouts_are_failures_not_dropped(tmp_path, monkeypatch):
    got = runner(tmp_path, {"slow": "agent_timeout", "ok": "pass"}).run(agent_dir(tmp_path), ["slow", "ok"], traces_dir=None)
    assert got["slow"].reward == 0.0 and got["slow"].error_class == "timeout"
    assert "AgentTimeoutError" in got["slow"].error and got["ok"].reward == 1.0
    # A harbor run that never ends is killed; its tasks are timeouts too.
    monkeypatch.setattr(harbor_mod, "STARTUP_S", 1.0)
    got = runner(tmp_path / "h", {"stuck": "hang"}, task_timeout_s=1).run(agent_dir(tmp_path), ["stuck"], traces_dir=None)
    assert got["stuck"].reward == 0.0 and got["stuck"].error_class == "timeout"


def test_infra_errors_and_agent_faults(tmp_path):
    plan = {"env": "env_error", "noreward": "no_reward", "crashy": "agent_crash"}
    got = runner(tmp_path, plan).run(agent_dir(tmp_path), list(plan), traces_dir=None)
    assert got["env"].reward is None and got["env"].error_class == "infra"
    assert got["env"].error.startswith("EnvironmentStartTimeoutError: Environment start timed out")
    assert got["noreward"].reward is None and "RewardFileNotFoundError" in got["noreward"].error
    assert got["crashy"].reward == 0.0 and got["crashy"].error_class == "agent_error"


def test_crashed_run_keeps_finished_trials(tmp_path):
    got = runner(tmp_path, {"first": "pass", "second": "crash"}).run(agent_dir(tmp_path), ["first", "second"],
                                                                    traces_dir=None)
    assert got["first"].reward == 1.0
    assert got["second"].reward is None and got["second"].error_class == "crash"
    assert "exited 1" in got["second"].error and "harbor crashed" in got["second"].error


def test_malformed_and_missing_output(tmp_path):
    plan = {"garbled": "malformed", "absent": "missing", "fine": "pass"}
    got = runner(tmp_path, plan).run(agent_dir(tmp_path), list(plan), traces_dir=None)
    assert got["garbled"].reward is None and got["garbled"].error_class == "bad_output"
    assert "malformed" in got["garbled"].error
    assert got["absent"].reward is None and got["absent"].error_class == "bad_output"
    assert got["fine"].reward == 1.0


def test_trials_are_attempts_and_averaged(tmp_path):
    got = runner(tmp_path, {"flaky": ["fail", "pass"]}, trials=2).run(agent_dir(tmp_path), ["flaky"], traces_dir=None)
    assert got["flaky"].reward == 0.5 and got["flaky"].cost_usd == pytest.approx(0.0325)
    argv = run_call(tmp_path)["argv"]
    assert argv[argv.index("--n-attempts") + 1] == "2"


def test_no_job_folder_or_trace_remains_for_val_and_test(tmp_path, monkeypatch):
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    target = agent_dir(tmp_path)
    before = {p for p in target.rglob("*")}
    r = runner(tmp_path, {"a": "pass", "b": "agent_timeout"})
    r.run(target, ["a", "b"], traces_dir=None)
    assert list(tmp_root.iterdir()) == []
    assert {p for p in target.rglob("*")} == before
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and CANARY in p.read_text(errors="replace")]
    assert Path(run_call(tmp_path)["cwd"]).is_relative_to(tmp_root)     # harbor ran inside the scratch folder
    # Train: the trial folders become traces (and the canary shows the search above can find them).
    traces = tmp_path / "traces"
    r.run(target, ["a", "b"], traces_dir=traces)
    assert list(tmp_root.iterdir()) == []
    names = sorted(p.relative_to(traces).parts[0] for p in traces.glob("*/*/result.json"))
    assert names == ["a", "b"]
    assert len([p for p in traces.rglob("trajectory.json") if CANARY in p.read_text()]) == 2


def test_flags_are_checked_against_the_installed_help(tmp_path):
    r = runner(tmp_path, {"a": "pass"}, options={"extra_args": ["--bogus-flag", "1"]})
    with pytest.raises(ConfigError, match="harbor 0.24.0 does not understand --bogus-flag"):
        r.run(agent_dir(tmp_path), ["a"], traces_dir=None)
    ok = runner(tmp_path, {"a": "pass"}, options={"extra_args": ["--timeout-multiplier", "2"],
                                                  "agent_kwargs": {"temperature": "0.2"}})
    assert ok.run(agent_dir(tmp_path), ["a"], traces_dir=None)["a"].reward == 1.0


def test_task_names_are_matched_literally(tmp_path):
    assert glob_escape("weird[1]*") == "weird[[]1][*]"
    got = runner(tmp_path, {"weird[1]": "pass", "weird1": "fail"}).run(agent_dir(tmp_path), ["weird[1]"], traces_dir=None)
    assert got == {"weird[1]": got["weird[1]"]} and got["weird[1]"].reward == 1.0


def test_doctor_reports_what_a_real_run_needs(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("DAYTONA_API_KEY", raising=False)
    checks = {c.name: c for c in runner(tmp_path, {"a": "pass"}).check()}
    assert checks["harbor"].ok and checks["harbor version"].ok and checks["harbor flags"].ok
    assert checks["harbor tasks"].ok and not checks["harbor model"].ok
    assert "docker engine" in checks and "docker compose" in checks
    cloud = {c.name: c for c in runner(tmp_path, {"a": "pass"}, options={"environment": "daytona"}).check()}
    assert not cloud["daytona credentials"].ok and "DAYTONA_API_KEY is not set" in cloud["daytona credentials"].detail
    assert "docker engine" not in cloud   # the containers run in the cloud, not here
    # No harbor: that FAILs, and every check that does not need it is still made (today's first FAIL hid them).
    missing = {c.name: c for c in HarborRunner(BenchmarkConfig(kind="harbor", options={
        "harbor": "no/such/harbor", "tasks": ["a"], "agent": "agent.harbor_agent", "model": "openai/gpt-5",
        "environment": "daytona"}), tmp_path).check()}
    assert [n for n, c in missing.items() if not c.ok] == ["harbor", "harbor agent", "daytona credentials", "harbor model"]
    assert "not found" in missing["harbor"].detail and missing["harbor tasks"].detail == "1 task"
    assert "is not `package.module:Class`" in missing["harbor agent"].detail


CLOUD = ["DAYTONA_API_KEY", "DAYTONA_JWT_TOKEN", "DAYTONA_ORGANIZATION_ID", "E2B_API_KEY", "MODAL_TOKEN_ID",
         "MODAL_TOKEN_SECRET", "RUNLOOP_API_KEY"]


@pytest.mark.parametrize("environment, credentials", [
    ("daytona", {"DAYTONA_API_KEY": "dtn-test"}),
    ("modal", {"MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"}),
    ("e2b", {"E2B_API_KEY": "e2b-test"}),
])
def test_a_cloud_environment_reaches_harbor_run_as_harbor_expects(tmp_path, monkeypatch, environment, credentials):
    """The way out of one machine for Terminal-Bench: harbor's --env with as many trials at once as
    benchmark.concurrency, and the provider's credentials in harbor's environment, from ours or from options.env."""
    for name in CLOUD:
        monkeypatch.delenv(name, raising=False)
    first, *rest = credentials
    monkeypatch.setenv(first, credentials[first])   # exported where autoharness runs
    options = {"environment": environment, "env": {
        **{k: credentials[k] for k in rest},          # or set in the config
        "HARBOR_STANDIN_PLAN": str(tmp_path / "plan.json"), "HARBOR_STANDIN_LOG": str(tmp_path / "calls.jsonl"),
        "HARBOR_STANDIN_ECHO": ",".join(CLOUD)}}
    r = runner(tmp_path, {"a": "pass", "b": "fail"}, concurrency=32, options=options)
    assert {c.name: c.ok for c in r.check()}[f"{environment} credentials"]
    got = r.run(agent_dir(tmp_path), ["a", "b"], traces_dir=None)
    assert {t: g.reward for t, g in got.items()} == {"a": 1.0, "b": 0.0}
    call = run_call(tmp_path)
    argv = call["argv"]
    assert argv[argv.index("--env") + 1] == environment and argv[argv.index("--n-concurrent") + 1] == "32"
    assert call["env"] == credentials   # every credential it needs, and no other provider's


def test_doctor_names_the_credentials_a_cloud_environment_lacks(tmp_path, monkeypatch):
    """What harbor's own start-up check accepts (harbor 0.24.0's environments' preflight): an API key or another
    pair of variables for daytona, a token pair or ~/.modal.toml for modal."""
    for name in CLOUD:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))

    def check(environment: str, **env: str):
        r = runner(tmp_path, {"a": "pass"}, options={"environment": environment, "env": env})
        return next(c for c in r.check() if c.name == f"{environment} credentials")

    lacking = check("daytona")
    assert not lacking.ok and lacking.fatal
    assert lacking.detail == ("DAYTONA_API_KEY is not set, and DAYTONA_JWT_TOKEN and DAYTONA_ORGANIZATION_ID are not "
                              "set: harbor --env daytona needs one of these (export them, or set them in "
                              "benchmark.options.env)")
    assert not check("daytona", DAYTONA_JWT_TOKEN="jwt").ok    # half of a pair is not a way in
    assert check("daytona", DAYTONA_JWT_TOKEN="jwt", DAYTONA_ORGANIZATION_ID="org").ok
    assert check("e2b").detail.startswith("E2B_API_KEY is not set: harbor --env e2b needs it")
    assert "there is no ~/.modal.toml" in check("modal").detail
    (home / ".modal.toml").write_text("[default]\n")   # what `modal token new` writes
    assert check("modal").detail == "~/.modal.toml is there"
    assert check("runloop", RUNLOOP_API_KEY="rl").detail == "RUNLOOP_API_KEY is set"
    assert not [c for c in runner(tmp_path, {"a": "pass"}, options={"environment": "gke"}).check()
                if c.name.endswith("credentials")]   # a type we know nothing of: no line rather than a wrong one


def test_agent_files_name_the_module_harbor_imports(tmp_path):
    def files(agent: str) -> list[str]:
        return HarborRunner(BenchmarkConfig(kind="harbor", options={"agent": agent}), tmp_path).agent_files()
    assert files("agent.harbor_agent:Agent") == ["agent/harbor_agent.py"]
    assert files("terminus-2") == []     # one of harbor's own agents: nothing of the target


def test_loop_end_to_end_with_the_stand_in(tmp_path):
    """init --benchmark harbor, baseline, one replayed proposal through the gate; no val/test job folder left."""
    target, patches, scratch_tmp = tmp_path / "target", tmp_path / "patches", tmp_path / "tmp"
    for d in (target, patches, scratch_tmp):
        d.mkdir()
    git(target, "init", "-q", "-b", "main")
    git(target, "commit", "-q", "--allow-empty", "-m", "initial")
    env = {"TMPDIR": str(scratch_tmp)}
    cli(tmp_path, "init", "--target", "target", "--benchmark", "harbor", "--backend", "replay", env=env)
    git(target, "add", "-A")
    git(target, "commit", "-qm", "starter")
    marker = "Verify every result before you set task_complete."
    gated = {"marker": marker, "with": "pass", "without": "fail"}
    plan = {"tr-easy": "pass", "tr-hard": gated, "va-one": gated, "va-two": gated, "te-one": gated}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    data = tomllib.loads((tmp_path / "autoharness.toml").read_text())
    del data["benchmark"]["options"]["path"]
    data["benchmark"]["options"].update(harbor=str(STANDIN), tasks=list(plan), env={
        "HARBOR_STANDIN_PLAN": str(tmp_path / "plan.json"), "HARBOR_STANDIN_CANARY": CANARY})
    data["benchmark"]["split"] = {"train": ["tr-easy", "tr-hard"], "val": ["va-one", "va-two"], "test": ["te-one"]}
    data["loop"] = {"max_iterations": 1}
    (tmp_path / "autoharness.toml").write_text(dump_toml(data) + "\n")
    git(target, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), "main")
    prompt = tmp_path / "wt" / "agent" / "harbor_prompt.txt"
    prompt.write_text(prompt.read_text() + f"\n{marker}\n")
    (patches / "0001-verify.patch").write_text(git(tmp_path / "wt", "diff"))
    git(target, "worktree", "remove", "--force", str(tmp_path / "wt"))

    cli(tmp_path, "baseline", env=env)
    assert "accepted" in cli(tmp_path, "run", "--once", env=env).stdout
    rows = (tmp_path / "workspace" / "results.tsv").read_text().splitlines()[1:]
    assert [(r.split("\t")[1], r.split("\t")[6]) for r in rows] == [("0.0000", "baseline"), ("1.0000", "accepted")]
    assert mentions(tmp_path / "workspace", f"{CANARY}-tr-hard")
    for task in ("va-one", "va-two", "te-one"):
        assert mentions(tmp_path, f"{CANARY}-{task}") == [], task
    assert [p for p in scratch_tmp.rglob("*") if p.is_file() or p.name.startswith("autoharness-harbor-")] == []


def test_a_failed_trial_names_the_verifiers_failing_tests(tmp_path):
    """The error text of a verifier failure: the failing tests (harbor's verifier/ctrf.json, else pytest's summary in
    test-stdout.txt), so the digest tells a failed test from a timeout or a crash."""
    plan = {"ctrf": "fail", "stdout": "fail:stdout", "bare": "fail:none", "half": "partial", "ok": "pass"}
    got = runner(tmp_path, plan).run(agent_dir(tmp_path), list(plan), traces_dir=None)
    first = "verifier: 2 of 3 tests failed: test_error_count, test_summary_file_written"
    assert got["ctrf"].error.splitlines() == [first,
                                              "test_error_count: AssertionError: expected 4 ERROR lines in the summary",
                                              "test_summary_file_written: AssertionError: summary.txt was not written"]
    assert got["half"].error.splitlines()[0] == first and got["half"].reward == 0.5
    assert got["stdout"].error.splitlines()[0] == "verifier: 2 tests failed: test_error_count, test_summary_file_written"
    assert got["stdout"].error.splitlines()[1] == "test_error_count: AssertionError: expected 4 E..."
    assert got["bare"].error == "verifier gave reward 0 and recorded no failing test (no ctrf.json or pytest summary)"
    assert got["ok"].error == ""
    stored = {t: StoredResult(t, "train", g.reward, g.error_class, g.error, g.duration_s, g.cost_usd)
              for t, g in got.items()}
    plan2 = {"slow": "agent_timeout"}
    slow = runner(tmp_path / "b", plan2).run(agent_dir(tmp_path / "b"), list(plan2), traces_dir=None)["slow"]
    stored["slow"] = StoredResult("slow", "train", slow.reward, slow.error_class, slow.error, 0.0, None)
    groups = [g.signature for g in group_failures(stored, 1.0)]
    assert groups[0] == "[failed] verifier: N of N tests failed: test_error_count, test_summary_file_written"
    assert len(groups) == 4 and any(g.startswith("[timeout] AgentTimeoutError") for g in groups)


def test_a_symlinked_or_garbled_report_is_not_read(tmp_path):
    verifier = tmp_path / "verifier"
    verifier.mkdir()
    (verifier / "ctrf.json").write_text("{not json")
    (tmp_path / "secret").write_text("FAILED tests/x.py::test_secret - the answer is 42\n")
    (verifier / "test-stdout.txt").symlink_to(tmp_path / "secret")
    assert harbor_mod.verifier_failures(verifier, 0.0).startswith("verifier gave reward 0 and recorded no failing test")
