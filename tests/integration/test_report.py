"""The HTML report, built from the records of a real run of the loop on the toy target."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess

import pytest

from orchestrator.core.config import GateConfig, TargetConfig
from orchestrator.core.errors import ConfigError
from orchestrator.heartbeat import Heartbeat
from orchestrator.report import paired_gain, write_report
from orchestrator.stats import Noise
from orchestrator.store import IterationRecord, Store
from tests.toy import SPLIT, TASKS, Toy, cli, make_toy, skills_file

MARKUP = '# <script>alert("x")</script> & co\n'


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A finished run: accepted, guard-rejected, error (a patch that does not apply), val-rejected, accepted;
    then the final test score."""
    root = tmp_path_factory.mktemp("report")
    toy = make_toy(root, TASKS, SPLIT)
    toy.add_patch("0001-beta.patch", {"agent/skills.py": skills_file("alpha", "beta") + MARKUP}, message="Teach beta")
    toy.git("branch", "after1", "main")
    wt = root / "after1"
    toy.git("worktree", "add", str(wt), "after1")
    (wt / "agent" / "skills.py").write_text(skills_file("alpha", "beta") + MARKUP)
    toy.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "after 1", cwd=wt)
    toy.git("worktree", "remove", str(wt))
    toy.add_patch("0002-guard.patch", {"README.md": "cheat\n"}, base="after1", message="Touch the README")
    (toy.patches / "0003-broken.patch").write_text(
        "Does not apply\n\ndiff --git a/agent/nope.py b/agent/nope.py\n--- a/agent/nope.py\n+++ b/agent/nope.py\n"
        "@@ -1 +1 @@\n-old\n+new\n")
    toy.add_patch("0004-val.patch", {"agent/skills.py": skills_file("alpha", "beta", "delta")}, base="after1",
                  message="Teach delta (not in val)")
    toy.add_patch("0005-gamma.patch", {"agent/skills.py": skills_file("alpha", "beta", "gamma")}, base="after1",
                  message="Teach gamma")
    toy.git("branch", "-D", "after1")
    cli(toy, "baseline")
    for _ in range(6):
        cli(toy, "run", "--once")
    cli(toy, "report", "--final")
    return toy


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_holds_every_iteration_and_the_headline(night):
    db = night.workspace / "state.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    path = write_report(night.workspace, title="toy agent", budget_usd=5.0)
    assert path == night.workspace / "report.html"
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read-only
    page = path.read_text()
    decisions = re.findall(r'<article class="iteration (\w+)">', page)
    assert decisions == ["baseline", "accepted", "rejected", "error", "rejected", "accepted"]
    assert "0.2500 &rarr; <b>1.0000</b>" in page and "(+0.7500)" in page          # val baseline -> best
    assert "0.3333 &rarr; 1.0000" in page                                          # test baseline -> final
    assert "5 proposals" in page and "2 accepted" in page and "2 rejected" in page and "1 error</span>" in page
    assert "$0.00</b> of $5.00" in page and "unknown cost" not in page
    assert "outside editable" in page and "README.md" in page                        # guard reason
    assert "git apply 0003-broken.patch failed" in page                              # error reason
    assert "beat best 0.7500" in page                                                # val reason
    assert "Teach gamma" in page and "nothing_left" in page.split("<h2>Recent events")[1]
    assert "<script" not in page and "src=\"http" not in page and "href=\"http" not in page  # self-contained


def test_plot_is_an_embedded_png(night):
    page = write_report(night.workspace).read_text()
    (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    width, height = png_size(base64.b64decode(b64))
    assert width > 400 and height > 200


def test_accepted_diffs_are_escaped_and_collapsible(night):
    page = write_report(night.workspace).read_text()
    diffs = re.findall(r"<details><summary>diff \((\d+) files?, \d+ lines\)</summary><pre class=\"diff\">(.*?)</pre>",
                       page, re.S)
    assert [files for files, _ in diffs] == ["1", "1"]  # only the two accepted changes
    first = diffs[0][1]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in first
    assert '<span class="add">+KNOWN = [&#x27;alpha&#x27;, &#x27;beta&#x27;]</span>' in first
    assert "cheat" not in "".join(d for _, d in diffs)  # rejected diffs are not shown


def test_no_held_out_error_text(night):
    page = write_report(night.workspace).read_text()
    assert "SECRET-DETAIL-va" not in page and "SECRET-DETAIL-te" not in page
    # The records do hold the train detail (a sanity check that the assertion above could fail).
    db = sqlite3.connect(night.workspace / "state.db")
    assert db.execute("SELECT COUNT(*) FROM results WHERE error LIKE '%SECRET-DETAIL-tr%'").fetchone()[0] > 0


def test_unknown_cost_is_flagged_not_zero(night, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    src = sqlite3.connect(night.workspace / "state.db")
    dst = sqlite3.connect(ws / "state.db")
    src.backup(dst)
    src.close()
    dst.execute("UPDATE iterations SET cost_usd=NULL WHERE n IN (2, 3)")
    dst.execute("UPDATE iterations SET cost_usd=0.25 WHERE n=1")
    dst.commit()
    dst.close()
    monkeypatch.setenv("SOME_API_KEY", "toy agent-secret-value")
    page = write_report(ws, title="toy agent-secret-value").read_text()
    assert "+ 2 proposals of unknown cost (not counted)" in page
    assert "$0.2500 + 2 unknown" in page and page.count('<span class="warn">unknown</span>') == 2
    assert "secret-value" not in page and "[REDACTED]" in page


def test_reads_beside_a_live_writer(tmp_path):
    """A daemon holds state.db open in WAL mode; the report still reads it, and sees its latest rows."""
    store = Store(tmp_path / "state.db")
    try:
        store.record_iteration(IterationRecord(n=0, started_at=0, decided_at=0, decision="baseline", val_score=None))
        store.record_iteration(IterationRecord(n=1, started_at=1, decided_at=1, decision="error", stage="backend",
                                               reason="timeout: backend <hung>", cost_usd=None))
        page = write_report(tmp_path).read_text()
    finally:
        store.close()
    assert re.findall(r'<article class="iteration (\w+)">', page) == ["baseline", "error"]
    assert "timeout: backend &lt;hung&gt;" in page and "+ 1 proposal of unknown cost" in page
    (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert png_size(base64.b64decode(b64))[0] > 400


def test_missing_workspace_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="state.db"):
        write_report(tmp_path)


# -- the noise and the honest numbers ---------------------------------------------------------------------

def kv(toy: Toy, key: str) -> dict:
    store = Store(toy.workspace / "state.db", readonly=True)
    try:
        return json.loads(store.get(key) or "{}")
    finally:
        store.close()


@pytest.fixture
def noisy(night, tmp_path):
    """The night copied, as if its A/A check had seen a task flip and the last accepted change had passed the
    paired gate (the toy itself is deterministic)."""
    toy = Toy(*(tmp_path / p.relative_to(night.root) for p in dataclasses.astuple(night)))
    shutil.copytree(night.root, toy.root, symlinks=True, dirs_exist_ok=True)
    store = Store(toy.workspace / "state.db")
    try:
        store.put("noise", json.dumps(Noise(runs=3, tasks=4, flips={"va-beta-3": 2 / 3}, flip_rate=1 / 6, se=0.14,
                                            task_variance=1 / 3).as_dict()))
    finally:
        store.close()
    gate_json = toy.workspace / "iterations" / "5" / "gate.json"
    record = json.loads(gate_json.read_text())
    record["paired"] = {"accepted": True, "reason": "the lower bound clears 0", "rounds": 2, "diff": 0.25,
                        "lower": 0.0625, "p": 0.012, "stopped_early": False, "pairs": 8, "tasks": 4,
                        "candidate_mean": 1.0, "incumbent_mean": 0.75, "flipped_up": ["va-gamma-2"],
                        "flipped_down": []}
    gate_json.write_text(json.dumps(record))
    return toy


def test_status_shows_the_noise_and_the_test_interval(night):
    out = cli(night, "status").stdout
    assert "noise: 0/4 val tasks flipped in the A/A check (2 runs): deterministic, the exact rule" in out
    final = kv(night, "final_test")
    assert final["paired"] == 3 and final["diff"] == pytest.approx(2 / 3) and final["low"] <= final["diff"] <= final["high"]
    assert f"test: 0.333 -> 1.000 ({paired_gain(final)})" in out
    assert re.search(r"\(\+0\.667, 95% CI [-+]\d\.\d{3} \.\. [-+]\d\.\d{3}, paired over 3 tasks\)", out)
    data = json.loads(cli(night, "status", "--json").stdout)
    assert data["noise"]["warnings"] == [] and data["test_vs_baseline"]["paired"] == 3


def test_status_warns_when_the_noise_hides_small_gains(noisy):
    out = cli(noisy, "status").stdout
    assert "noise: 1/4 val tasks flipped in the A/A check (3 runs), flip rate 16.7%" in out
    assert "paired gate at 95%, resolves gains of about" in out
    assert re.search(r"\n  min_improvement 0 is below the smallest gain the noise lets the gate resolve", out)


def test_report_shows_the_noise_the_test_interval_and_the_flipped_tasks(night):
    page = write_report(night.workspace, gate=GateConfig()).read_text()
    cards = dict(re.findall(r'<div class="label">([^<]+)</div><div>(.*?)</div></div>', page))
    assert cards["noise"] == "0/4 val tasks flipped in the A/A check (2 runs): deterministic, the exact rule"
    assert paired_gain(kv(night, "final_test")) in cards["test (held out)"]
    articles = re.findall(r'<article class="iteration (\w+)">(.*?)</article>', page, re.S)
    moved = [re.findall(r'<p class="moved">(.*?)</p>', body) for _, body in articles]
    accepted = [m for (decision, _), m in zip(articles, moved, strict=True) if decision == "accepted"]
    assert accepted == [['val tasks flipped: <span class="accepted">up: va-beta-1, va-beta-3</span>; '
                         '<span class="rejected">down: none</span>'],
                        ['val tasks flipped: <span class="accepted">up: va-gamma-2</span>; '
                         '<span class="rejected">down: none</span>']]
    assert sum(map(len, moved)) == 2                          # rejected iterations list none
    assert "paired over" not in page.split("<h2>Decisions")[1]  # deterministic: the exact rule, no paired numbers


def test_report_shows_the_noise_warning_and_the_paired_numbers(noisy):
    page = write_report(noisy.workspace, gate=GateConfig()).read_text()
    noise = re.search(r'<div class="label">noise</div><div>(.*?)</div></div>', page).group(1)
    assert "1/4 val tasks flipped" in noise and "paired gate at 95%" in noise
    assert '<br><span class="warn">min_improvement 0 is below the smallest gain' in noise
    assert "paired over 4 tasks: +0.2500, lower bound +0.0625, p = 0.012, 2 rounds" in page
    # The gate config the user chose is the one the noise is described against.
    page = write_report(noisy.workspace, gate=GateConfig(noise="deterministic")).read_text()
    assert 'gate.noise = &quot;deterministic&quot; although 1 val tasks flipped' in page


def test_doctor_shows_the_noise_after_a_baseline(noisy, tmp_path):
    out = cli(noisy, "doctor", check=False).stdout
    assert re.search(r"ok +noise: 1/4 val tasks flipped in the A/A check \(3 runs\)", out)
    assert re.search(r"warn noise: min_improvement 0 is below the smallest gain", out)
    before = make_toy(tmp_path / "fresh", TASKS, SPLIT)
    out = cli(before, "doctor", check=False).stdout
    assert re.search(r"ok +noise: not measured yet: the baseline's A/A check runs val 2 times", out)


# -- the plot: what each panel holds ----------------------------------------------------------------------

@pytest.fixture
def figures(monkeypatch):
    """Every matplotlib figure the report saves, kept for a look at what it drew."""
    from matplotlib.figure import Figure
    seen, save = [], Figure.savefig

    def keep(self, *args, **kwargs):
        seen.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return seen


def marks(ax) -> list[tuple[str, float, float]]:
    """Every marker drawn on `ax`, with its series' label, in the axis' data coordinates (a marker placed in
    axes coordinates lands where the axis' scale reads it)."""
    out = []
    for c in ax.collections:
        shown = c.get_offset_transform().transform(c.get_offsets())
        out += [(c.get_label(), round(x, 4), round(y, 4)) for x, y in ax.transData.inverted().transform(shown)]
    return out


def iterations(toy: Toy) -> list[IterationRecord]:
    store = Store(toy.workspace / "state.db", readonly=True)
    try:
        return store.iterations()
    finally:
        store.close()


def axis(fig, ylabel: str):
    (ax,) = [a for a in fig.axes if a.get_ylabel().replace("\n", " ") == ylabel]
    return ax


def test_iterations_without_a_val_score_are_on_their_own_row(night, figures):
    write_report(night.workspace)
    fig = figures[-1]
    rows = iterations(night)
    val = {(r.n, round(r.val_score, 4)) for r in rows if r.val_score is not None}
    assert {(r.n, r.decision) for r in rows if r.val_score is None} == {(2, "rejected"), (3, "error")}
    # On the val axis, every marker stands at a val score (the test markers at a test score, beside theirs).
    on_val = marks(axis(fig, "val score"))
    assert {(x, y) for label, x, y in on_val if label != "test (held out)"} == val
    # The two without one are on a row with no scale.
    lane = axis(fig, "no val score")
    assert sorted((label, x) for label, x, _ in marks(lane)) == [("error, no val", 3), ("rejected, no val", 2)]
    assert list(lane.get_yticks()) == []


def test_the_plot_shows_train_and_test_scores(night, figures):
    page = write_report(night.workspace).read_text()
    fig = figures[-1]
    # Train: the baseline and the accepted versions, the ones that ran all of train (2, 4, 5 of 6 tasks pass).
    train = [(x, y) for label, x, y in marks(axis(fig, "train score")) if label == "train"]
    assert train == [(0, round(2 / 6, 4)), (1, round(4 / 6, 4)), (5, round(5 / 6, 4))]
    # Test: at the baseline and, for the best commit (iteration 5), at the end.
    test = [(round(x), y) for label, x, y in marks(axis(fig, "val score")) if label == "test (held out)"]
    assert test == [(0, round(1 / 3, 4)), (5, 1.0)]
    heads = dict(re.findall(r"<h3>Iteration (\d+) (.*?)</h3>", page))
    assert "train 0.6667" in heads["1"] and "train 0.8333" in heads["5"] and "train" not in heads["4"]
    assert "no val score (best 0.7500)" in heads["2"]


# -- the morning: review and merge, learnings, wording ----------------------------------------------------

def copy_of(night: Toy, dest) -> Toy:
    toy = Toy(*(dest / p.relative_to(night.root) for p in dataclasses.astuple(night)))
    shutil.copytree(night.root, toy.root, symlinks=True, dirs_exist_ok=True)
    return toy


def commands(page: str) -> list[str]:
    (text,) = re.findall(r'<pre class="commands">(.*?)</pre>', page, re.S)
    return html.unescape(text).splitlines()


GIT_ID = {"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@u", "GIT_COMMITTER_NAME": "u",
          "GIT_COMMITTER_EMAIL": "u@u", "GIT_MERGE_AUTOEDIT": "no"}


def run_commands(lines: list[str]) -> None:
    for line in lines:
        subprocess.run(["bash", "-c", line], check=True, capture_output=True, env={**os.environ, **GIT_ID})


def test_the_review_and_merge_commands_do_what_they_say(night, tmp_path):
    toy = copy_of(night, tmp_path / "still")
    cli(toy, "report")
    page = (toy.workspace / "report.html").read_text()
    git = f"git -C {toy.target}"
    assert commands(page) == [f"{git} log --stat main..autoharness",
                              f"{git} switch main && {git} merge --ff-only autoharness"]
    assert "has not moved since the run began" in page
    run_commands(commands(page))
    assert toy.git("rev-parse", "main") == toy.git("rev-parse", "autoharness")


def test_when_base_moved_the_merge_is_a_merge_commit(night, tmp_path):
    toy = copy_of(night, tmp_path / "moved")
    (toy.target / "NOTES.md").write_text("the user's own work\n")
    toy.git("add", "NOTES.md")
    toy.git("-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "user's work on main")
    cli(toy, "report")
    page = (toy.workspace / "report.html").read_text()
    review, merge = commands(page)
    assert merge.endswith(" merge autoharness") and "--ff-only" not in merge
    assert "has moved since the run began: the merge makes a merge commit" in page
    run_commands([merge])
    assert toy.git("show", "main:agent/skills.py") == skills_file("alpha", "beta", "gamma").strip()
    assert toy.git("show", "main:NOTES.md") == "the user's own work"


def test_nothing_accepted_nothing_to_merge(tmp_path):
    store = Store(tmp_path / "state.db")
    try:
        store.record_iteration(IterationRecord(n=0, started_at=0, decided_at=0, decision="baseline", val_score=0.5,
                                               commit_sha="a" * 40))
        store.record_iteration(IterationRecord(n=1, started_at=1, decided_at=1, decision="rejected", stage="guard",
                                               reason="outside editable"))
    finally:
        store.close()
    target = TargetConfig(repo=tmp_path / "gone", editable=["agent/**"])
    page = write_report(tmp_path, target=target).read_text()
    assert "No change was accepted: <code>autoharness</code> has nothing to merge." in page
    assert '<pre class="commands">' not in page


def test_learnings_are_shown_scrubbed(night, tmp_path, monkeypatch):
    page = write_report(night.workspace).read_text()
    learned = page.split("<h2>Learnings</h2>")[1].split("<h2>")[0]
    titles = re.findall(r"<h3>(.*?)</h3>", learned)
    assert titles[0] == "Iteration 1: accepted" and len(titles) == 5
    assert "Iteration 4: rejected by the val gate: did not improve the held-out validation score" in titles
    assert "Teach beta" in learned and "Patch file: 0001-beta.patch" in learned
    # The file is the coding agent's text: it passes the scrubber on its way into the page.
    toy = copy_of(night, tmp_path / "leaky")
    with (toy.workspace / "learnings.md").open("a") as fh:
        fh.write("\n## Iteration 9: accepted\nthe key is toy-learned-secret-value; va-beta-1 fails\n")
    monkeypatch.setenv("SOME_API_KEY", "toy-learned-secret-value")
    learned = write_report(toy.workspace).read_text().split("<h2>Learnings</h2>")[1].split("<h2>")[0]
    assert "the key is [REDACTED]; [held-out id] fails" in learned
    assert "secret-value" not in learned and "va-beta-1" not in learned


def test_wording_says_each_thing_once_with_plurals_right(night):
    page = write_report(night.workspace).read_text()
    assert "guard: 1 file, all editable" in page and "diff (1 file, " in page
    assert not re.search(r"\b1 (tasks|files|errors|proposals|groups)\b", page)
    assert "rejected (rejected" not in page and "rejected: rejected" not in page


def test_replay_names_its_patch_as_a_patch_not_a_model(night):
    rows = iterations(night)
    assert [(r.backend, r.model) for r in rows[1:]] == [("replay", "")] * 5
    assert rows[1].summary == "Teach beta\n\nPatch file: 0001-beta.patch"
    page = write_report(night.workspace).read_text()
    costs = page.split("<h2>Costs</h2>")[1].split("</table>")[0]
    assert ".patch" not in costs
    assert re.findall(r"<tr><td>1</td><td>replay</td><td>(.*?)</td>", costs) == [""]


def test_in_flight_while_the_process_runs(tmp_path):
    """Beside a live process, the candidates it has in flight (escaped, scrubbed); none once it stopped."""
    store = Store(tmp_path / "state.db")
    try:
        store.record_iteration(IterationRecord(n=0, started_at=0, decided_at=0, decision="baseline", val_score=0.5))
    finally:
        store.close()
    beat = Heartbeat(tmp_path / "heartbeat.json", refresh_s=3600).start()
    for n in (5, 6, 7):
        beat.phase("propose", n, base=4, group=f"[crash] <KeyError> in {n}")
    beat.phase("gate", 6)
    beat.progress("val", 3, 3, iteration=6)
    beat.phase("done", 7)
    page = write_report(tmp_path).read_text()
    section = page.split("<h2>In flight</h2>")[1].split("<h2>")[0]
    got = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr><td>.*?</tr>", section)]
    assert [[r[0], r[1], r[3], r[4], r[5]] for r in got] == [
        ["5", "propose", "4", "[crash] &lt;KeyError&gt; in 5", ""],
        ["6", "gate", "4", "[crash] &lt;KeyError&gt; in 6", "val 3/3"]]
    killed = json.loads(beat.path.read_text())   # what a process killed mid-flight leaves: its pid gone
    ended = subprocess.Popen(["true"])
    ended.wait()
    killed["pid"] = ended.pid
    beat.path.write_text(json.dumps(killed))
    assert killed["in_flight"] and "In flight" not in write_report(tmp_path).read_text()
    beat.stop("SIGTERM")
    assert "In flight" not in write_report(tmp_path).read_text()
