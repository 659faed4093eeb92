"""A session: baseline if needed, then iterations back to back until a stop condition, then the test score.

`run --once` and the scheduler both go through `Orchestrator.iterate`; this module only decides when to
stop and records why.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from orchestrator.errors import BudgetExceeded, NothingProposed
from orchestrator.loop import Orchestrator
from orchestrator.store import IterationRecord


def plateau_count(rows: list[IterationRecord]) -> int:
    """Rejections (and errors) in a row since the last accepted change."""
    count = 0
    for r in reversed(rows):
        if r.decision in ("accepted", "baseline"):
            break
        count += 1
    return count


def stop_reason(orch: Orchestrator) -> str | None:
    cfg, store = orch.cfg, orch.store
    rows = store.iterations()
    if orch.ws.stop_file.exists():
        return "STOP file"
    if sum(1 for r in rows if r.n > 0) >= cfg.loop.max_iterations:
        return f"max_iterations ({cfg.loop.max_iterations})"
    if plateau_count(rows) >= cfg.loop.plateau:
        return f"plateau ({cfg.loop.plateau} rejections in a row)"
    if store.spend_usd() >= cfg.loop.budget_usd:
        return f"budget_usd (${store.spend_usd():.2f} of ${cfg.loop.budget_usd:.2f})"
    return None


def run_session(orch: Orchestrator, *, external_stop: Callable[[], str | None] = lambda: None,
                on_iteration: Callable[[IterationRecord], None] | None = None, score_test: bool = True) -> str:
    """Iterate until something says stop; record the reason; score test once at the end."""
    run_id = orch.store.start_run(orch.cfg.digest())
    orch.reconcile()
    orch.baseline()
    reason = "unknown"
    try:
        while True:
            reason = external_stop() or stop_reason(orch)
            if reason:
                break
            try:
                rec = orch.iterate()
            except NothingProposed:
                reason = "nothing left to propose"
                break
            except BudgetExceeded as exc:
                reason = f"budget_usd ({exc})"
                break
            if on_iteration:
                on_iteration(rec)
    except BaseException as exc:
        reason = f"interrupted: {type(exc).__name__}: {exc}"[:300]
        raise
    finally:
        orch.store.event("stop", reason)
        orch.store.finish_run(run_id, reason)
    if score_test:
        out = orch.score_test()
        if out is not None:
            best = orch.store.best()
            orch.store.put("final_test", json.dumps({"score": out.score, "n": len(out.results),
                                                     "commit": best.commit_sha if best else ""}))
    return reason
