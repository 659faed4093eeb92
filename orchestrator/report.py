"""`workspace/report.html`: one self-contained page for the morning.

Headline scores (the final test against the baseline's with its paired interval), the benchmark's noise, a
plot of the val score per iteration, the costs, every decision with its reason and the diff of each accepted
change. Read-only on state.db (a live daemon may be writing it). It shows what the records hold about
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core.config import BackendSection, GateConfig
from orchestrator.core.errors import ConfigError
from orchestrator.core.scrub import Scrubber, redact
from orchestrator.core.workspace import Workspace, atomic_write
from orchestrator.gate import describe_noise
from orchestrator.stats import Noise
from orchestrator.store import IterationRecord, Store

DIFF_CAP_CHARS = 200_000
COLOURS = {"baseline": "#1f77b4", "accepted": "#2ca02c", "rejected": "#ff7f0e", "error": "#d62728"}


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


def recorded_noise(store: Store, gate: GateConfig) -> tuple[str, list[str]] | None:
    """The baseline's A/A check as described to the user (status, doctor, this page); None before a baseline."""
    raw = store.get("noise")
    return None if raw is None else describe_noise(Noise.from_dict(_json(raw)), gate)


def paired_gain(final: dict[str, Any]) -> str:
    """The final test's gain over the baseline, paired by task, with its 95% interval (`final_test` holds
    them when the baseline scored test)."""
    return (f"{final['diff']:+.3f}, 95% CI {final['low']:+.3f} .. {final['high']:+.3f}, "
            f"paired over {final['paired']} tasks")


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
    finally:
        store.close()
    for r in rows:
        folder = ws.iterations / str(r.n)
        if (folder / "gate.json").is_file():
            data.gates[r.n] = _json((folder / "gate.json").read_text(errors="replace"))
        if r.decision == "accepted" and (folder / "diff.patch").is_file():
            data.diffs[r.n] = (folder / "diff.patch").read_text(errors="replace")
    return data


def write_report(workspace_root: Path, *, title: str = "autoharness", budget_usd: float | None = None,
                 backend: BackendSection | None = None, gate: GateConfig | None = None) -> Path:
    """Render the report from the workspace's records; returns the path of report.html. `backend`: the
    config's, whose env values are hidden too (the environment's secret-named ones always are). `gate`: the
    config's, which the noise is described against (the defaults when not given)."""
    ws = Workspace(workspace_root)
    page = Page(load(ws, gate or GateConfig()), title, budget_usd, Scrubber.build(_held_out(ws), backend))
    atomic_write(ws.report, page.render())
    return ws.report


def _held_out(ws: Workspace) -> list[str]:
    """The frozen val and test ids (none before the first baseline)."""
    frozen = _json(ws.splits.read_text()) if ws.splits.is_file() else {}
    return [*frozen.get("val", []), *frozen.get("test", [])]


class Page:
    def __init__(self, data: ReportData, title: str, budget_usd: float | None, scrub: Scrubber):
        self.d, self.title, self.budget_usd, self.scrub = data, title, budget_usd, scrub
        self.base = next((r for r in data.rows if r.decision == "baseline"), None)
        self.proposals = [r for r in data.rows if r.n > 0]
        scored = [r for r in data.rows if r.decision in ("baseline", "accepted")]
        self.best = scored[-1] if scored else None

    def esc(self, value: Any) -> str:
        return html.escape(self.scrub("" if value is None else str(value)))

    def render(self) -> str:
        body = [self.headline(), self.plot(), self.costs(), self.decisions(), self.events()]
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
            ("decisions", f"{len(self.proposals)} proposals: <span class=\"accepted\">{n['accepted']} accepted</span>, "
                          f"<span class=\"rejected\">{n['rejected']} rejected</span>, "
                          f"<span class=\"error\">{n['error']} errors</span>"),
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

    def unknown_cost(self) -> int:
        return sum(r.cost_usd is None for r in self.proposals)

    def spend_text(self) -> str:
        text = f"<b>${self.d.spend_usd:.2f}</b>"
        if self.budget_usd is not None:
            text += f" of ${self.budget_usd:.2f}"
        if self.unknown_cost():
            text += f"<br><span class=\"warn\">+ {self.unknown_cost()} proposals of unknown cost (not counted)</span>"
        return text

    # -- plot ------------------------------------------------------------------------------------------
    def plot(self) -> str:
        if not self.d.rows:
            return ""
        png = base64.b64encode(plot_png(self.d.rows)).decode()
        return (f"<h2>Validation score per iteration</h2><img class=\"plot\" alt=\"val score per iteration\" "
                f"src=\"data:image/png;base64,{png}\">")

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
               else f"val {_f(r.best_before)} &rarr; {_f(r.val_score)}")
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
            text += (f"<p class=\"muted\">paired over {p['tasks']} tasks: {p['diff']:+.4f}, lower bound "
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
        return (f"<details><summary>diff ({files} files, {len(lines)} lines)</summary>"
                f"<pre class=\"diff\">{chr(10).join(lines)}</pre>{more}</details>")

    # -- events ----------------------------------------------------------------------------------------
    def events(self) -> str:
        if not self.d.events:
            return ""
        rows = [[_when(e["ts"]), "" if e["iteration"] is None else str(e["iteration"]), self.esc(e["kind"]),
                 self.esc(e["message"])] for e in self.d.events]
        return "<h2>Recent events</h2>" + _table(["time", "iter", "kind", "message"], rows)


def plot_png(rows: list[IterationRecord]) -> bytes:
    """Val score per iteration, markers by decision, and the best-so-far line."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.6), dpi=110)
    ax = fig.add_subplot()
    best, steps = None, []
    for r in rows:
        if r.decision in ("baseline", "accepted") and r.val_score is not None:
            best = r.val_score
        steps.append(best)
    ax.step([r.n for r in rows], steps, where="post", color="#555", lw=1.5, label="best so far")
    markers = {"baseline": "s", "accepted": "o", "rejected": "x", "error": "X"}
    for decision, marker in markers.items():
        pts = [(r.n, r.val_score) for r in rows if r.decision == decision and r.val_score is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, s=48, color=COLOURS[decision], label=decision, zorder=3)
        # No val score (guard or suite rejection, early stop, error): a marker on the floor of the plot.
        floor = [r.n for r in rows if r.decision == decision and r.val_score is None]
        if floor:
            ax.scatter(floor, [0.05] * len(floor), transform=ax.get_xaxis_transform(), marker=marker, s=40,
                       color=COLOURS[decision], alpha=0.6, zorder=3,
                       label=f"{decision} (no val score)")
    vals = [v for v in (*steps, *(r.val_score for r in rows)) if v is not None]
    if vals:
        lo, hi = min(vals), max(vals)
        span = max(hi - lo, 0.05)
        ax.set_ylim(lo - 0.3 * span, hi + 0.12 * span)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("val score")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


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
"""


def _sandbox_text(kind: str) -> str:
    if kind == "none":
        return "<span class=\"error\">none</span> <span class=\"muted\">(the coding agent ran unconfined, by choice)</span>"
    return f"<code>{kind}</code>" if kind else "<span class=\"muted\">not recorded</span>"
