"""The files the store's rows are shown as: results.tsv, learnings.md, suite.json, and the texts the coding
agent reads (previous attempts, learnings) and the commit message. Val numbers never reach what the coding
agent reads. The rows' texts were scrubbed (secrets, held-out ids) before they were stored (pipeline._record)."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.core.errors import Decision
from orchestrator.core.workspace import Workspace, atomic_write, write_json
from orchestrator.gate import PUBLIC_REASON
from orchestrator.store import IterationRecord, Store


def public_reason(r: IterationRecord) -> str:
    if r.decision == Decision.ACCEPTED:
        return "kept: it improved the held-out validation score"
    if r.stage in PUBLIC_REASON:
        return f"rejected by the {r.stage} gate: {PUBLIC_REASON[r.stage]}"
    return r.staged_reason()


def _outcome(r: IterationRecord) -> str:
    """The decision and its public reason, without saying "rejected" twice."""
    why = public_reason(r)
    return why if why.startswith(str(r.decision)) else f"{r.decision}: {why}" if why else str(r.decision)


def decision_line(r: IterationRecord) -> str:
    """One iteration's outcome as every console line shows it (run, run --once, the demo)."""
    return f"iteration {r.n}: {r.decision}" + (f" ({r.stage})" if r.stage else "") + (f": {r.reason}" if r.reason else "")


def attempts(store: Store, last: int = 10) -> str:
    rows = [r for r in store.iterations() if r.n > 0]
    if not rows:
        return "(none yet)"
    out = []
    for r in rows[-last:]:
        first = r.summary.strip().splitlines()[0][:200] if r.summary.strip() else "(no summary)"
        out.append(f"- Iteration {r.n}: {_outcome(r)}. {first}")
    return "\n".join(out)


def learnings(store: Store) -> str:
    parts = []
    for r in store.iterations():
        if r.n == 0:
            continue
        head = f"## Iteration {r.n}: " + (r.decision if r.decision == Decision.ACCEPTED else _outcome(r))
        parts.append(f"{head}\n{r.summary.strip() or '(no summary)'}\n")
    return "\n".join(parts)


def write_views(store: Store, ws: Workspace) -> None:
    store.write_tsv(ws.results_tsv)
    atomic_write(ws.learnings, "# Learnings\n\n" + learnings(store))
    suite = json.loads(store.get("suite", "{}") or "{}")
    if _read_json(ws.suite) != suite:  # it moves only when a change is accepted: no write (and fsync) for nothing
        write_json(ws.suite, suite)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def commit_message(rec: IterationRecord) -> str:
    cost = "unknown" if rec.cost_usd is None else f"${rec.cost_usd:.4f}"
    summary = "\n".join(rec.summary.splitlines()[:30])
    return (f"autoharness: iteration {rec.n}, val {fmt(rec.best_before)} -> {fmt(rec.val_score)}\n\n"
            f"suite {rec.evals_passed}/{rec.evals_total}, backend {rec.backend}"
            f"{f' ({rec.model})' if rec.model else ''}, cost {cost}\n\n{summary}\n\n"
            f"Autoharness-Iteration: {rec.n}\nAutoharness-Config: {rec.config_hash}\n")


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
