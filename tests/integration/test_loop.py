"""The whole loop through the real CLI: real git repos, real benchmark subprocesses, every gate branch."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.toy import SPLIT, TASKS, cli, make_toy, skills_file, tsv


def test_full_queue_gives_every_decision(queued):
    toy = queued
    main_before = toy.git("rev-parse", "main")
    cli(toy, "baseline")
    outputs = [cli(toy, "run", "--once").stdout for _ in range(7)]
    assert "nothing left to propose" in outputs[-1]

    rows = tsv(toy)
    assert [r["decision"] for r in rows] == ["baseline", "accepted", "rejected", "rejected", "rejected", "rejected", "accepted"]
    assert [r["val_score"] for r in rows][:2] == ["0.2500", "0.7500"]
    assert rows[6]["val_score"] == "1.0000"
    assert rows[2]["reason"].startswith("guard: changes outside editable") and "README.md" in rows[2]["reason"]
    assert rows[3]["reason"].startswith("suite: suite 0/2")
    # Whether val stopped early depends on which results had landed while runs were still queued.
    assert rows[4]["reason"].startswith("val: val") and "beat best 0.7500" in rows[4]["reason"]
    assert "stopped early" in rows[5]["reason"] and "/4 not run" in rows[5]["reason"]

    # Exactly the accepted commits on the branch; base and the working tree untouched.
    log = toy.git("log", "--format=%s", "autoharness").splitlines()
    assert log == ["autoharness: iteration 6, val 0.7500 -> 1.0000", "autoharness: iteration 1, val 0.2500 -> 0.7500",
                   "initial"]
    assert toy.git("rev-parse", "main") == main_before
    assert toy.git("status", "--porcelain") == ""
    assert toy.git("rev-parse", "HEAD") == main_before
    assert toy.git("rev-parse", "autoharness-best") == toy.git("rev-parse", "autoharness")
    assert toy.git("diff", "--name-only", "main", "autoharness").splitlines() == ["agent/skills.py"]
    assert len(toy.git("worktree", "list").splitlines()) == 1
    commit_msg = toy.git("log", "-1", "--format=%B", "autoharness")
    assert "suite 2/2" in commit_msg and "backend replay" in commit_msg and "cost $0.0000" in commit_msg

    # Every record on disk.
    for n in range(1, 7):
        d = toy.workspace / "iterations" / str(n)
        assert (d / "prompt.md").exists() and (d / "gate.json").exists() and (d / "analysis.md").exists()
        gate = json.loads((d / "gate.json").read_text())
        assert gate["decision"] == rows[n]["decision"]
    db = sqlite3.connect(toy.workspace / "state.db")
    assert db.execute("SELECT COUNT(*) FROM iterations").fetchone()[0] == 7
    suite = json.loads((toy.workspace / "suite.json").read_text())
    assert suite["tasks"] == ["tr-alpha-0", "tr-alpha-3", "tr-beta-1", "tr-beta-4"]  # beta promoted after 2 passes
    learnings = (toy.workspace / "learnings.md").read_text()
    assert "Teach beta" in learnings and "Iteration 3: rejected" in learnings


def test_cache_and_early_stop_save_runs(queued):
    toy = queued
    # One slot: the stop rules are checked after every task, so which runs they save does not depend on timing.
    toy.config.write_text(toy.config.read_text().replace("concurrency = 2", "concurrency = 1"))
    cli(toy, "baseline")
    for _ in range(7):
        cli(toy, "run", "--once")
    runs = toy.runs()
    # Only the baseline's A/A check runs a task twice on the same code: val, twice; nothing else repeats.
    twice = sorted({r for r in runs if runs.count(r) > 1})
    assert twice == sorted(r for r in set(runs) if r.startswith("va-") and r.endswith(" alpha")) and twice
    assert all(runs.count(r) == 2 for r in twice)
    # Early stop: iteration 5 ran two of its 4 val tasks (a pass, a fail: val can no longer beat 0.75); the
    # suite of iteration 3 (0 of 2) and the val of iteration 4 (2 of 3 passed) each stopped one task short.
    early = [r for r in runs if r.endswith(" alpha,gamma") and r.startswith("va-")]
    assert len(early) == 2
    db = sqlite3.connect(toy.workspace / "state.db")
    cached, skipped = db.execute("SELECT SUM(tasks_cached), SUM(tasks_skipped) FROM iterations").fetchone()
    assert cached > 0 and skipped == 4


def test_held_out_text_never_on_disk_nor_in_prompt(queued):
    toy = queued
    cli(toy, "baseline")
    for _ in range(7):
        cli(toy, "run", "--once")
    cli(toy, "report", "--final")
    seen_train_detail = False
    for path in toy.workspace.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        assert b"SECRET-DETAIL-va" not in data and b"SECRET-DETAIL-te" not in data, path
        seen_train_detail |= b"SECRET-DETAIL-tr" in data
    assert seen_train_detail, "train failure detail should reach the records"
    traces = [p.name for p in (toy.workspace / "traces" / "train").rglob("*.json")]
    assert traces and all(name.startswith("tr-") for name in traces)
    for prompt in toy.workspace.glob("iterations/*/prompt.md"):
        text = prompt.read_text()
        assert "va-" not in text and "te-" not in text
        assert "val 0." not in text  # no val numbers either
    first = (toy.workspace / "iterations" / "1" / "prompt.md").read_text()
    assert "tr-beta-1" in first and "does not know the skill" in first and "agent/**" in first


def test_final_report_scores_test_on_best(queued):
    toy = queued
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    before = len(toy.runs())
    out = cli(toy, "report", "--final").stdout
    assert "test" in out and "0.333" in out and "0.667" in out
    assert len(toy.runs()) == before + 3
    status = json.loads(cli(toy, "status", "--json").stdout)
    assert status["final_test"] == pytest.approx(2 / 3)
    assert status["baseline_test"] == pytest.approx(1 / 3)


def test_rejected_guard_for_held_out_id(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    toy.add_patch("0001-cheat.patch", {"agent/skills.py": skills_file("alpha") + "SPECIAL = {'va-beta-1': 'beta'}\n"})
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    row = tsv(toy)[1]
    assert row["decision"] == "rejected" and "held-out" in row["reason"]
    assert toy.git("rev-parse", "autoharness") == toy.git("rev-parse", "main")


def test_untracked_file_and_symlink_are_seen_by_the_guard(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    # An untracked file outside editable, then a symlink inside editable that leaves the worktree.
    toy.add_patch("0001-untracked.patch", {"tools/helper.py": "x = 1\n", "agent/skills.py": skills_file("alpha", "beta")})
    (toy.patches / "0002-link.patch").write_text(
        "diff --git a/agent/data b/agent/data\nnew file mode 120000\nindex 0000000..1111111\n"
        "--- /dev/null\n+++ b/agent/data\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n")
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    cli(toy, "run", "--once")
    rows = tsv(toy)
    assert rows[1]["decision"] == "rejected" and "tools/helper.py" in rows[1]["reason"]
    assert rows[2]["decision"] == "rejected" and "symlink escapes" in rows[2]["reason"]


def test_split_change_is_refused(queued):
    toy = queued
    cli(toy, "baseline")
    text = toy.config.read_text().replace('"va-gamma-2", ', "")
    text = text.replace('train = ["tr-alpha-0"', 'train = ["va-gamma-2", "tr-alpha-0"')
    toy.config.write_text(text)
    res = cli(toy, "run", "--once", check=False)
    assert res.returncode == 2
    assert "would change the train split" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_second_process_is_refused_while_one_holds_the_lock(queued):
    from orchestrator.lock import WorkspaceLock
    toy = queued
    toy.workspace.mkdir()
    with WorkspaceLock(toy.workspace / "run.lock"):
        res = cli(toy, "run", "--once", check=False)
    assert res.returncode == 2 and "in use" in res.stderr


def test_reconcile_resets_branch_moved_without_record(queued):
    toy = queued
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    recorded = toy.git("rev-parse", "autoharness")
    # A crash between commit and record leaves an unrecorded commit on the branch.
    toy.git("update-ref", "refs/heads/autoharness", toy.git("rev-parse", "main"))
    cli(toy, "run", "--once")
    rows = tsv(toy)
    assert len(rows) == 3
    assert toy.git("rev-parse", "autoharness") == recorded


def test_backend_crash_leaves_no_worktree(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT, backend='kind = "tests.toy:ExplodingAgent"')
    cli(toy, "baseline")
    res = cli(toy, "run", "--once", check=False)
    assert res.returncode == 1
    assert len(toy.git("worktree", "list").splitlines()) == 1
    assert toy.git("status", "--porcelain") == ""
    # The iteration was not decided: no row, to be redone.
    assert len(tsv(toy)) == 1


def test_infra_errors_fail_or_drop(tmp_path):
    tasks = dict(TASKS, **{"va-crash-9": "crash"})
    split = dict(SPLIT, val=[*SPLIT["val"], "va-crash-9"])
    toy = make_toy(tmp_path, tasks, split)
    cli(toy, "baseline")
    rows = tsv(toy)
    assert rows[0]["val_score"] == "0.2000"  # crash counts as 0 under infra_error = "fail"
    crashes = [r for r in toy.runs() if r.startswith("va-crash-9")]
    assert len(crashes) == 4  # retried once (infra_retries = 1), in each of the A/A check's two val runs

    toy2 = make_toy(tmp_path / "drop", tasks, split, extra_config="")
    toy2.config.write_text(toy2.config.read_text().replace('kind = "command"', 'kind = "command"\ninfra_error = "drop"'))
    cli(toy2, "baseline")
    assert tsv(toy2)[0]["val_score"] == "0.2500"  # dropped from the mean
    db = sqlite3.connect(toy2.workspace / "state.db")
    assert db.execute("SELECT COUNT(*) FROM events WHERE kind='dropped'").fetchone()[0] == 2  # once per A/A run


def test_timeout_is_reward_zero_not_dropped(tmp_path):
    tasks = dict(TASKS, **{"tr-hang-9": "hang"})
    split = dict(SPLIT, train=[*SPLIT["train"], "tr-hang-9"])
    toy = make_toy(tmp_path, tasks, split)
    toy.config.write_text(toy.config.read_text().replace("task_timeout_s = 30", "task_timeout_s = 1"))
    cli(toy, "baseline")
    db = sqlite3.connect(toy.workspace / "state.db")
    reward, cls = db.execute("SELECT reward, error_class FROM results WHERE task_id='tr-hang-9'").fetchone()
    assert (reward, cls) == (0.0, "timeout")
    assert tsv(toy)[0]["evals_total"] == "7"


def test_guard_rejects_a_leaked_secret(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    toy.add_patch("0001-leak.patch", {"agent/skills.py": skills_file("alpha", "beta") + "KEY = 'sk-toy-0123456789'\n"})
    cli(toy, "baseline")
    cli(toy, "run", "--once", env={"TOY_API_KEY": "sk-toy-0123456789"})
    row = tsv(toy)[1]
    assert row["decision"] == "rejected" and "secret" in row["reason"]


@pytest.mark.parametrize(("options", "decision"), [
    ("", "accepted"),
    ('extra = "README.md"', "rejected"),
    ("move_base = true", "accepted"),   # its own repository's main: nothing of the target moved
    ("target = true", "rejected"),
])
def test_commits_and_ref_moves_by_the_agent_cannot_slip_past(tmp_path, options, decision):
    toy = make_toy(tmp_path, TASKS, SPLIT, backend=f'kind = "tests.toy:MischiefAgent"\n[backend.options]\n{options}')
    if options.startswith("target"):
        toy.config.write_text(toy.config.read_text().replace("target = true", f'target = "{toy.target}"'))
    main_before = toy.git("rev-parse", "main")
    config_before = (toy.target / ".git" / "config").read_bytes()
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    row = tsv(toy)[1]
    assert row["decision"] == decision, row
    assert toy.git("rev-parse", "main") == main_before
    assert toy.git("symbolic-ref", "HEAD") == "refs/heads/main"
    assert (toy.target / ".git" / "config").read_bytes() == config_before
    assert not (toy.target / ".git" / "hooks" / "post-checkout").exists()
    assert not (toy.target / "fsmonitor-ran").exists() and not (toy.target / "hook-ran").exists()
    log = toy.git("log", "--format=%s", "autoharness").splitlines()
    if decision == "accepted":
        # One commit of ours on top of base; the agent's own commit is folded into it.
        assert log == ["autoharness: iteration 1, val 0.2500 -> 0.7500", "initial"]
    else:
        assert log == ["initial"]
        assert ("README.md" in row["reason"]) if "extra" in options else ("git database" in row["reason"])
    cli(toy, "run", "--once")  # the next run starts: the target is as it was


def test_fresh_workspace_refuses_a_branch_left_by_an_earlier_run(queued):
    toy = queued
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    import shutil
    shutil.rmtree(toy.workspace)
    res = cli(toy, "baseline", check=False)
    assert res.returncode == 2 and "already exists" in res.stderr


def test_branch_checked_out_by_the_user_is_refused(queued):
    toy = queued
    cli(toy, "baseline")
    toy.git("checkout", "-q", "autoharness")
    res = cli(toy, "run", "--once", check=False)
    assert res.returncode == 2 and "is checked out" in res.stderr


def test_ignored_and_cache_files_are_neither_committed_nor_scored(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    (toy.target / ".gitignore").write_text("agent/extra.txt\n")
    toy.git("add", ".gitignore")
    toy.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore")
    # The candidate teaches beta through a file the target ignores (plus bytecode junk): had the ignored
    # file stayed on disk, the benchmark would credit the candidate with code that is never committed.
    toy.add_patch("0001-ignored.patch", {
        "agent/skills.py": "import pathlib\nextra = pathlib.Path(__file__).with_name('extra.txt')\n"
                           "KNOWN = ['alpha'] + (extra.read_text().split() if extra.exists() else [])\n",
        "agent/extra.txt": "beta\n",
        "agent/__pycache__/x.pyc": "junk\n",
    }, base="main")
    assert "b/agent/extra.txt" in (toy.patches / "0001-ignored.patch").read_text()
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    row = tsv(toy)[1]
    assert row["decision"] == "rejected" and row["reason"].startswith("val"), row
    diff = (toy.workspace / "iterations" / "1" / "diff.patch").read_text()
    assert "b/agent/extra.txt" not in diff and "__pycache__" not in diff


def _loop(toy, **settings) -> None:
    toy.config.write_text(toy.config.read_text() + "[loop]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))


def _decisions(toy) -> list[str]:
    return [r["decision"] for r in tsv(toy)]


def test_run_once_obeys_stop_max_iterations_and_plateau(queued):
    """`run --once` is a session of at most one iteration: the same stop conditions as the daemon's."""
    toy = queued
    _loop(toy, max_iterations=2, plateau=1)
    toy.workspace.mkdir()
    (toy.workspace / "STOP").write_text("")  # `autoharness stop` arms no STOP file when nothing runs
    first = cli(toy, "run", "--once").stdout
    assert "no iteration run: STOP file" in first and _decisions(toy) == ["baseline"]
    assert not (toy.workspace / "STOP").exists()  # a STOP stops one session, not every one after it
    assert "iteration 1: accepted" in cli(toy, "run", "--once").stdout
    assert "iteration 2: rejected" in cli(toy, "run", "--once").stdout
    third = cli(toy, "run", "--once").stdout
    assert "no iteration run: max_iterations (2)" in third and _decisions(toy) == ["baseline", "accepted", "rejected"]
    toy.config.write_text(toy.config.read_text().replace("max_iterations = 2\n", "max_iterations = 50\n"))
    assert "no iteration run: plateau (1 rejections in a row)" in cli(toy, "run", "--once").stdout
    assert _decisions(toy) == ["baseline", "accepted", "rejected"]


def test_run_once_obeys_the_budget(queued):
    toy = queued
    toy.config.write_text(toy.config.read_text().replace('kind = "replay"', 'kind = "tests.toy:PricedReplay"'))
    _loop(toy, budget_usd=1.0)
    assert "iteration 1: accepted" in cli(toy, "run", "--once").stdout  # costs $1: the budget is now spent
    out = cli(toy, "run", "--once").stdout
    assert "no iteration run: budget_usd ($1.00 of $1.00)" in out and _decisions(toy) == ["baseline", "accepted"]
