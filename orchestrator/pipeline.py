"""One iteration: train -> analyze -> propose -> gate -> commit, and the record written once, in `finally`.

The baseline (iteration 0) and the final test score are here too: the three ways code gets scored.
Each step is a phase (traced in the logs, shown in the heartbeat) and a safe point where a requested
cancel takes effect. A candidate ends by an exception that carries its outcome: `Rejected` from the gate
stage that refused it, or from the backend step; a known fault while judging it is recorded as an error.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from orchestrator import analyze, gate, paired, records, stats
from orchestrator.context import RunContext
from orchestrator.core.contracts import UNSCORED, Proposal, ProposalRequest, ProposalStatus, Usage
from orchestrator.core.errors import (
    AutoharnessError,
    BenchmarkFailed,
    Cancelled,
    ConfigError,
    Decision,
    GitError,
    NothingToPropose,
    Rejected,
    Stage,
)
from orchestrator.core.gittree import CannotTake
from orchestrator.core.workspace import atomic_write, write_json
from orchestrator.evaluate import CONTEXT_DIR, Outcome, Timer
from orchestrator.flights import Flight
from orchestrator.gitops import Workdir
from orchestrator.store import IterationRecord, StoredResult
from prompts import render


class Ending(NamedTuple):
    decision: Decision
    stage: Stage
    reason: str


def iterate(ctx: RunContext, flight: Flight | None = None) -> IterationRecord:
    """One proposal, from the best commit to its record. Raises NothingToPropose or BudgetExceeded to end the
    loop, Cancelled when a stop was forced; an unknown error is logged as a crash and re-raised undecided.
    `flight`: its number and cost cap when the run driver keeps several in flight; else the next number, and
    what is left of the budget."""
    if flight is None:
        left = ctx.budget_left()
        flight = ctx.flights.take(ctx.store.next_iteration(), max(min(ctx.cfg.backend.max_cost_usd, left), 0.01))
    n, best = flight.n, ctx.store.best()
    assert best is not None, "the baseline comes first"
    idir, timer, suite = ctx.ws.iteration_dir(n), Timer(), gate.Suite.load(ctx.store)
    proposal: Proposal | None = None
    verdict: gate.Verdict | None = None
    ending: Ending | None = None
    deciding = False  # holding the decision lock: from the check that the best stands until the record lands
    try:
        with ctx.phases.traced(), ctx.repo.workdir(ctx.worktree_root / f"iter-{n}") as work:
            ctx.step("train", n)
            train = timer.add(ctx.evaluator.evaluate(work.score(best.commit_sha), best.code_hash, ctx.splits.train,
                                                     "train", label="train"))
            ctx.step("analyze", n)
            wt = work.checkout(best.commit_sha)  # the coding agent's own repository, never the target's
            digest, focus = _analyze(ctx, wt, best, train, idir, flight)
            ctx.step("propose", n, base=best.n, group=flight.group)
            proposal, git_changed = _propose(ctx, wt, digest, focus, flight, idir)
            timer.backend_s += proposal.duration_s
            if proposal.status is not ProposalStatus.OK:
                raise Rejected(Stage.BACKEND, _failure(proposal), Decision.ERROR)
            ctx.step("gate", n)
            best, verdict, suite = _gate(ctx, work, best, suite, timer, git_changed, idir)
            deciding = True  # _gate returns holding the lock, with `best` still the best
            accept = Ending(Decision.ACCEPTED, Stage.NONE, verdict.gain(best.val_score))
            ctx.step("commit", n)
            message = records.commit_message(_record(ctx, n, best, timer, proposal, verdict, accept))
            commit = ctx.repo.commit(work.store, verdict.tree, message, expected_tip=best.commit_sha)
            # Committed, not yet recorded: no cancel from here on; a crash here is undone at restart.
            ctx.phases.enter("record", iteration=n)
            ending = accept
    except Rejected as exc:
        ending, verdict = Ending(exc.decision, exc.stage, exc.reason), exc.verdict or verdict
        best = exc.best or best
    except GitError as exc:  # a worktree the coding agent broke (deleted .git, corrupted its index)
        ending = Ending(Decision.ERROR, Stage.GIT, f"git failed on the candidate: {exc}"[:500])
    except NothingToPropose as exc:
        ctx.store.event("nothing_left", str(exc), iteration=n)
        raise
    except (BenchmarkFailed, ConfigError):
        raise
    except AutoharnessError as exc:
        ending = Ending(Decision.ERROR, Stage.ERROR, str(exc)[:500])
    except Exception as exc:
        ctx.store.event("crash", ctx.scrubber(f"{type(exc).__name__}: {exc}"[:1000]), iteration=n)
        raise
    finally:
        try:
            if ending is not None and ending.decision is not Decision.ACCEPTED and ctx.cancel.requested:
                ending = None  # cut short by a forced stop (its processes killed): no verdict on the candidate
            if ending is not None:  # decided: written once, here; undecided iterations are redone at restart
                with ctx.flights.deciding:
                    rec = _record(ctx, n, best, timer, proposal, verdict, ending,
                                  commit if ending.decision is Decision.ACCEPTED else "")
                    _decide(ctx, rec, verdict, suite, best)
        finally:
            if deciding:
                ctx.flights.deciding.release()
            ctx.flights.land(n)
            ctx.phases.finish(n)
    if ending is None:
        raise Cancelled(ctx.cancel.reason)  # undecided because of a forced stop
    return rec


def _gate(ctx: RunContext, work: Workdir, best: IterationRecord, suite: gate.Suite, timer: Timer,
          git_changed: list[str], idir: Path) -> tuple[IterationRecord, gate.Verdict, gate.Suite]:
    """The gate, and again for as long as another candidate was accepted meanwhile: the change replayed onto
    the new best and judged against it. Returns the best it beat, the verdict and the suite it moved, holding
    the decision lock; raises Rejected (its `best` the one it was judged against) without it. A change that does
    not apply to the new best is rejected as a conflict; a guard's rejection needs no replay."""
    replayed, moves = "", None
    while True:
        try:
            verdict = gate.judge(ctx, work, best, suite, timer, git_changed, idir / "diff.patch", replayed)
            rejected = None
        except Rejected as exc:
            if exc.stage is Stage.GUARD:
                raise
            verdict, rejected = exc.verdict or gate.Verdict(), exc
        verdict.replayed = moves
        ctx.flights.deciding.acquire()
        now = ctx.store.best()
        if now is None or now.n == best.n:
            if rejected is None:
                return best, verdict, suite
            ctx.flights.deciding.release()
            rejected.best = best
            raise rejected
        ctx.flights.deciding.release()
        # Another candidate was accepted while this one was judged: its verdict against the old best is void.
        ctx.store.event("replay", f"best moved from iteration {best.n} to {now.n}: the change is replayed onto it",
                        iteration=int(idir.name), before=best.n, onto=now.n)
        old = work.store.tree_of(best.commit_sha)
        moves = {"from": (moves or {"from": best.n})["from"], "onto": now.n}
        try:
            replayed = work.store.replay(old, verdict.tree or work.take(old)[0], work.store.tree_of(now.commit_sha))
        except CannotTake as exc:
            verdict.replayed = moves
            why = f"the change does not apply to iteration {now.n}'s accepted change: {exc}"
            raise Rejected(Stage.CONFLICT, why, verdict=verdict, best=now) from None
        best, suite = now, gate.Suite.load(ctx.store)


def _analyze(ctx: RunContext, wt: Path, best: IterationRecord, train: Outcome, idir: Path,
             flight: Flight) -> tuple[str, str]:
    """The failure digest of the train run, the traces it points to copied into the worktree, and the group
    this candidate aims at: with several in flight on one best, each at a group none of the others has."""
    pass_reward = ctx.cfg.gate.pass_reward
    failing = [t for t, r in train.results.items() if not gate.passed(r, pass_reward)]
    traces = analyze.copy_traces(ctx.ws.traces_train / best.code_hash[:16], wt / CONTEXT_DIR / "traces", failing)
    groups = analyze.group_failures(train.results, pass_reward)
    i = ctx.flights.aim(flight, best.n, [g.signature for g in groups])
    digest = analyze.digest(train.results, pass_reward, traces, CONTEXT_DIR)
    if ctx.cfg.loop.parallel == 1 or i < 0:
        focus = "the largest failure group below"
    else:
        focus = (f"failure group {i + 1} below ({groups[i].signature}); other agents are working on the other "
                 "groups at the same time")
    atomic_write(idir / "analysis.md", f"# Iteration {idir.name}: failure analysis\n\n{digest}\n")
    return digest, focus


def _propose(ctx: RunContext, wt: Path, digest: str, focus: str, flight: Flight,
             idir: Path) -> tuple[Proposal, list[str]]:
    """Render the prompt, call the backend in its checkout; put back whatever of the target's git it changed
    (it cannot reach it when sandboxed)."""
    cfg, n = ctx.cfg, flight.n
    prompt = ctx.scrubber(render(
        "propose", editable=", ".join(cfg.target.editable), context_dir=CONTEXT_DIR, digest=digest, focus=focus,
        attempts=records.attempts(ctx.store), learnings=records.learnings(ctx.store) or "(none yet)",
    ))
    atomic_write(idir / "prompt.md", prompt)
    request = ProposalRequest(
        worktree=wt, prompt=prompt, editable=list(cfg.target.editable), timeout_s=cfg.backend.timeout_s,
        max_cost_usd=flight.cap_usd, env=dict(cfg.backend.env),
        iteration=n, transcript_path=idir / "transcript.jsonl", sandbox=ctx.sandbox(wt), cancel=ctx.cancel,
    )
    request.transcript_path.unlink(missing_ok=True)
    best_commit = ctx.store.best().commit_sha
    ctx.store.event("started", f"proposal {n} started on iteration {flight.base}", iteration=n, base=flight.base,
                    base_commit=best_commit, group=ctx.scrubber(flight.group), cap_usd=flight.cap_usd)
    git_before = ctx.repo.state()
    try:
        proposal = ctx.agent.propose(request)
    finally:
        with ctx.flights.deciding:  # no other candidate's commit in between: our refs are where they must be
            moved = ctx.repo.restore_state(git_before, own=ctx.repo.own_refs(ctx.store.best().commit_sha))
        ctx.scrubber.file(request.transcript_path)  # the backend's raw stream, held-out ids and all
    # What the backend says reaches the records, the next prompt and the commit message: scrubbed once, here.
    proposal.summary, proposal.error = ctx.scrubber(proposal.summary), ctx.scrubber(proposal.error)
    if moved:  # ref names are the coding agent's text too
        ctx.store.event("git_restored", "the coding agent changed the target's git database", iteration=n,
                        refs=[ctx.scrubber(ref) for ref in moved])
    # Spend is recorded the moment it is known, so a crash before the decision cannot hide it.
    ctx.store.event("proposal", proposal.status.value, iteration=n, cost_usd=proposal.cost_usd,
                    backend=proposal.backend)
    ctx.flights.spent(flight)
    shutil.rmtree(wt / CONTEXT_DIR, ignore_errors=True)
    return proposal, moved


def _failure(p: Proposal) -> str:
    return f"{p.status.value}: {p.error_class or 'error'}: {p.error[:300]}".strip()


def _record(ctx: RunContext, n: int, best: IterationRecord, timer: Timer, proposal: Proposal | None,
            verdict: gate.Verdict | None, ending: Ending, commit: str = "") -> IterationRecord:
    cfg, p, v, scrub = ctx.cfg, proposal, verdict or gate.Verdict(), ctx.scrubber
    # The gate quotes the candidate's file names: the coding agent's text, as a reason may be (a git error
    # on its checkout).
    for stage in v.stages:
        stage.reason = scrub(stage.reason)
    v.changed = [scrub(c) for c in v.changed]
    usage = p.usage if p else Usage()
    return IterationRecord(
        n=n, started_at=timer.started_at, decided_at=time.time(), decision=ending.decision, stage=ending.stage,
        reason=scrub(ending.reason), val_score=v.val_score, best_before=best.val_score, commit_sha=commit,
        code_hash=v.code_hash, evals_passed=v.evals_passed, evals_total=v.evals_total,
        backend=(p.backend if p else "") or cfg.backend.kind, model=(p.model if p else "") or cfg.backend.model,
        proposal_status=p.status.value if p else "", cost_usd=p.cost_usd if p else None,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_tokens=usage.cache_read_tokens + usage.cache_write_tokens, summary=p.summary.strip() if p else "",
        config_hash=cfg.digest(), **timer.fields(),
    )


def _decide(ctx: RunContext, rec: IterationRecord, verdict: gate.Verdict | None, suite: gate.Suite,
            best: IterationRecord) -> None:
    """The decision lands in gate.json, then state.db (with the suite it moves, in one transaction), then
    the best tag and the views."""
    accepted = rec.decision == Decision.ACCEPTED
    write_json(ctx.ws.iteration_dir(rec.n) / "gate.json", {
        "iteration": rec.n, "best_commit": best.commit_sha, "best_val": best.val_score,
        **(verdict or gate.Verdict()).as_dict(), "decision": rec.decision, "stage": rec.stage, "reason": rec.reason,
        "val_score": rec.val_score, "commit": rec.commit_sha, "cost_usd": rec.cost_usd, "backend": rec.backend,
    })
    ctx.store.record_iteration(rec, kv={"suite": suite.dump(ctx.cfg.gate.suite_threshold)} if accepted else {})
    if accepted:
        ctx.repo.tag_best(rec.commit_sha)
    records.write_views(ctx.store, ctx.ws)


# -- the other two ways code is scored --------------------------------------------------------------------

def baseline(ctx: RunContext) -> IterationRecord:
    """Iteration 0: freeze the splits, score the base commit on train, val and test, seed the suite. Refused
    (BenchmarkFailed, nothing recorded) when the benchmark judged no task of a split."""
    existing = ctx.store.iteration(0)
    if existing is not None:
        return existing
    timer, g = Timer(), ctx.cfg.gate
    tip = ctx.repo.ensure_branch()
    ctx.repo.check_branch_free(ctx.worktree_root)
    with ctx.phases.traced(), ctx.repo.workdir(ctx.worktree_root / "baseline") as work:
        wt, chash = work.score(tip), ctx.hash_of(work.store, tip)
        scored, refusal = _score_base(ctx, wt, chash, timer)
    if refusal:  # raised here, not in a phase: the command prints it, once, as its error
        ctx.store.forget(chash)  # so that a fixed benchmark is run again, not answered from the cache
        ctx.store.event("baseline_refused", refusal)
        raise BenchmarkFailed(refusal)
    train, val, test = scored["train"], scored["val"], scored.get("test")
    rewards = val.rewards()
    noise = stats.Noise.measure(rewards)
    suite = gate.Suite.initial(train.results, g.pass_reward)
    ok, total = gate.pass_rate(train.results, g.pass_reward)
    rec = IterationRecord(
        n=0, started_at=timer.started_at, decided_at=time.time(), decision=Decision.BASELINE,
        reason=f"train {ok}/{total}" + ("" if test is None else f", test {records.fmt(test.score)}"),
        val_score=stats.mean_of_means(rewards), commit_sha=tip, code_hash=chash, evals_passed=ok, evals_total=total,
        backend=ctx.cfg.backend.kind, model=ctx.cfg.backend.model, config_hash=ctx.cfg.digest(), **timer.fields(),
    )
    test_score = {} if test is None else {"score": test.score, "n": len(test.results)}
    # The noise as measured, and the smallest gain the gate resolves with it under this run's settings.
    measured = {**noise.as_dict(), "resolvable": noise.resolvable(g.confidence, g.max_samples)}
    ctx.store.record_iteration(rec, kv={"suite": suite.dump(g.suite_threshold), "baseline_test": json.dumps(test_score),
                                        "noise": json.dumps(measured)})
    ctx.repo.tag_best(tip)
    records.write_views(ctx.store, ctx.ws)
    return rec


def _score_base(ctx: RunContext, wt: Path, chash: str, timer: Timer) -> tuple[dict[str, Outcome], str]:
    """The base commit's outcome on each split, train first; val runs `baseline_runs` times (the A/A check:
    what flips on the same code is the benchmark's noise). Stops at the first split the benchmark judged
    none of, with the refusal that says so ("" when every split was judged)."""
    runs = ctx.cfg.gate.baseline_runs
    scored: dict[str, Outcome] = {}
    for split, ids in (("train", ctx.splits.train), ("val", ctx.splits.val), ("test", ctx.splits.test)):
        if not ids:
            continue
        ctx.step(f"baseline:{split}", 0)
        draws = runs if split == "val" else 1
        label = f"baseline {split}" + (f" (A/A, {draws} runs)" if draws > 1 else "")
        out = scored[split] = timer.add(ctx.evaluator.evaluate(wt, chash, ids, split, label=label, draws=draws,
                                                               purpose="baseline"))
        # Every sample a crash, bad output or infra error: a night would pay for proposals no score could judge.
        samples = [s for t in ids for s in out.samples.get(t, ())]
        if samples and all(s.error_class in UNSCORED for s in samples):
            return scored, _refusal(split, [out.results[t] for t in ids if t in out.results])
    return scored, ""


def _refusal(split: str, results: list[StoredResult]) -> str:
    """The paragraph a refused baseline prints: what happened, the first task's error, what to check."""
    n = len(results)
    what = f"the one {split} task" if n == 1 else f"any of the {n} {split} tasks"
    kinds = ", ".join(f"{kind}: {k}" for kind, k in Counter(r.error_class for r in results).most_common())
    first = results[0]
    if split == "train":
        told = f"First error, {first.task_id}: {first.error_class}: {analyze.headline(first.error)[:300]}."
        check = ("Check that the benchmark runs on its own and reports a reward in [0, 1] for each task "
                 "(the command runner reads one {\"task_id\": ..., \"reward\": ...} line a task from stdout).")
    else:
        told = (f"First: {first.task_id}, {first.error_class} (the error texts of {split} tasks are not kept, so "
                "that no held-out detail reaches the records).")
        check = (f"Train was scored, so check what differs in a {split} run: it is contained (the benchmark's files "
                 "and the agent read-only, a private temporary folder), and the benchmark may not write elsewhere.")
    return (f"baseline refused: the benchmark could not score {what} ({kinds}), so no change could be judged; "
            f"nothing was recorded, and `run` refuses too until a baseline is. {told} {check} "
            "`autoharness doctor` runs one train task and shows its whole error.")


def score_test(ctx: RunContext) -> Outcome | None:
    """The honest number for the morning: the test split on the best commit, without traces; recorded as
    `final_test`. Cached per code hash, so scoring an unchanged best again runs nothing."""
    best = ctx.store.best()
    if best is None or not ctx.splits.test:
        return None
    with ctx.phases.traced(), ctx.repo.workdir(ctx.worktree_root / "final-test") as work:
        ctx.step("final:test", best.n)
        out = ctx.evaluator.evaluate(work.score(best.commit_sha), best.code_hash, ctx.splits.test, "test", label="test")
    # Its runs are counted like an iteration's: the records hold every task run an outside count would see.
    ctx.store.put("final_test", json.dumps({"score": out.score, "n": len(out.results), "commit": best.commit_sha,
                                            "tasks_run": out.ran, "tasks_cached": out.cached,
                                            "bench_s": round(out.seconds, 3), **against_baseline(ctx, out)}))
    return out


def against_baseline(ctx: RunContext, out: Outcome) -> dict:
    """The final test score against the baseline's, paired by task: the difference and its 95% interval."""
    base = ctx.store.iteration(0)
    before = ctx.store.cached_results(base.code_hash, ctx.splits.test) if base else {}
    pairs = paired.single_pairs({t: r.reward for t, r in out.results.items()}, {t: r.reward for t, r in before.items()})
    if not pairs:
        return {}
    low, high = stats.interval(pairs, 0.95)
    return {"baseline": stats.mean_of_means({t: [before[t].reward] for t in pairs}), "paired": len(pairs),
            "diff": stats.mean_difference(pairs), "low": low, "high": high}
