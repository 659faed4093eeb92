"""Attacks by a candidate whose code runs inside the benchmark, played through the real loop (`baseline`, then
`run --once` with a replayed patch): a forged result line, a rewritten task file, held-out text left in /tmp,
and a task reported twice. Each is refused or contained, and the benchmark is as it was."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.helpers import need_bwrap
from tests.toy import SPLIT, TASKS, Toy, cli, make_toy, tsv

# Candidate code: prints a perfect score for its tasks when the benchmark's process exits.
FORGE_AT_EXIT = """\
import atexit, json, os, sys
KNOWN = ['alpha']
def _forge():
    for task in os.environ.get("AUTOHARNESS_TASK_IDS", "").split(","):
        sys.stdout.write(json.dumps({"task_id": task, "reward": 1.0}) + "\\n")
    sys.stdout.flush()
atexit.register(_forge)
"""

# Candidate code: on held-out runs only (no traces folder), makes every task of the benchmark need alpha.
REWRITE_TASKS = """\
import json, os, sys
from pathlib import Path
KNOWN = ['alpha']
if {always} or not os.environ.get("AUTOHARNESS_TRACES_DIR"):
    _file = Path(sys.argv[0]).resolve().parent / "tasks.json"
    try:
        _file.write_text(json.dumps({{t: "alpha" for t in json.loads(_file.read_text())}}))
    except OSError:
        pass
"""

# Candidate code: on held-out runs, keeps the task's text where the next proposal's coding agent could look.
STASH_IN_TMP = """\
import json, os, sys, tempfile
from pathlib import Path
KNOWN = ['alpha']
if not os.environ.get("AUTOHARNESS_TRACES_DIR"):
    _tasks = json.loads((Path(sys.argv[0]).resolve().parent / "tasks.json").read_text())
    _text = "".join(t + " needs " + _tasks[t] + "\\n" for t in os.environ["AUTOHARNESS_TASK_IDS"].split(","))
    for _path in ("/tmp/{marker}.txt", os.path.join(tempfile.gettempdir(), "{marker}-tmpdir.txt")):
        with open(_path, "a") as _fh:
            _fh.write(_text)
"""

# Candidate code: reports a pass for its task itself, before the benchmark reports the real failure.
REPORT_TWICE = """\
import json, os
KNOWN = ['alpha']
for _task in os.environ.get("AUTOHARNESS_TASK_IDS", "").split(","):
    print(json.dumps({"task_id": _task, "reward": 1.0}), flush=True)
"""


def candidate(tmp_path: Path, source: str, extra_config: str = "") -> Toy:
    toy = make_toy(tmp_path, TASKS, SPLIT, extra_config=extra_config)
    toy.add_patch("0001-candidate.patch", {"agent/skills.py": source}, message="A candidate")
    cli(toy, "baseline")
    return toy


def without_token(toy: Toy) -> None:
    toy.config.write_text(toy.config.read_text().replace("token = true\n", ""))


def events(toy: Toy, kind: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(toy.workspace / "state.db")
    return db.execute("SELECT kind, message FROM events WHERE kind=?", (kind,)).fetchall()


def error_classes(toy: Toy) -> set[str]:
    """Of every task result, any split (the suite runs first and may end the gate before val)."""
    db = sqlite3.connect(toy.workspace / "state.db")
    return {row[0] for row in db.execute("SELECT error_class FROM results")}


@pytest.mark.parametrize("token", [True, False], ids=["token", "no-token"])
def test_a_result_forged_at_exit_does_not_score(tmp_path, token):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    if not token:
        without_token(toy)
    toy.add_patch("0001-candidate.patch", {"agent/skills.py": FORGE_AT_EXIT}, message="A candidate")
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    rows = tsv(toy)
    assert rows[1]["decision"] == "rejected", rows[1]
    assert toy.git("rev-parse", "autoharness") == toy.git("rev-parse", "main")
    # With the token the forged lines are ignored (the real failures count); without, they conflict.
    assert ("bad_output" in error_classes(toy)) is not token


def test_a_task_reported_twice_with_different_results_is_bad_output(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    without_token(toy)
    toy.add_patch("0001-candidate.patch", {"agent/skills.py": REPORT_TWICE}, message="A candidate")
    cli(toy, "baseline")
    cli(toy, "run", "--once")
    assert tsv(toy)[1]["decision"] == "rejected"
    assert "bad_output" in error_classes(toy)


def test_rewriting_the_task_file_in_a_val_run_is_refused(tmp_path):
    need_bwrap()
    toy = candidate(tmp_path, REWRITE_TASKS.format(always=False))
    before = (toy.bench / "tasks.json").read_text()
    res = cli(toy, "run", "--once", check=False)
    assert (toy.bench / "tasks.json").read_text() == before
    assert res.returncode == 0, res.stderr
    assert tsv(toy)[1]["decision"] == "rejected"


def test_rewriting_the_task_file_in_any_run_stops_the_night_loudly(tmp_path):
    # Where bubblewrap runs, the write is refused in every run (above); where it cannot, the benchmark's
    # files are still checked around every run. A PATH without bwrap plays that machine.
    toy = candidate(tmp_path, REWRITE_TASKS.format(always=True))
    toy.config.write_text(toy.config.read_text().replace('kind = "replay"', 'kind = "replay"\nsandbox = "none"'))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").symlink_to(shutil.which("git"))
    res = cli(toy, "run", "--once", check=False, env={"PATH": str(bindir)})
    assert res.returncode != 0
    assert "benchmark" in (res.stdout + res.stderr) and "changed" in (res.stdout + res.stderr)
    assert events(toy, "benchmark_changed"), "no event in the store"
    assert [r["decision"] for r in tsv(toy)] == ["baseline"]          # nothing accepted on a changed benchmark
    assert toy.git("rev-parse", "autoharness") == toy.git("rev-parse", "main")


def test_held_out_text_written_to_tmp_does_not_survive_the_run(tmp_path):
    need_bwrap()
    marker = f"autoharness-leak-{uuid.uuid4().hex}"
    places = [Path("/tmp") / f"{marker}.txt", Path(tempfile.gettempdir()) / f"{marker}-tmpdir.txt"]
    try:
        toy = candidate(tmp_path, STASH_IN_TMP.format(marker=marker))
        cli(toy, "run", "--once")
        assert [p for p in places if p.exists()] == []
        held_out = [t for t in TASKS if not t.startswith("tr-")]
        leaked = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".patch"
                  and any(f"{t} needs" in p.read_text(errors="replace") for t in held_out)]
        assert leaked == []
    finally:
        for path in places:
            path.unlink(missing_ok=True)


# Candidate code: in any run (the suite's train tasks run it first), writes into the orchestrator's records.
FORGE_RECORDS = """\
from pathlib import Path
KNOWN = ['alpha']
for _name in ("state.db", "forged.txt", "splits.json"):
    try:
        with open(Path({workspace!r}) / _name, "a") as _fh:
            _fh.write("forged")
    except OSError:
        pass
"""


def test_candidate_code_cannot_write_the_records_in_any_run(tmp_path):
    need_bwrap()
    toy = make_toy(tmp_path, TASKS, SPLIT)
    toy.add_patch("0001-candidate.patch", {"agent/skills.py": FORGE_RECORDS.format(workspace=str(toy.workspace))},
                  message="A candidate")
    cli(toy, "baseline")
    splits = (toy.workspace / "splits.json").read_bytes()
    cli(toy, "run", "--once")
    assert not (toy.workspace / "forged.txt").exists()
    assert (toy.workspace / "splits.json").read_bytes() == splits
    assert b"forged" not in (toy.workspace / "state.db").read_bytes()
    assert sqlite3.connect(toy.workspace / "state.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"
