"""`workspace/report.html`: one self-contained page for the morning.

Headline scores (the final test against the baseline's with its paired interval), the benchmark's noise, a
plot of the scores per iteration (val, train, test; iterations with no val score on a row of their own), the
commands to review and merge the branch, the learnings, the costs, every decision with its reason and the
diff of each accepted change. Read-only on state.db (a live daemon may be writing it) and on the target. It shows what the records hold about
held-out tasks: scores only, never their error text. Every text passes the scrubber (secret values,
held-out ids) once more: the records were scrubbed when written, the page is the last line of defence. The
one exception: the ids of the val tasks an accepted change flipped, shown by name (the page is the user's,
the coding agent never reads it), with secret values still hidden.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import heartbeat
from orchestrator.core.config import BackendSection, GateConfig, TargetConfig
from orchestrator.core.errors import AutoharnessError, ConfigError
from orchestrator.core.scrub import Scrubber, redact
from orchestrator.core.words import count
from orchestrator.core.workspace import Workspace, atomic_write
from orchestrator.gate import describe_noise
from orchestrator.gitops import TargetRepo
from orchestrator.stats import Noise, mean_of_means
from orchestrator.store import IterationRecord, Store

DIFF_CAP_CHARS = 200_000
COLOURS = {"baseline": "#1f77b4", "accepted": "#2ca02c", "rejected": "#ff7f0e", "error": "#d62728",
           "train": "#8c564b", "test": "#9467bd"}
MARKERS = {"baseline": "s", "accepted": "o", "rejected": "x", "error": "X"}
TEST_SHIFT = 0.2                 # the test markers sit this far right of their iteration


@dataclass
class ReportData:
    rows: list[IterationRecord]
    spend_usd: float
    baseline_test: dict[str, Any]
    final_test: dict[str, Any]
    runs: list[dict[str, Any]]
    events: list[dict[str, Any]]
    gates: dict[int, dict[str, Any]]
    diffs: dict[int, str]
    sandbox: str = ""          # the coding agent's, as the run resolved it
    noise: tuple[str, list[str]] | None = None   # describe_noise's line and warnings, once a baseline ran
    best_remeasured: float | None = None         # an accepted best's val from draws after it was chosen
    train: dict[int, float] = field(default_factory=dict)  # iteration -> train score, where all of train ran
    learnings: str = ""                          # learnings.md as the loop wrote it
    in_flight: list[dict[str, Any]] = field(default_factory=list)  # the live heartbeat's candidates in flight


@dataclass
class Merge:
    """What the morning's review and merge need: the target, and whether its base moved during the run."""
    target: TargetConfig
    base_moved: bool | None                      # None: the target could not be read


def recorded_noise(store: Store, gate: GateConfig) -> tuple[str, list[str]] | None:
    """The baseline's A/A check as described to the user (status, doctor, this page); None before a baseline."""
    raw = store.get("noise")
    return None if raw is None else describe_noise(Noise.from_dict(_json(raw)), gate)


def paired_gain(final: dict[str, Any]) -> str:
    """The final test's gain over the baseline, paired by task, with its 95% interval (`final_test` holds
    them when the baseline scored test)."""
    return (f"{final['diff']:+.3f}, 95% CI {final['low']:+.3f} .. {final['high']:+.3f}, "
            f"paired over {count(final['paired'], 'task')}")


def load(ws: Workspace, gate: GateConfig) -> ReportData:
    if not ws.db.exists():
        raise ConfigError(f"{ws.db}: no state.db yet; run `autoharness baseline` first")
    store = Store(ws.db, readonly=True)
    try:
        rows = store.iterations()
        data = ReportData(
            rows=rows, spend_usd=store.spend_usd(),
            baseline_test=_json(store.get("baseline_test")), final_test=_json(store.get("final_test")),
            runs=[dict(r) for r in store.conn.execute("SELECT * FROM runs ORDER BY id")],
            events=[dict(e) for e in store.events()[-40:]], gates={}, diffs={}, sandbox=store.get("sandbox") or "",
            noise=recorded_noise(store, gate),
        )
        best = store.best()
        data.best_remeasured = store.fresh_mean(best.code_hash) if best and best.n > 0 else None
        data.train = train_scores(store, rows, _frozen(ws).get("train", []))
    finally:
        store.close()
    if ws.learnings.is_file():
        data.learnings = ws.learnings.read_text(errors="replace")
    data.in_flight = _in_flight(ws)
    for r in rows:
        folder = ws.iterations / str(r.n)
        if (folder / "gate.json").is_file():
            data.gates[r.n] = _json((folder / "gate.json").read_text(errors="replace"))
        if r.decision == "accepted" and (folder / "diff.patch").is_file():
            data.diffs[r.n] = (folder / "diff.patch").read_text(errors="replace")
    return data


def train_scores(store: Store, rows: list[IterationRecord], train_ids: list[str]) -> dict[int, float]:
    """The train score of each iteration's code where every train task was scored on it: the baseline and
    the accepted changes (a rejected candidate ran the suite's tasks at most, which is no train score)."""
    scores = {}
    for r in rows:
        samples = store.samples(r.code_hash, train_ids) if r.code_hash and train_ids else {}
        if len(samples) == len(train_ids) and samples:
            score = mean_of_means({t: [s.reward for s in draws] for t, draws in samples.items()})
            if score is not None:
                scores[r.n] = score
    return scores


def write_report(workspace_root: Path, *, title: str = "autoharness", budget_usd: float | None = None,
                 backend: BackendSection | None = None, gate: GateConfig | None = None,
                 target: TargetConfig | None = None) -> Path:
    """Render the report from the workspace's records; returns the path of report.html. `backend`: the
    config's, whose env values are hidden too (the environment's secret-named ones always are). `gate`: the
    config's, which the noise is described against (the defaults when not given). `target`: the config's, for
    the commands that review and merge the branch (left out without it)."""
    ws = Workspace(workspace_root)
    data = load(ws, gate or GateConfig())
    merge = None if target is None else Merge(target, _base_moved(target, data.rows))
    page = Page(data, title, budget_usd, Scrubber.build(_held_out(ws), backend), merge)
    atomic_write(ws.report, page.render())
    return ws.report


def _base_moved(target: TargetConfig, rows: list[IterationRecord]) -> bool | None:
    """Whether `base` has commits the run did not start from (then the merge cannot be a fast-forward)."""
    start = next((r.commit_sha for r in rows if r.decision == "baseline"), "")
    try:
        now = TargetRepo(target.repo, target.base, target.branch).sha(target.base)
    except (AutoharnessError, OSError):
        return None
    return None if not (start and now) else now != start


def _in_flight(ws: Workspace) -> list[dict[str, Any]]:
    """The iterations the process holding the workspace has in flight; none once it stopped or died."""
    hb = heartbeat.read(ws.heartbeat)
    return list(hb.get("in_flight") or []) if hb is not None and heartbeat.is_running(hb) else []


def _frozen(ws: Workspace) -> dict[str, Any]:
    """splits.json (empty before the first baseline)."""
    return _json(ws.splits.read_text()) if ws.splits.is_file() else {}


def _held_out(ws: Workspace) -> list[str]:
    """The frozen val and test ids."""
    frozen = _frozen(ws)
    return [*frozen.get("val", []), *frozen.get("test", [])]


class Page:
    def __init__(self, data: ReportData, title: str, budget_usd: float | None, scrub: Scrubber,
                 merge: Merge | None = None):
        self.d, self.title, self.budget_usd, self.scrub, self.merge = data, title, budget_usd, scrub, merge
        self.base = next((r for r in data.rows if r.decision == "baseline"), None)
        self.proposals = [r for r in data.rows if r.n > 0]
        scored = [r for r in data.rows if r.decision in ("baseline", "accepted")]
        self.best = scored[-1] if scored else None

    def esc(self, value: Any) -> str:
        return html.escape(self.scrub("" if value is None else str(value)))

    def render(self) -> str:
        body = [self.headline(), self.in_flight(), self.plot(), self.review(), self.learnings(), self.decisions(),
                self.costs(), self.events()]
        return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{self.esc(self.title)} report</title><style>{CSS}</style></head><body>"
                f"<h1>{self.esc(self.title)}</h1><p class=\"muted\">generated {_when(time.time())}</p>"
                + "".join(body) + "</body></html>\n")

    # -- headline --------------------------------------------------------------------------------------
    def headline(self) -> str:
        base_val = self.base.val_score if self.base else None
        best_val = self.best.val_score if self.best else None
        final = self.d.final_test
        test_base, test_final = self.d.baseline_test.get("score"), final.get("score")
        if "low" in final:  # the gain paired by task, with its uncertainty: a few test tasks prove little
            test = f"{_f(final['baseline'])} &rarr; {_f(test_final)} ({self.esc(paired_gain(final))})"
        elif test_final is not None:
            test = f"{_f(test_base)} &rarr; {_f(test_final)}{_delta(test_base, test_final)}"
        else:
            test = (f"{_f(test_base)} <span class=\"muted\">(final not scored yet: "
                    f"<code>autoharness report --final</code>)</span>")
        n = {k: sum(r.decision == k for r in self.proposals) for k in ("accepted", "rejected", "error")}
        cards = [
            ("validation", f"{_f(base_val)} &rarr; <b>{_f(best_val)}</b>{_delta(base_val, best_val)}"
                           + ("" if self.d.best_remeasured is None else
                              f" <span class=\"muted\">(re-measured since: {_f(self.d.best_remeasured)})</span>")),
            ("test (held out)", test),
            ("decisions", f"{count(len(self.proposals), 'proposal')}: "
                          f"<span class=\"accepted\">{n['accepted']} accepted</span>, "
                          f"<span class=\"rejected\">{n['rejected']} rejected</span>, "
                          f"<span class=\"error\">{count(n['error'], 'error')}</span>"),
            ("spend", self.spend_text()),
            ("sandbox", _sandbox_text(self.d.sandbox)),
        ]
        if self.d.noise:
            line, warnings = self.d.noise
            cards.append(("noise", self.esc(line) + "".join(f"<br><span class=\"warn\">{self.esc(w)}</span>"
                                                            for w in warnings)))
        if self.best and self.best.commit_sha:
            cards.append(("best commit", f"<code>{self.esc(self.best.commit_sha[:12])}</code> (iteration {self.best.n})"))
        if self.d.runs:
            last = self.d.runs[-1]
            state = self.esc(last["stop_reason"]) if last["finished_at"] else "running (or killed: no stop recorded)"
            cards.append(("last run", f"{state}<br><span class=\"muted\">started {_when(last['started_at'])}</span>"))
        return "<section class=\"cards\">" + "".join(
            f"<div class=\"card\"><div class=\"label\">{label}</div><div>{value}</div></div>" for label, value in cards
        ) + "</section>"

    def in_flight(self) -> str:
        if not self.d.in_flight:
            return ""
        now = time.time()
        rows = [[str(e["iteration"]), self.esc(e.get("phase")), _dur(now - e.get("since", now)),
                 self.esc(e.get("base")), self.esc(e.get("group")),
                 self.esc(f"{p['label']} {p['done']}/{p['total']}") if (p := e.get("progress")) else ""]
                for e in self.d.in_flight]
        return "<h2>In flight</h2>" + _table(["iter", "phase", "for", "base", "focus group", "progress"], rows)

    def unknown_cost(self) -> int:
        return sum(r.cost_usd is None for r in self.proposals)

    def spend_text(self) -> str:
        text = f"<b>${self.d.spend_usd:.2f}</b>"
        if self.budget_usd is not None:
            text += f" of ${self.budget_usd:.2f}"
        if self.unknown_cost():
            text += (f"<br><span class=\"warn\">+ {count(self.unknown_cost(), 'proposal')} of unknown cost "
                     f"(not counted)</span>")
        return text

    # -- plot ------------------------------------------------------------------------------------------
    def plot(self) -> str:
        if not self.d.rows:
            return ""
        png = base64.b64encode(plot_png(self.d.rows, self.d.train, self.test_points())).decode()
        return (f"<h2>Scores per iteration</h2><img class=\"plot\" alt=\"val, train and test score per iteration\" "
                f"src=\"data:image/png;base64,{png}\">")

    def test_points(self) -> list[tuple[int, float]]:
        """The held-out test score at the baseline and, when scored, of the best commit at the end."""
        points = []
        if self.d.baseline_test.get("score") is not None and self.base:
            points.append((self.base.n, self.d.baseline_test["score"]))
        final = self.d.final_test
        if final.get("score") is not None:
            at = next((r.n for r in self.d.rows if r.commit_sha and r.commit_sha == final.get("commit")),
                      self.d.rows[-1].n)
            points.append((at, final["score"]))
        return points

    # -- review and merge ------------------------------------------------------------------------------
    def review(self) -> str:
        """The commands to read the accepted commits and to merge them into base."""
        if self.merge is None:
            return ""
        t = self.merge.target
        git = f"git -C {shlex.quote(str(t.repo))}"
        base, branch = shlex.quote(t.base), shlex.quote(t.branch)
        head = "<h2>Review and merge</h2>"
        if not any(r.decision == "accepted" for r in self.proposals):
            return head + f"<p>No change was accepted: <code>{self.esc(t.branch)}</code> has nothing to merge.</p>"
        if self.merge.base_moved is False:
            merge = f"{git} switch {base} && {git} merge --ff-only {branch}"
            why = f"<code>{self.esc(t.base)}</code> has not moved since the run began: the merge is a fast-forward."
        else:
            merge = f"{git} switch {base} && {git} merge {branch}"
            why = (f"<code>{self.esc(t.base)}</code> has moved since the run began: the merge makes a merge commit."
                   if self.merge.base_moved else
                   "The target could not be read: git merges with a fast-forward when it can, else a merge commit.")
        return (head + f"<p>The accepted changes are the commits of <code>{self.esc(t.branch)}</code> that "
                f"<code>{self.esc(t.base)}</code> lacks. Review them, then merge them from "
                f"<code>{self.esc(t.base)}</code>:</p>"
                f"<pre class=\"commands\">{self.esc(f'{git} log --stat {base}..{branch}')}\n{self.esc(merge)}</pre>"
                f"<p class=\"muted\">{why}</p>")

    # -- learnings -------------------------------------------------------------------------------------
    def learnings(self) -> str:
        """learnings.md, one entry per iteration, as the coding agent reads it."""
        entries = [e for e in re.split(r"^## ", self.d.learnings, flags=re.M)[1:] if e.strip()]
        if not entries:
            return ""
        parts = []
        for entry in entries:
            title, _, body = entry.partition("\n")
            parts.append(f"<h3>{self.esc(title.strip())}</h3><p class=\"note\">{self.esc(body.strip())}</p>")
        return ("<h2>Learnings</h2><p class=\"muted\">What each proposal tried and what came of it "
                "(<code>learnings.md</code>, carried from iteration to iteration).</p>"
                f"<div class=\"learnings\">{''.join(parts)}</div>")

    # -- costs -----------------------------------------------------------------------------------------
    def costs(self) -> str:
        head = ["iter", "backend", "model", "status", "cost", "tokens in", "tokens out", "cache", "backend time",
                "bench time", "total"]
        rows = []
        for r in self.proposals:
            cost = "<span class=\"warn\">unknown</span>" if r.cost_usd is None else f"${r.cost_usd:.4f}"
            rows.append([str(r.n), self.esc(r.backend), self.esc(r.model), self.esc(r.proposal_status or "-"), cost,
                         f"{r.input_tokens:,}", f"{r.output_tokens:,}", f"{r.cache_tokens:,}", _dur(r.backend_s),
                         _dur(r.bench_s), _dur(r.duration_s)])
        known = sum(r.cost_usd or 0.0 for r in self.proposals)
        total = f"${known:.4f}" + (f" + {self.unknown_cost()} unknown" if self.unknown_cost() else "")
        rows.append(["<b>total</b>", "", "", "", f"<b>{total}</b>",
                     *(f"{sum(getattr(r, k) for r in self.proposals):,}" for k in ("input_tokens", "output_tokens",
                                                                                  "cache_tokens")),
                     *(_dur(sum(getattr(r, k) for r in self.proposals)) for k in ("backend_s", "bench_s", "duration_s"))])
        note = ""
        if self.d.spend_usd > known + 1e-9:
            note = (f"<p class=\"muted\">The run's spend, ${self.d.spend_usd:.4f}, also counts proposals of iterations "
                    f"that were interrupted and redone.</p>")
        return "<h2>Costs</h2>" + _table(head, rows) + note

    # -- decisions -------------------------------------------------------------------------------------
    def decisions(self) -> str:
        return "<h2>Decisions</h2>" + "".join(self.decision(r) for r in self.d.rows)

    def decision(self, r: IterationRecord) -> str:
        val = (f"val {_f(r.val_score)}" if r.decision == "baseline"
               else f"val {_f(r.best_before)} &rarr; {_f(r.val_score)}" if r.val_score is not None
               else f"no val score (best {_f(r.best_before)})")
        if r.n in self.d.train:
            val += f" &middot; train {_f(self.d.train[r.n])}"
        parts = [f"<h3>Iteration {r.n} <span class=\"badge {r.decision}\">{self.esc(r.decision)}</span> "
                 f"<span class=\"muted\">{val}"
                 + (f" &middot; suite {r.evals_passed}/{r.evals_total}" if r.evals_total and r.n else "")
                 + (f" &middot; commit <code>{self.esc(r.commit_sha[:12])}</code>" if r.commit_sha else "")
                 + f" &middot; {_when(r.decided_at)}</span></h3>",
                 f"<p class=\"reason\">{self.esc(r.stage + ': ' if r.stage else '')}{self.esc(r.reason)}</p>"]
        if r.summary.strip():
            parts.append(f"<details><summary>the backend's message</summary><pre>{self.esc(r.summary.strip())}</pre>"
                         f"</details>")
        stages = self.d.gates.get(r.n, {}).get("stages", [])
        if stages:
            parts.append("<ul class=\"stages\">" + "".join(
                f"<li class=\"{'pass' if s.get('passed') else 'fail'}\">{self.esc(s.get('stage'))}: "
                f"{self.esc(s.get('reason'))}</li>" for s in stages) + "</ul>")
        if r.decision == "accepted":
            parts.append(self.moved(self.d.gates.get(r.n, {})))
        if r.n in self.d.diffs:
            parts.append(self.diff(self.d.diffs[r.n]))
        return f"<article class=\"iteration {r.decision}\">{''.join(parts)}</article>"

    def moved(self, gate: dict[str, Any]) -> str:
        """The val tasks an accepted change flipped, by name, and the paired gate's numbers (noisy benchmarks)."""
        flipped = gate.get("flipped") or {}
        # Task ids are shown (the user's page), secret values are not.
        names = {k: ", ".join(html.escape(redact(str(t), self.scrub.secrets)) for t in flipped.get(k, [])) or "none"
                 for k in ("up", "down")}
        text = (f"<p class=\"moved\">val tasks flipped: <span class=\"accepted\">up: {names['up']}</span>; "
                f"<span class=\"rejected\">down: {names['down']}</span></p>" if flipped else "")
        p = gate.get("paired")
        if p:
            text += (f"<p class=\"muted\">paired over {count(p['tasks'], 'task')}: {p['diff']:+.4f}, lower bound "
                     f"{p['lower']:+.4f}, p = {p['p']:.3f}, {p['rounds']} rounds"
                     + (", stopped early" if p.get("stopped_early") else "") + "</p>")
        return text

    def diff(self, text: str) -> str:
        cut = len(text) > DIFF_CAP_CHARS
        text = text[:DIFF_CAP_CHARS]
        files = sum(ln.startswith("diff --git") for ln in text.splitlines())
        lines = []
        for ln in text.splitlines():
            cls = ("add" if ln.startswith("+") and not ln.startswith("+++") else
                   "del" if ln.startswith("-") and not ln.startswith("---") else
                   "hunk" if ln.startswith("@@") else "")
            lines.append(f"<span class=\"{cls}\">{self.esc(ln)}</span>" if cls else self.esc(ln))
        more = "<p class=\"warn\">diff truncated; see diff.patch in the iteration's folder</p>" if cut else ""
        return (f"<details><summary>diff ({count(files, 'file')}, {count(len(lines), 'line')})</summary>"
                f"<pre class=\"diff\">{chr(10).join(lines)}</pre>{more}</details>")

    # -- events ----------------------------------------------------------------------------------------
    def events(self) -> str:
        if not self.d.events:
            return ""
        rows = [[_when(e["ts"]), "" if e["iteration"] is None else str(e["iteration"]), self.esc(e["kind"]),
                 self.esc(e["message"])] for e in self.d.events]
        return "<h2>Recent events</h2>" + _table(["time", "iter", "kind", "message"], rows)


def plot_png(rows: list[IterationRecord], train: dict[int, float] | None = None,
             test: list[tuple[int, float]] | None = None) -> bytes:
    """Three panels on one iteration axis: the val score (markers by decision, the best so far, the test
    score at baseline and at the end), the train score of each version that ran all of train, and a row of
    markers for the iterations that have no val score (stopped before val, or errors): a score axis would
    read their markers as scores."""
    # No pyplot (no global backend or figure state) and Agg's canvas named: a raster backend with no GUI, safe
    # in the daemon's report thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    train, test = train or {}, test or []
    lane = [r for r in rows if r.val_score is None]
    fig = Figure(figsize=(9, 5.2 if lane else 4.8), dpi=110)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3 if lane else 2, 1, height_ratios=[3, 1.6, 0.5][: 3 if lane else 2], hspace=0.12)
    ax = fig.add_subplot(grid[0])
    axes = [ax, fig.add_subplot(grid[1], sharex=ax)]
    _val_panel(ax, rows, test)
    _train_panel(axes[1], rows, train)
    if lane:
        axes.append(fig.add_subplot(grid[2], sharex=ax))
        _lane_panel(axes[2], lane)
    for a in axes[:-1]:
        a.tick_params(labelbottom=False)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("iteration")
    ax.set_xlim(min(r.n for r in rows) - 0.5, max(r.n for r in rows) + 0.5 + (TEST_SHIFT if test else 0))
    for a in axes:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _best_steps(rows: list[IterationRecord], score: dict[int, float]) -> list[float | None]:
    """The score of the best version so far, at each iteration."""
    best, steps = None, []
    for r in rows:
        if r.decision in ("baseline", "accepted") and r.n in score:
            best = score[r.n]
        steps.append(best)
    return steps


def _zoom(ax: Any, values: list[float | None], empty: str) -> None:
    """The score axis around `values`; with none, no scale at all (it would read as a score of nothing)."""
    vals = [v for v in values if v is not None]
    if vals:
        lo, hi = min(vals), max(vals)
        span = max(hi - lo, 0.05)
        ax.set_ylim(lo - 0.15 * span, hi + 0.15 * span)
    else:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", color="#777", fontsize=9)
        ax.set_yticks([])


def _val_panel(ax: Any, rows: list[IterationRecord], test: list[tuple[int, float]]) -> None:
    val = {r.n: r.val_score for r in rows if r.val_score is not None}
    steps = _best_steps(rows, val)
    if val:
        ax.step([r.n for r in rows], steps, where="post", color="#555", lw=1.5, label="best val so far")
    for decision, marker in MARKERS.items():
        pts = [(r.n, r.val_score) for r in rows if r.decision == decision and r.val_score is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, s=48, color=COLOURS[decision], label=decision, zorder=3)
    if test:  # beside its iteration's val marker, which it would hide
        shifted = [(n + TEST_SHIFT, score) for n, score in test]
        ax.scatter(*zip(*shifted, strict=True), marker="D", s=40, color=COLOURS["test"], zorder=4,
                   label="test (held out)")
        for x, score in shifted:
            ax.annotate(f"test {score:.3f}", (x, score), xytext=(0, 7), textcoords="offset points", ha="center",
                        fontsize=8, color=COLOURS["test"])
    _zoom(ax, [*steps, *val.values(), *(s for _, s in test)], "no val score yet")
    ax.set_ylabel("val score")


def _train_panel(ax: Any, rows: list[IterationRecord], train: dict[int, float]) -> None:
    steps = _best_steps(rows, train)
    if any(s is not None for s in steps):
        ax.step([r.n for r in rows], steps, where="post", color=COLOURS["train"], lw=1.2, alpha=0.6,
                label="train of the best")
    pts = sorted(train.items())
    if pts:
        ax.scatter(*zip(*pts, strict=True), marker="o", s=30, color=COLOURS["train"], label="train", zorder=3)
    _zoom(ax, [*steps, *train.values()], "no version has run all of train yet")
    ax.set_ylabel("train score")


def _lane_panel(ax: Any, lane: list[IterationRecord]) -> None:
    """One row, no scale: the iterations stopped before val (guard, suite) or ended by an error."""
    for decision, marker in MARKERS.items():
        ns = [r.n for r in lane if r.decision == decision]
        if ns:
            ax.scatter(ns, [0] * len(ns), marker=marker, s=44, color=COLOURS[decision], label=f"{decision}, no val",
                       zorder=3)
    for r in lane:
        if r.stage:
            ax.annotate(str(r.stage), (r.n, 0), xytext=(7, -3), textcoords="offset points", fontsize=8, color="#555")
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    ax.set_ylabel("no val\nscore", rotation=0, ha="right", va="center")


def _table(head: list[str], rows: list[list[str]]) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) + "</tbody></table>")


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _delta(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    cls = "accepted" if b > a else "muted"
    return f" <span class=\"{cls}\">({b - a:+.4f})</span>"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _dur(seconds: float) -> str:
    s = int(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;
color:#222}
h1{margin-bottom:0}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{margin:0 0 4px;font-size:15px}
.muted{color:#777;font-weight:normal}.warn{color:#b35c00}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:180px;flex:1}
.card .label{font-size:12px;text-transform:uppercase;color:#777;letter-spacing:.04em}
span.accepted{color:#1e7b1e}span.rejected{color:#b35c00}span.error{color:#c62828}
span.badge{font-size:12px;padding:1px 7px;border-radius:9px;color:#fff;vertical-align:middle}
.badge.accepted{background:#2ca02c}.badge.rejected{background:#ff7f0e}.badge.error{background:#d62728}
.badge.baseline{background:#1f77b4}
img.plot{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #eee;padding:4px 8px;
text-align:left}th{background:#fafafa}td:nth-child(n+5){font-variant-numeric:tabular-nums}
article.iteration{border-left:4px solid #ccc;padding:6px 12px;margin:12px 0}
article.accepted{border-color:#2ca02c}article.rejected{border-color:#ff7f0e}article.error{border-color:#d62728}
article.baseline{border-color:#1f77b4}
.reason{margin:2px 0 6px}ul.stages{margin:4px 0;padding-left:20px}li.pass::marker{content:"\\2713  ";color:#2ca02c}
li.fail::marker{content:"\\2717  ";color:#d62728}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap}
pre.diff .add{color:#1a7f37;background:#e6ffec}pre.diff .del{color:#cf222e;background:#ffebe9}
pre.diff .hunk{color:#6f42c1}summary{cursor:pointer;color:#0969da}
pre.commands{white-space:pre;font-size:13px}
.learnings h3{margin:14px 0 2px}p.note{white-space:pre-wrap;margin:0 0 6px}
"""


def _sandbox_text(kind: str) -> str:
    if kind == "none":
        return "<span class=\"error\">none</span> <span class=\"muted\">(the coding agent ran unconfined, by choice)</span>"
    return f"<code>{kind}</code>" if kind else "<span class=\"muted\">not recorded</span>"
