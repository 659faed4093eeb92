"""The val gate on a noisy benchmark: the candidate against the incumbent, paired by task, in rounds.

Round r gives every task still unsettled an r-th pair of draws, one of the incumbent (only draws made after
it was chosen count, so the lucky draw that chose it never sets the bar) and one of the candidate. Which of
the two is drawn first is a coin toss per task and round (a seed recorded in gate.json), so a benchmark whose
flakiness follows the clock (rate limits, a periodic fault) favours neither side. A task is settled when all
its draws so far agree (it cannot tell the two apart); one that varies or differs is drawn again, up to
`max_samples` pairs. Which tasks go on depends only on the values a pair holds, not on which side holds them,
so the sign-flip test (orchestrator/stats.py) stays exact under "no difference".

Assumed: a task's draws are independent and its pass rate does not drift over the night. The incumbent's
fresh draws are shared by the candidates after it (that is what keeps a decision near one val run), so a
drift between two candidates' gates could favour the later one; `status` shows the flip rates to watch.

The decision: accept when the one-sided test rejects "the candidate is no better than the incumbent by more
than `min_improvement`". Of the error rate 1 - `confidence`, a tenth is shared among the looks before the
last round (an early accept needs overwhelming evidence) and the rest is the last look's; by the union bound
the chance of accepting a candidate that is no better is at most 1 - `confidence` however the looks fall.
A candidate is rejected early, mid-round included, once "it reaches the bar" has a p-value of at most
`futility` (0.25), the round's missing draws counted as no change: a rejection can only lower the
false-accept rate, and this one trades a little power for fewer runs (tuned on `make bench`'s simulation).

The same procedure serves the real gate (draws through the evaluator) and `make bench`'s simulation (draws
from known probabilities): both pass two functions that return the draws they were asked for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator import stats

Rewards = Mapping[str, Sequence[float | None]]             # task -> rewards in draw order (None: dropped)
# incumbent(tasks, count): make sure each task has `count` eligible draws; return all of them.
Incumbent = Callable[[list[str], int], Rewards]
# candidate(tasks, count, stop): the same, asking `stop(draws_so_far, tasks_still_to_run)` between chunks;
# returns the draws and whether it stopped.
Stop = Callable[[Rewards, list[str]], bool]
Candidate = Callable[[list[str], int, Stop], tuple[Rewards, bool]]

INTERIM_SHARE = 0.1


@dataclass
class Plan:
    confidence: float = 0.95
    min_improvement: float = 0.0
    max_samples: int = 6
    futility: float = 0.25          # reject early when "it reaches the bar" has a p-value this low
    seed: int | None = None         # of the draw-order coins; None: a fresh one

    def alpha(self, last: bool) -> float:
        """The error rate spent at a look: the interim looks share a tenth, the last look has the rest."""
        total, looks = 1.0 - self.confidence, max(self.max_samples - 1, 0)
        interim = total * INTERIM_SHARE / looks if looks else 0.0
        return total - interim * looks if last else interim


@dataclass
class Comparison:
    accepted: bool = False
    reason: str = ""
    rounds: int = 0
    pairs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    diff: float = 0.0                   # mean paired difference, candidate - incumbent
    lower: float = 0.0                  # its lower confidence bound at the level the decision used
    p: float = 1.0
    stopped_early: bool = False
    candidate_mean: float | None = None
    incumbent_mean: float | None = None
    confidence: float = 0.95
    seed: int = 0

    def text(self) -> str:
        """The numbers a decision rests on, for its reason and the commit message."""
        return text(self.as_dict())

    def flipped(self) -> tuple[list[str], list[str]]:
        """Tasks whose mean reward moved by half or more: (up, down)."""
        up, down = [], []
        for task, ps in sorted(self.pairs.items()):
            d = sum(c - b for c, b in ps) / len(ps) if ps else 0.0
            if d >= 0.5:
                up.append(task)
            elif d <= -0.5:
                down.append(task)
        return up, down

    def as_dict(self) -> dict:
        up, down = self.flipped()
        return {"accepted": self.accepted, "reason": self.reason, "rounds": self.rounds, "diff": self.diff,
                "lower": self.lower, "p": self.p, "stopped_early": self.stopped_early,
                "pairs": sum(len(p) for p in self.pairs.values()), "tasks": len(self.pairs),
                "candidate_mean": self.candidate_mean, "incumbent_mean": self.incumbent_mean,
                "confidence": self.confidence, "seed": self.seed, "flipped_up": up, "flipped_down": down}


def text(p: Mapping) -> str:
    """A comparison's numbers (as recorded in gate.json) in one phrase."""
    return (f"val {p['candidate_mean'] or 0.0:.4f} vs best re-measured {p['incumbent_mean'] or 0.0:.4f}: "
            f"{p['diff']:+.4f}, lower bound {p['lower']:+.4f} at {p['confidence']:.0%}")


def pair_up(cand: Rewards, inc: Rewards, extra: Mapping[str, int] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Draw j of the candidate with draw j of the incumbent, per task. A draw one side dropped (an infra error)
    while the other scored counts as 0 for the side that dropped it, so crashing on the tasks it would fail
    buys a candidate nothing; a pair both sides dropped is left out. `extra`: tasks whose draw number
    `extra[t]` is still to come, counted as no change (the incumbent's draw)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for task in set(cand) | set(extra or {}):
        c, b = list(cand.get(task, ())), list(inc.get(task, ()))
        if extra and task in extra:
            c = c[: extra[task]] + b[extra[task]:extra[task] + 1]
        out[task] = [(x or 0.0, y or 0.0) for x, y in zip(c, b, strict=False) if x is not None or y is not None]
    return {t: ps for t, ps in out.items() if ps}


def single_pairs(after: Mapping[str, float | None], before: Mapping[str, float | None]) -> dict[str, list[tuple[float, float]]]:
    """One draw of each side per task (a deterministic benchmark, the test split), paired by task."""
    return {t: [(r, before[t])] for t, r in after.items() if r is not None and before.get(t) is not None}


def unsettled(pairs: Sequence[tuple[float, float]]) -> bool:
    return len({round(v, 9) for pair in pairs for v in pair}) > 1


def compare(tasks: list[str], incumbent: Incumbent, candidate: Candidate, plan: Plan, *,
            bounds: bool = True) -> Comparison:
    """Decide; `bounds=False` leaves out the confidence bound (only shown, never decided on)."""
    m = plan.min_improvement
    inc: dict[str, Sequence[float | None]] = {}
    cand: dict[str, Sequence[float | None]] = {}
    seed = random.SystemRandom().randrange(1 << 31) if plan.seed is None else plan.seed
    coin = random.Random(seed)
    active, result = list(tasks), Comparison(confidence=plan.confidence, seed=seed)

    def hopeless(got: Rewards, todo: list[str], r: int) -> bool:
        optimistic = pair_up({**cand, **got}, inc, {t: r - 1 for t in todo})
        return bool(optimistic) and stats.p_value(optimistic, m, greater=False) <= plan.futility

    for r in range(1, plan.max_samples + 1):
        result.rounds = r
        before = [t for t in active if coin.random() < 0.5]   # the rest: the incumbent's draw comes after
        inc.update(incumbent(before, r))
        got, stopped = candidate(active, r, lambda g, todo, r=r: hopeless(g, todo, r))
        cand.update(got)
        if not stopped:
            inc.update(incumbent(active, r))
        result.pairs = pair_up(cand, inc)
        if stopped:
            result.stopped_early = True
            result.reason = f"unlikely to beat the best by more than {m:g} (stopped early in round {r})"
            break
        next_active = [t for t in tasks if unsettled(result.pairs.get(t, ()))]
        last = r == plan.max_samples or not next_active
        level = plan.alpha(last)
        result.p = stats.p_value(result.pairs, m)
        if result.p <= level:
            result.accepted = True
            result.lower = stats.lower_bound(result.pairs, 1.0 - level) if bounds else m
            result.stopped_early = not last
            result.reason = f"p = {result.p:.4f} <= {level:.4f} in round {r}"
            break
        if last:
            result.reason = f"p = {result.p:.4f} > {level:.4f} after {r} round{'s' if r > 1 else ''}"
            break
        if stats.p_value(result.pairs, m, greater=False) <= plan.futility:
            result.stopped_early = True
            result.reason = f"unlikely to beat the best by more than {m:g} (stopped early after round {r})"
            break
        active = next_active
    result.diff = stats.mean_difference(result.pairs)
    if not result.accepted and bounds and result.pairs:
        result.lower = stats.lower_bound(result.pairs, plan.confidence)
    # The means of the paired draws, so that their difference is the recorded one.
    result.candidate_mean = stats.mean_of_means({t: [c for c, _ in ps] for t, ps in result.pairs.items()})
    result.incumbent_mean = stats.mean_of_means({t: [b for _, b in ps] for t, ps in result.pairs.items()})
    return result
