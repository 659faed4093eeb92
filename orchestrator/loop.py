"""One iteration of the loop, and the baseline before it.

benchmark train on the best commit -> analyze -> propose in a fresh worktree -> gate (guard, suite, val,
promote) -> commit or revert -> record. Every decision lands in gate.json, state.db and results.tsv.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import structlog

from agents.base import NothingToPropose, Proposal, ProposalRequest, ProposalStatus
from agents.fallback import build_agent
from benchmarks import runner_class
from orchestrator import analyze, gate, guard, logs, sandbox
from orchestrator.config import Config, resolve_path
from orchestrator.errors import (
    AutoharnessError,
    BenchmarkFailed,
    BudgetExceeded,
    ConfigError,
    NothingProposed,
)
from orchestrator.evaluate import CONTEXT_DIR, Evaluator, Outcome, code_hash
from orchestrator.gitops import TargetRepo
from orchestrator.proc import secret_values
from orchestrator.sandbox import Sandbox
from orchestrator.splits import Splits, load_or_freeze, make_splits
from orchestrator.store import IterationRecord, Store
from orchestrator.workspace import Workspace, atomic_write, write_json
from prompts import render

Progress = Callable[[str, int, int], None]


@dataclass
class Timer:
    """Seconds spent in the benchmark and in the backend, to tell orchestration overhead apart."""

    start: float = field(default_factory=time.monotonic)
    bench_s: float = 0.0
    backend_s: float = 0.0
    ran: int = 0
    cached: int = 0
    skipped: int = 0

    def add(self, out: Outcome) -> Outcome:
        self.bench_s += out.seconds
        self.ran += out.ran
        self.cached += out.cached
        self.skipped += out.skipped
        return out

    @property
    def total_s(self) -> float:
        return time.monotonic() - self.start


class Orchestrator:
    def __init__(self, cfg: Config, on_progress: Progress | None = None, on_phase: Callable[[str, int], None] | None = None,
                 log: Any = None):
        self.cfg = cfg
        self.log = log or structlog.get_logger("autoharness")
        self._phase_cm: Any = None
        self.ws = Workspace(cfg.workspace).ensure()
        self.store = Store(self.ws.db)
        self.repo = TargetRepo(cfg.target.repo, cfg.target.base, cfg.target.branch)
        self.runner = runner_class(cfg.benchmark.kind)(cfg.benchmark, cfg.config_dir)
        self.evaluator = Evaluator(self.runner, self.store, self.ws.traces_train, cfg.benchmark, on_progress)
        self.on_phase = on_phase
        key = hashlib.sha256(str(self.ws.root).encode()).hexdigest()[:12]
        self.worktree_root = Path(tempfile.gettempdir()) / "autoharness-worktrees" / key
        self._splits: Splits | None = None
        self._agent = None

    def close(self) -> None:
        self.store.close()
        for folder in (self.worktree_root, self.worktree_root.parent):
            try:
                folder.rmdir()  # only when empty: another workspace's worktrees may live beside ours
            except OSError:
                pass

    def phase(self, name: str, n: int) -> None:
        """Enter a phase: the previous one ends (logged with its duration), this one starts."""
        self.end_phase()
        self._phase_cm = logs.phase(self.log, name, iteration=n)
        self._phase_cm.__enter__()
        if self.on_phase:
            self.on_phase(name, n)
        # Fault injection for the crash-safety tests: SIGKILL ourselves as a named phase begins.
        if os.environ.get("AUTOHARNESS_KILL_AT") == f"{name}:{n}":
            os.kill(os.getpid(), signal.SIGKILL)

    def end_phase(self, exc: BaseException | None = None) -> None:
        cm, self._phase_cm = self._phase_cm, None
        if cm is not None:
            try:
                cm.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
            except BaseException as raised:  # logs.phase re-raises what it logged; the caller re-raises it
                if raised is not exc:
                    raise

    @contextmanager
    def traced(self) -> Iterator[None]:
        """Close the last phase of a step: normally, or as an error with the exception that ended it."""
        try:
            yield
        except (NothingProposed, BudgetExceeded):
            self.end_phase()  # an ordinary end of the loop, not a failed phase
            raise
        except BaseException as exc:
            self.end_phase(exc)
            raise
        self.end_phase()

    # -- set-up ----------------------------------------------------------------------------------------
    @property
    def agent(self):
        if self._agent is None:
            self._agent = build_agent(self.cfg.backend, self.cfg.config_dir)
        return self._agent

    def splits(self) -> Splits:
        if self._splits is None:
            tasks = self.runner.tasks()
            wanted = make_splits(self.cfg.benchmark.split, tasks, self.runner.default_split())
            self._splits = load_or_freeze(self.ws.splits, wanted)
        return self._splits

    def hash_of(self, worktree: Path, treeish: str | None = None) -> str:
        """The cache key of a commit (`treeish`) or of the staged candidate (None)."""
        return code_hash(self.repo.tree_entries(worktree, treeish), self.cfg.target.editable, self.cfg.benchmark)

    def reconcile(self) -> list[str]:
        """Bring git in line with the records after a crash; return what was done."""
        done = [f"removed stale worktree {p}" for p in self.repo.prune_worktrees(self.worktree_root)]
        self.repo.check_branch_free(self.worktree_root)
        best = self.store.best()
        if best is not None and best.config_hash and best.config_hash != self.cfg.digest():
            self.store.event("config_changed", "the config differs from the one of the best iteration",
                             before=best.config_hash, after=self.cfg.digest())
            self.log.info("config_changed", before=best.config_hash, after=self.cfg.digest())
        if best is not None:
            tip = self.repo.tip()
            if tip != best.commit_sha:
                self.repo.reset_branch(best.commit_sha)
                self.store.event("reconcile", f"branch moved back from {tip[:12]} to the recorded best {best.commit_sha[:12]}")
                done.append(f"reset {self.cfg.target.branch} to {best.commit_sha[:12]}")
            self.repo.tag_best(best.commit_sha)
        return done

    # -- baseline --------------------------------------------------------------------------------------
    def baseline(self) -> IterationRecord:
        with self.traced():
            return self._baseline()

    def _baseline(self) -> IterationRecord:
        existing = self.store.iteration(0)
        if existing is not None:
            return existing
        timer = Timer()
        splits = self.splits()
        start = time.time()
        tip = self.repo.ensure_branch()
        self.repo.check_branch_free(self.worktree_root)
        wt_path = self.worktree_root / "baseline"
        with self.repo.worktree(wt_path, tip) as wt:
            chash = self.hash_of(wt, tip)
            self.phase("baseline:train", 0)
            train = timer.add(self.evaluator.evaluate(wt, chash, splits.train, "train", label="baseline train"))
            self.phase("baseline:val", 0)
            val = timer.add(self.evaluator.evaluate(wt, chash, splits.val, "val", label="baseline val"))
            test = None
            if splits.test:
                self.phase("baseline:test", 0)
                test = timer.add(self.evaluator.evaluate(wt, chash, splits.test, "test", label="baseline test"))
        suite = gate.Suite.initial(train.results, self.cfg.gate.pass_reward)
        ok, total = gate.pass_rate(train.results, self.cfg.gate.pass_reward)
        rec = IterationRecord(
            n=0, started_at=start, decided_at=time.time(), decision="baseline",
            reason=f"train {ok}/{total}" + ("" if test is None else f", test {_fmt(test.score)}"),
            val_score=val.score, commit_sha=tip, code_hash=chash, evals_passed=ok, evals_total=total,
            backend=self.cfg.backend.kind, model=self.cfg.backend.model, duration_s=timer.total_s,
            bench_s=timer.bench_s, tasks_run=timer.ran, tasks_cached=timer.cached, config_hash=self.cfg.digest(),
        )
        self.store.record_iteration(rec, kv={"suite": json.dumps(suite.as_dict(self.cfg.gate.suite_threshold)),
                                             "baseline_test": json.dumps(_score_dump(test))})
        self.repo.tag_best(tip)
        self._write_views()
        return rec

    # -- one iteration ---------------------------------------------------------------------------------
    def iterate(self) -> IterationRecord:
        """Run one full iteration and record its decision. Raises NothingProposed or BudgetExceeded."""
        if self.store.iteration(0) is None:
            self.baseline()
        with self.traced():
            return self._iterate()

    def _iterate(self) -> IterationRecord:
        if self.store.iteration(0) is None:
            self.baseline()
        best = self.store.best()
        assert best is not None
        spend = self.store.spend_usd()
        if spend >= self.cfg.loop.budget_usd:
            raise BudgetExceeded(f"spent ${spend:.2f} of the ${self.cfg.loop.budget_usd:.2f} budget")
        n = self.store.next_iteration()
        splits = self.splits()
        timer = Timer()
        start = time.time()
        idir = self.ws.iteration_dir(n)
        rec = IterationRecord(n=n, started_at=start, decided_at=0.0, decision="error", best_before=best.val_score,
                              backend=self.cfg.backend.kind, model=self.cfg.backend.model, config_hash=self.cfg.digest())
        gate_log: dict = {"iteration": n, "best_commit": best.commit_sha, "best_val": best.val_score, "stages": []}
        suite = gate.Suite.from_dict(json.loads(self.store.get("suite", "{}") or "{}"))
        wt_path = self.worktree_root / f"iter-{n}"
        try:
            with self.repo.worktree(wt_path, best.commit_sha) as wt:
                # 1. benchmark train on the best code (cached after the first time)
                self.phase("train", n)
                train = timer.add(self.evaluator.evaluate(wt, best.code_hash, splits.train, "train", label="train"))
                self.repo.reset_clean(wt, best.commit_sha)  # the coding agent starts from a pristine checkout
                # 2. analyze
                self.phase("analyze", n)
                context = wt / CONTEXT_DIR
                failing = [t for t, r in train.results.items() if not gate.passed(r, self.cfg.gate.pass_reward)]
                traces = analyze.copy_traces(self.ws.traces_train / best.code_hash[:16], context / "traces", failing)
                digest = analyze.digest(train.results, self.cfg.gate.pass_reward, traces, CONTEXT_DIR)
                atomic_write(idir / "analysis.md", f"# Iteration {n}: failure analysis\n\n{digest}\n")
                # 3. propose
                self.phase("propose", n)
                prompt = self._scrub(render(
                    "propose", editable=", ".join(self.cfg.target.editable), context_dir=CONTEXT_DIR, digest=digest,
                    attempts=self._attempts(), learnings=self._learnings_text() or "(none yet)",
                ), splits)
                atomic_write(idir / "prompt.md", prompt)
                refs_before = self.repo.refs()
                try:
                    proposal = self._propose(wt, prompt, n, idir, budget_left=self.cfg.loop.budget_usd - spend)
                finally:
                    moved = self.repo.restore_refs(refs_before)
                # Spend is recorded the moment it is known, so a crash before the decision cannot hide it.
                self.store.event("proposal", proposal.status.value, iteration=n, cost_usd=proposal.cost_usd,
                                 backend=proposal.backend)
                timer.backend_s += proposal.duration_s
                rec.backend, rec.model = proposal.backend or rec.backend, proposal.model or rec.model
                rec.proposal_status, rec.summary = proposal.status.value, proposal.summary.strip()
                rec.cost_usd = proposal.cost_usd
                rec.input_tokens, rec.output_tokens = proposal.usage.input_tokens, proposal.usage.output_tokens
                rec.cache_tokens = proposal.usage.cache_read_tokens + proposal.usage.cache_write_tokens
                shutil.rmtree(context, ignore_errors=True)
                if proposal.status is not ProposalStatus.OK:
                    rec.stage, rec.reason = "backend", f"{proposal.status.value}: {proposal.error_class or 'error'}: {proposal.error[:300]}".strip()
                    return self._decide(rec, timer, gate_log, suite)
                # 4. gate
                self.phase("gate", n)
                if moved:
                    self.store.event("refs_restored", "the coding agent moved refs of the target", iteration=n, refs=moved)
                    rec.decision, rec.stage = "rejected", "guard"
                    rec.reason = f"the proposal changed refs of the target repo (restored): {', '.join(moved[:5])}"
                    gate_log["stages"].append({"stage": "guard", "passed": False, "reason": rec.reason})
                    return self._decide(rec, timer, gate_log, suite)
                self._gate(wt, rec, best, splits, suite, timer, gate_log, idir)
                if rec.decision == "accepted":
                    self.phase("commit", n)
                    rec.commit_sha = self.repo.commit(wt, self._commit_message(rec), expected_tip=best.commit_sha)
                    self.phase("record", n)  # committed, not yet recorded: a crash here is undone at restart
                return self._decide(rec, timer, gate_log, suite)
        except NothingToPropose as exc:
            self.store.event("nothing_left", str(exc), iteration=n)
            raise NothingProposed(str(exc)) from None
        except (BenchmarkFailed, ConfigError):
            raise
        except AutoharnessError as exc:
            rec.stage, rec.reason = "error", str(exc)[:500]
            return self._decide(rec, timer, gate_log, suite)
        except git.GitCommandError as exc:
            # A worktree the coding agent broke (deleted .git, corrupted its index) is its failure, not ours.
            rec.stage, rec.reason = "git", f"git failed on the candidate: {exc}"[:500]
            return self._decide(rec, timer, gate_log, suite)
        except Exception as exc:
            # Unknown: recorded as an event (the iteration stays undecided, to be redone) and re-raised.
            self.store.event("crash", f"{type(exc).__name__}: {exc}"[:1000], iteration=n)
            raise

    def _propose(self, wt: Path, prompt: str, n: int, idir: Path, budget_left: float) -> Proposal:
        request = ProposalRequest(
            worktree=wt, prompt=prompt, editable=list(self.cfg.target.editable), timeout_s=self.cfg.backend.timeout_s,
            max_cost_usd=max(min(self.cfg.backend.max_cost_usd, budget_left), 0.01), env=dict(self.cfg.backend.env),
            iteration=n, transcript_path=idir / "transcript.jsonl", sandbox=self._sandbox(wt),
        )
        request.transcript_path.unlink(missing_ok=True)
        return self.agent.propose(request)

    def _sandbox(self, wt: Path) -> Sandbox | None:
        """Hide the records, the benchmark, the config folder and the target's checkout; keep the worktree
        and the target's git database (the worktree's commits live there)."""
        cfg = self.cfg
        hide = [self.ws.root, cfg.config_dir, cfg.target.repo, *self.runner.private_paths(),
                *(resolve_path(cfg, p) for p in cfg.backend.sandbox_hide)]
        return sandbox.build(cfg.backend.sandbox, hide, [wt, Path(self.repo.repo.git_dir)])

    def _gate(self, wt: Path, rec: IterationRecord, best: IterationRecord, splits: Splits, suite: gate.Suite,
              timer: Timer, gate_log: dict, idir: Path) -> None:
        g = self.cfg.gate
        changes = self.repo.stage_all(wt, best.commit_sha)
        diff = self.repo.staged_diff(wt)
        atomic_write(idir / "diff.patch", diff + ("\n" if diff and not diff.endswith("\n") else ""))
        gate_log["changed"] = [f"{c.status} {c.path}" for c in changes]

        def reject(stage: str, reason: str) -> None:
            rec.decision, rec.stage, rec.reason = "rejected", stage, reason
            gate_log["stages"].append({"stage": stage, "passed": False, "reason": reason})

        secrets = secret_values({**os.environ, **self.cfg.backend.env})
        why = guard.check(wt, changes, diff, self.cfg.target.editable, splits.held_out(), secrets)
        if why:
            return reject("guard", why)
        gate_log["stages"].append({"stage": "guard", "passed": True, "reason": f"{len(changes)} files, all editable"})
        chash = rec.code_hash = self.hash_of(wt)

        suite_ids = [t for t in suite.tasks if t in splits.train]
        out = timer.add(self.evaluator.evaluate(wt, chash, suite_ids, "train", label="suite",
                                                stop=gate.suite_stop(len(suite_ids), g.suite_threshold, g.pass_reward)))
        ok, _ = gate.pass_rate(out.results, g.pass_reward)
        rec.evals_passed, rec.evals_total = ok, len(suite_ids)
        rate = ok / len(suite_ids) if suite_ids else 1.0
        if out.stopped_early or rate < g.suite_threshold:
            more = f" (stopped early, {out.skipped} not run)" if out.stopped_early else ""
            return reject("suite", f"suite {ok}/{len(suite_ids)} = {rate:.0%} < {g.suite_threshold:.0%}{more}")
        gate_log["stages"].append({"stage": "suite", "passed": True, "reason": f"suite {ok}/{len(suite_ids)} = {rate:.0%}"})

        best_val = best.val_score or 0.0
        out = timer.add(self.evaluator.evaluate(wt, chash, splits.val, "val", label="val",
                                                stop=gate.val_stop(len(splits.val), best_val, g.min_improvement)))
        if out.stopped_early:
            return reject("val", f"val cannot beat best {best_val:.4f} + {g.min_improvement:g} "
                                 f"(stopped early, {out.skipped}/{len(splits.val)} not run)")
        rec.val_score = out.score
        if rec.val_score is None or rec.val_score <= best_val + g.min_improvement:
            return reject("val", f"val {_fmt(rec.val_score)} does not beat best {best_val:.4f} + {g.min_improvement:g}")
        gate_log["stages"].append({"stage": "val", "passed": True, "reason": f"val {rec.val_score:.4f} > {best_val:.4f}"})

        train = timer.add(self.evaluator.evaluate(wt, chash, splits.train, "train", label="promote"))
        joined = suite.promote(train.results, g.pass_reward, g.promote_after)
        gate_log["stages"].append({"stage": "promote", "passed": True, "reason": f"{len(joined)} tasks join the suite",
                                   "joined": joined})
        rec.decision, rec.stage = "accepted", ""
        rec.reason = f"val {best_val:.4f} -> {rec.val_score:.4f}"

    def _decide(self, rec: IterationRecord, timer: Timer, gate_log: dict, suite: gate.Suite) -> IterationRecord:
        rec.decided_at = time.time()
        rec.duration_s, rec.bench_s, rec.backend_s = timer.total_s, timer.bench_s, timer.backend_s
        rec.tasks_run, rec.tasks_cached, rec.tasks_skipped = timer.ran, timer.cached, timer.skipped
        gate_log.update(decision=rec.decision, stage=rec.stage, reason=rec.reason, val_score=rec.val_score,
                        commit=rec.commit_sha, cost_usd=rec.cost_usd, backend=rec.backend)
        write_json(self.ws.iteration_dir(rec.n) / "gate.json", gate_log)
        kv = {"suite": json.dumps(suite.as_dict(self.cfg.gate.suite_threshold))} if rec.decision == "accepted" else {}
        self.store.record_iteration(rec, kv=kv)
        if rec.decision == "accepted":
            self.repo.tag_best(rec.commit_sha)
        self._write_views()
        return rec

    # -- records the coding agent may read (no val numbers) ---------------------------------------------
    def _attempts(self) -> str:
        rows = [r for r in self.store.iterations() if r.n > 0]
        if not rows:
            return "(none yet)"
        out = []
        for r in rows[-10:]:
            first = r.summary.strip().splitlines()[0][:200] if r.summary.strip() else "(no summary)"
            out.append(f"- Iteration {r.n}: {r.decision} — {_public_reason(r)}. {first}")
        return "\n".join(out)

    def _learnings_text(self) -> str:
        parts = []
        for r in self.store.iterations():
            if r.n == 0:
                continue
            head = f"## Iteration {r.n}: {r.decision}" + (f" ({_public_reason(r)})" if r.decision != "accepted" else "")
            parts.append(f"{head}\n{r.summary.strip() or '(no summary)'}\n")
        return "\n".join(parts)

    def _scrub(self, text: str, splits: Splits) -> str:
        """Last line of defence: no held-out task id may reach a prompt."""
        for task_id in splits.held_out():
            text = guard.id_pattern(task_id).sub("[held-out id]", text)
        return text

    def _write_views(self) -> None:
        self.store.write_tsv(self.ws.results_tsv)
        atomic_write(self.ws.learnings, "# Learnings\n\n" + self._learnings_text())
        write_json(self.ws.suite, json.loads(self.store.get("suite", "{}") or "{}"))

    def _commit_message(self, rec: IterationRecord) -> str:
        cost = "unknown" if rec.cost_usd is None else f"${rec.cost_usd:.4f}"
        summary = "\n".join(rec.summary.splitlines()[:30])
        return (f"autoharness: iteration {rec.n}, val {_fmt(rec.best_before)} -> {_fmt(rec.val_score)}\n\n"
                f"suite {rec.evals_passed}/{rec.evals_total}, backend {rec.backend}"
                f"{f' ({rec.model})' if rec.model else ''}, cost {cost}\n\n{summary}\n\n"
                f"Autoharness-Iteration: {rec.n}\nAutoharness-Config: {rec.config_hash}\n")

    # -- the held-out number for the morning -----------------------------------------------------------
    def score_test(self) -> Outcome | None:
        """Score the test split on the best commit (no traces). Cached per code hash."""
        splits = self.splits()
        best = self.store.best()
        if best is None or not splits.test:
            return None
        with self.traced(), self.repo.worktree(self.worktree_root / "final-test", best.commit_sha) as wt:
            self.phase("final:test", best.n)
            return self.evaluator.evaluate(wt, best.code_hash, splits.test, "test", label="test")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _public_reason(r: IterationRecord) -> str:
    if r.decision == "accepted":
        return "kept: it improved the held-out validation score"
    if r.stage in gate.PUBLIC_REASON:
        return f"rejected by the {r.stage} gate: {gate.PUBLIC_REASON[r.stage]}"
    return f"{r.stage}: {r.reason}" if r.stage else r.reason


def _score_dump(out: Outcome | None) -> dict:
    if out is None:
        return {}
    return {"score": out.score, "n": len(out.results)}
