"""The gate: guard, suite, val, promote, cheapest first. A stage that fails raises `Rejected` with the verdict
so far; a candidate that passes them all comes back as a `Verdict`. The suite and its stop rules live here too.

Two val rules: on a deterministic benchmark (no task flipped in the baseline's A/A check) the exact one, the
candidate's val mean against the best's, with its exact early stop; on a noisy one the paired gate
(orchestrator/paired.py), and a failing suite task is drawn again before it counts as broken.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import guard, paired
from orchestrator.core.config import GateConfig
from orchestrator.core.errors import Rejected, Stage
from orchestrator.core.gittree import CannotTake
from orchestrator.core.words import count
from orchestrator.core.workspace import atomic_write
from orchestrator.evaluate import Outcome, StopRule, Timer
from orchestrator.stats import Noise
from orchestrator.store import FRESH, IterationRecord, Store, StoredResult

if TYPE_CHECKING:
    from orchestrator.context import RunContext
    from orchestrator.gitops import Workdir

# What a prompt may say about a rejection: val numbers stay out of anything the coding agent reads.
PUBLIC_REASON = {
    Stage.VAL: "did not improve the held-out validation score",
}
SUITE_DRAWS = 3                     # a failing suite task on a noisy benchmark: draws before it counts as broken


def noise(ctx: RunContext) -> Noise:
    return Noise.from_dict(json.loads(ctx.store.get("noise", "{}") or "{}"))


def paired_rule(noise: Noise, g: GateConfig) -> bool:
    """The paired gate's benchmark: one the config says is noisy, or one whose A/A check saw a task flip."""
    return g.noise == "noisy" or (g.noise == "auto" and noise.noisy)


def is_noisy(ctx: RunContext) -> bool:
    return paired_rule(noise(ctx), ctx.cfg.gate)


def describe_noise(noise: Noise, g: GateConfig) -> tuple[str, list[str]]:
    """The benchmark's noise in one line (status, doctor, the report), and what the user should know."""
    if not noise.measured:
        rule = "the paired gate (gate.noise = \"noisy\")" if g.noise == "noisy" else "the exact rule"
        return f"not measured (the baseline ran val once); {rule}", []
    flips = f"{len(noise.flips)}/{noise.tasks} val tasks flipped in the A/A check ({noise.runs} runs)"
    warnings = []
    if not paired_rule(noise, g):
        line = f"{flips}: deterministic, the exact rule"
        if noise.noisy:
            warnings.append(f"gate.noise = \"deterministic\" although {len(noise.flips)} val tasks flipped: "
                            "the exact rule will take noise for gains")
        return line, warnings
    mde = noise.resolvable(g.confidence, g.max_samples)
    line = (f"{flips}, flip rate {noise.flip_rate:.1%}, standard error of the val mean {noise.se:.3f}; "
            f"paired gate at {g.confidence:.0%}, resolves gains of about {mde:.3f} or more")
    if g.min_improvement < mde:
        warnings.append(f"min_improvement {g.min_improvement:g} is below the smallest gain the noise lets the "
                        f"gate resolve (about {mde:.3f}): smaller gains are mostly rejected; more trials or "
                        "val tasks lower it")
    return line, warnings


def plan(ctx: RunContext) -> paired.Plan:
    g = ctx.cfg.gate
    return paired.Plan(confidence=g.confidence, min_improvement=g.min_improvement, max_samples=g.max_samples)


@dataclass
class StageResult:
    stage: Stage
    passed: bool
    reason: str
    joined: list[str] | None = None


@dataclass
class Verdict:
    """What the gate learned about a candidate, up to the stage where it stopped."""

    changed: list[str] = field(default_factory=list)
    stages: list[StageResult] = field(default_factory=list)
    code_hash: str = ""
    evals_passed: int = 0
    evals_total: int = 0
    val_score: float | None = None
    tree: str = ""                     # the scored tree: the one committed on acceptance
    flipped: dict[str, list[str]] = field(default_factory=dict)   # val tasks the candidate moved: up, down
    paired: dict | None = None         # the paired gate's numbers (noisy benchmarks)
    replayed: dict | None = None       # {"from", "onto"}: judged on a best another candidate's acceptance made

    def gain(self, best_val: float | None) -> str:
        """An accepted candidate's val against the bar it beat: on a noisy benchmark the best re-measured."""
        if self.paired is None:
            return f"val {best_val or 0.0:.4f} -> {self.val_score or 0.0:.4f}"
        return paired.text(self.paired)

    def passed(self, stage: Stage, reason: str, joined: list[str] | None = None) -> None:
        self.stages.append(StageResult(stage, True, reason, joined))

    def reject(self, stage: Stage, reason: str) -> Rejected:
        self.stages.append(StageResult(stage, False, reason))
        return Rejected(stage, reason, verdict=self)

    def as_dict(self) -> dict:
        stages = [{k: v for k, v in asdict(s).items() if v is not None} for s in self.stages]
        extra = {"paired": self.paired} if self.paired is not None else {}
        extra |= {"replayed": self.replayed} if self.replayed is not None else {}
        return {"changed": self.changed, "tree": self.tree, "stages": stages, "flipped": self.flipped, **extra}


def judge(ctx: RunContext, work: Workdir, best: IterationRecord, suite: Suite, timer: Timer,
          git_changed: list[str], diff_path: Path, replayed: str = "") -> Verdict:
    """Take the coding agent's files as a tree and run the stages in order on it; raise Rejected at the
    first that fails. What is scored is that tree, written out afresh; the commit is the same tree.
    `replayed`: the candidate's change already replayed onto `best` (a tree), judged instead of the files."""
    verdict = Verdict()
    if git_changed:
        raise verdict.reject(Stage.GUARD, "the proposal changed the target's git database (put back): "
                                          + ", ".join(git_changed[:5]))
    base = work.store.tree_of(best.commit_sha)
    try:
        tree, changes = (replayed, work.store.changes(base, replayed)) if replayed else work.take(base)
    except CannotTake as exc:
        raise verdict.reject(Stage.GUARD, str(exc)) from None
    diff = work.store.patch(base, tree)
    # Scrubbed before it is written: a rejected candidate may add a secret (binary files show no content).
    atomic_write(diff_path, ctx.scrubber(diff + ("\n" if diff and not diff.endswith("\n") else "")))
    verdict.changed = [f"{c.status} {c.path}" for c in changes]
    why = guard.check(changes, work.store, ctx.cfg.target.editable, ctx.splits.held_out(), list(ctx.scrubber.secrets))
    if why:
        raise verdict.reject(Stage.GUARD, why)
    verdict.passed(Stage.GUARD, f"{count(len(changes), 'file')}, all editable")
    verdict.tree, verdict.code_hash = tree, ctx.hash_of(work.store, tree)
    scored = work.score(tree)
    noisy = is_noisy(ctx)
    _suite(ctx, scored, suite, timer, verdict, noisy)
    if noisy:
        _val_paired(ctx, scored, work.score(best.commit_sha, "incumbent"), best, timer, verdict)
    else:
        _val(ctx, scored, best, timer, verdict)
    train = timer.add(ctx.evaluator.evaluate(scored, verdict.code_hash, ctx.splits.train, "train", label="promote",
                                             purpose="gate"))
    g = ctx.cfg.gate
    joined = suite.promote(train.results, g.pass_reward, g.promote_after)
    verdict.passed(Stage.PROMOTE, f"{len(joined)} " + ("task joins" if len(joined) == 1 else "tasks join")
                   + " the suite", joined)
    return verdict


def _suite(ctx: RunContext, wt: Path, suite: Suite, timer: Timer, verdict: Verdict, noisy: bool) -> None:
    g = ctx.cfg.gate
    ids = [t for t in suite.tasks if t in ctx.splits.train]
    stop = None if noisy else suite_stop(len(ids), g.suite_threshold, g.pass_reward)
    out = timer.add(ctx.evaluator.evaluate(wt, verdict.code_hash, ids, "train", label="suite", stop=stop,
                                           purpose="gate"))
    ok, draws = _suite_passes(out, ids, g.pass_reward), 1
    while noisy and draws < SUITE_DRAWS and ok < len(ids) and len(ids) and ok / len(ids) < g.suite_threshold:
        # A flaky task is not a broken one: what failed is drawn again, and counts once it passes.
        draws += 1
        failing = [t for t in ids if not any(passed(r, g.pass_reward) for r in out.samples.get(t, ()))]
        again = timer.add(ctx.evaluator.evaluate(wt, verdict.code_hash, failing, "train", label="suite: again",
                                                 draws=draws, purpose="gate"))
        out.samples.update(again.samples)
        ok = _suite_passes(out, ids, g.pass_reward)
    verdict.evals_passed, verdict.evals_total = ok, len(ids)
    rate = ok / len(ids) if ids else 1.0
    if out.stopped_early or rate < g.suite_threshold:
        more = f" (stopped early, {out.skipped} not run)" if out.stopped_early else ""
        again = f"; each failing task drawn {draws} times" if draws > 1 else ""
        raise verdict.reject(Stage.SUITE, f"suite {ok}/{len(ids)} = {rate:.0%} < {g.suite_threshold:.0%}{more}{again}")
    verdict.passed(Stage.SUITE, f"suite {ok}/{len(ids)} = {rate:.0%}")


def _suite_passes(out: Outcome, ids: list[str], pass_reward: float) -> int:
    return sum(any(passed(r, pass_reward) for r in out.samples.get(t, ())) for t in ids)


def _val(ctx: RunContext, wt: Path, best: IterationRecord, timer: Timer, verdict: Verdict) -> None:
    g, val = ctx.cfg.gate, ctx.splits.val
    best_val = best.val_score or 0.0
    out = timer.add(ctx.evaluator.evaluate(wt, verdict.code_hash, val, "val", label="val", purpose="gate",
                                           stop=val_stop(len(val), best_val, g.min_improvement)))
    if out.stopped_early:
        raise verdict.reject(Stage.VAL, f"val cannot beat best {best_val:.4f} + {g.min_improvement:g} "
                                        f"(stopped early, {out.skipped}/{len(val)} not run)")
    verdict.val_score = out.score
    verdict.flipped = _moved(out, ctx.store.cached_results(best.code_hash, val))
    if out.score is None or out.score <= best_val + g.min_improvement:
        shown = "n/a" if out.score is None else f"{out.score:.4f}"
        raise verdict.reject(Stage.VAL, f"val {shown} does not beat best {best_val:.4f} + {g.min_improvement:g}")
    verdict.passed(Stage.VAL, f"val {out.score:.4f} > {best_val:.4f}")


def _moved(out: Outcome, before: dict[str, StoredResult]) -> dict[str, list[str]]:
    """The val tasks a deterministic candidate turned from failing to passing and back."""
    up, down = paired.Comparison(pairs=paired.single_pairs(
        {t: r.reward for t, r in out.results.items()}, {t: r.reward for t, r in before.items()})).flipped()
    return {"up": up, "down": down}


def _val_paired(ctx: RunContext, wt: Path, incumbent_dir: Path, best: IterationRecord, timer: Timer,
                verdict: Verdict) -> None:
    """The candidate against fresh draws of the best, paired by task (orchestrator/paired.py)."""
    val, evaluate, g = ctx.splits.val, ctx.evaluator.evaluate, ctx.cfg.gate
    if verdict.code_hash == best.code_hash:
        raise verdict.reject(Stage.VAL, "the editable files are those of the best: nothing to compare")

    def incumbent(tasks: list[str], count: int) -> paired.Rewards:
        return timer.add(evaluate(incumbent_dir, best.code_hash, tasks, "val", label="val: best re-measured",
                                  draws=count, purpose="incumbent", eligible=FRESH)).rewards()

    def candidate(tasks: list[str], count: int, stop: paired.Stop) -> tuple[paired.Rewards, bool]:
        out = timer.add(evaluate(wt, verdict.code_hash, tasks, "val", label=f"val (draw {count})", draws=count,
                                 purpose="gate", stop=lambda o, todo: stop(o.rewards(), todo)))
        return out.rewards(), out.stopped_early

    got = paired.compare(val, incumbent, candidate, plan(ctx))
    up, down = got.flipped()
    verdict.val_score, verdict.paired, verdict.flipped = got.candidate_mean, got.as_dict(), {"up": up, "down": down}
    numbers = got.text()
    if not got.accepted:
        raise verdict.reject(Stage.VAL, f"{numbers}, not above {g.min_improvement:g}: {got.reason}")
    verdict.passed(Stage.VAL, f"{numbers} ({got.reason})")


def passed(res: StoredResult, pass_reward: float) -> bool:
    return res.reward is not None and res.reward >= pass_reward


@dataclass
class Suite:
    tasks: list[str] = field(default_factory=list)
    streaks: dict[str, int] = field(default_factory=dict)

    def as_dict(self, threshold: float) -> dict:
        return {"tasks": sorted(self.tasks), "threshold": threshold, "streaks": dict(sorted(self.streaks.items()))}

    def dump(self, threshold: float) -> str:
        return json.dumps(self.as_dict(threshold))

    @classmethod
    def load(cls, store: Store) -> Suite:
        data = json.loads(store.get("suite", "{}") or "{}")
        return cls(list(data.get("tasks", [])), dict(data.get("streaks", {})))

    @classmethod
    def initial(cls, train: dict[str, StoredResult], pass_reward: float) -> Suite:
        """The train tasks that pass at baseline."""
        ok = sorted(t for t, r in train.items() if passed(r, pass_reward))
        return cls(ok, {t: 1 for t in ok})

    def promote(self, train: dict[str, StoredResult], pass_reward: float, promote_after: int) -> list[str]:
        """Count consecutive passes of the accepted code; return the tasks that join the suite now."""
        joined = []
        for task_id, res in sorted(train.items()):
            self.streaks[task_id] = self.streaks.get(task_id, 0) + 1 if passed(res, pass_reward) else 0
            if task_id not in self.tasks and self.streaks[task_id] >= promote_after:
                self.tasks.append(task_id)
                joined.append(task_id)
        self.tasks.sort()
        return joined


def pass_rate(results: dict[str, StoredResult], pass_reward: float) -> tuple[int, int]:
    scored = [r for r in results.values() if r.reward is not None]
    return sum(passed(r, pass_reward) for r in scored), len(scored)


def suite_stop(total: int, threshold: float, pass_reward: float) -> StopRule:
    """Stop once the suite can no longer reach the threshold even if every remaining task passes."""
    seen, ok = [0], [0]

    def stop(out: Outcome, todo: Collection[str]) -> bool:
        ok[0] += sum(passed(r, pass_reward) for r in out.landed[seen[0]:])  # only what is new: linear
        seen[0] = len(out.landed)
        return total > 0 and (ok[0] + len(todo)) / total < threshold
    return stop


def val_stop(total: int, best: float, min_improvement: float) -> StopRule:
    """Stop once the val mean cannot beat `best + min_improvement` even if every remaining task scores 1."""
    seen, got, dropped = [0], [0.0], [0]

    def stop(out: Outcome, todo: Collection[str]) -> bool:
        for r in out.landed[seen[0]:]:  # only what is new: linear
            if r.reward is None:
                dropped[0] += 1
            else:
                got[0] += r.reward
        seen[0] = len(out.landed)
        denom = total - dropped[0]
        return denom > 0 and (got[0] + len(todo)) / denom <= best + min_improvement
    return stop
