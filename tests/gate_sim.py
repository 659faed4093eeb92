"""A noisy benchmark with known ground truth, and three gate rules run side by side on the same candidates.

The benchmark: 40 val tasks, each passing with a known probability that depends on the code; most tasks are
near-deterministic (0.02 or 0.98), some are flaky (0.2 to 0.8). The stream: 25 candidates, each a change of
the current best with a known true effect: real fixes (3 to 5 failing tasks made to pass), small fixes (1
or 2), neutral changes, small regressions (1 or 2 passing tasks broken, or the flaky tasks made worse).

The rules: auto-harness's (one run of the candidate, accept on `>= best`), the gate before noise-awareness
(one run, accept on `> best`, the best's own lucky draw as the bar, with its early stop), and the paired gate
of `orchestrator.paired` (the real procedure, with draws from the known probabilities).

    python tests/gate_sim.py [seeds]
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import paired  # noqa: E402

N_VAL, STREAM, CHUNK = 40, 25, 4
Probs = list[float]


def world(rng: random.Random) -> Probs:
    probs = []
    for _ in range(N_VAL):
        if rng.random() < 0.25:
            probs.append(rng.uniform(0.2, 0.8))
        else:
            probs.append(0.98 if rng.random() < 0.5 else 0.02)
    return probs


@dataclass
class Change:
    kind: str
    seed: int

    def apply(self, p: Probs) -> Probs:
        """The change made to a code version whose tasks pass with `p`."""
        rng, q = random.Random(self.seed), list(p)
        failing = [i for i, x in enumerate(p) if x < 0.5]
        passing = [i for i, x in enumerate(p) if x > 0.9]
        flaky = [i for i, x in enumerate(p) if 0.1 < x < 0.9]
        if self.kind in ("fix", "small fix"):
            k = rng.randint(3, 5) if self.kind == "fix" else rng.randint(1, 2)
            for i in rng.sample(failing, min(k, len(failing))):
                q[i] = 0.97
        elif self.kind == "regression" and passing and rng.random() < 0.6:
            for i in rng.sample(passing, min(rng.randint(1, 2), len(passing))):
                q[i] = 0.03
        elif self.kind == "regression":
            for i in flaky:
                q[i] = max(0.0, q[i] - 0.15)
        return q


def stream(rng: random.Random) -> list[Change]:
    kinds = ["fix"] * 25 + ["small fix"] * 10 + ["neutral"] * 40 + ["regression"] * 25
    return [Change(rng.choice(kinds), rng.randrange(1 << 30)) for _ in range(STREAM)]


@dataclass
class Tally:
    name: str
    worse: int = 0              # candidates whose true effect is <= 0
    false_accepts: int = 0
    fixes: int = 0              # candidates whose true effect is >= 3 tasks
    fixes_accepted: int = 0
    final: list[float] = field(default_factory=list)
    runs: int = 0
    incumbent_runs: int = 0
    decisions: int = 0

    def row(self) -> str:
        fa = self.false_accepts / max(self.worse, 1)
        fx = self.fixes_accepted / max(self.fixes, 1)
        final = sum(self.final) / max(len(self.final), 1)
        return (f"{self.name:<28} {fa:>13.1%} {fx:>14.1%} {final:>16.3f} "
                f"{self.runs / max(self.decisions, 1):>16.1f}")


Rule = Callable[[Probs, Probs, random.Random, "State"], tuple[bool, int]]


@dataclass
class State:
    best_draw: float = 0.0                                    # the single-run rules' bar: the best's own draw
    incumbent_runs: int = 0                                   # the paired rule's draws of the best
    fresh: dict[int, list[float]] = field(default_factory=dict)  # the paired rule: incumbent draws after choice


def draw(p: float, rng: random.Random) -> float:
    return 1.0 if rng.random() < p else 0.0


def one_run(cand: Probs, rng: random.Random, stop: Callable[[float, int], bool] | None = None) -> tuple[float, int]:
    """A single run of the candidate's val split in chunks; `stop(sum_so_far, remaining)` ends it early."""
    total, runs = 0.0, 0
    for start in range(0, N_VAL, CHUNK):
        if stop and stop(total, N_VAL - start):
            return -1.0, runs
        for p in cand[start:start + CHUNK]:
            total, runs = total + draw(p, rng), runs + 1
    return total / N_VAL, runs


def autoharness_rule(best: Probs, cand: Probs, rng: random.Random, st: State) -> tuple[bool, int]:
    score, runs = one_run(cand, rng)
    if score >= st.best_draw:
        st.best_draw = score
        return True, runs
    return False, runs


def previous_rule(best: Probs, cand: Probs, rng: random.Random, st: State) -> tuple[bool, int]:
    score, runs = one_run(cand, rng, stop=lambda got, left: (got + left) / N_VAL <= st.best_draw)
    if score > st.best_draw:
        st.best_draw = score
        return True, runs
    return False, runs


def paired_rule(best: Probs, cand: Probs, rng: random.Random, st: State, plan: paired.Plan) -> tuple[bool, int]:
    runs = [0]
    mine: dict[int, list[float]] = {}
    tasks = list(range(N_VAL))

    def incumbent(ids: list[int], count: int) -> dict[int, list[float]]:
        for t in ids:
            while len(st.fresh.setdefault(t, [])) < count:
                st.fresh[t].append(draw(best[t], rng))
                runs[0] += 1
                st.incumbent_runs += 1
        return {t: st.fresh[t] for t in ids}

    def candidate(ids: list[int], count: int, stop: Callable) -> tuple[dict[int, list[float]], bool]:
        todo = [t for t in ids if len(mine.get(t, ())) < count]
        while todo:
            if stop({t: mine[t] for t in ids if t in mine}, todo):
                return {t: mine[t] for t in ids if t in mine}, True
            for t in todo[:CHUNK]:
                mine.setdefault(t, []).append(draw(cand[t], rng))
                runs[0] += 1
            todo = todo[CHUNK:]
        return {t: mine[t] for t in ids}, False

    verdict = paired.compare(tasks, incumbent, candidate, replace(plan, seed=rng.randrange(1 << 30)), bounds=False)
    if verdict.accepted:
        st.fresh = {}  # the candidate's own draws chose it: the next comparisons draw it afresh
    return verdict.accepted, runs[0]


def simulate(seeds: int, plan: paired.Plan | None = None) -> list[Tally]:
    plan = plan or paired.Plan()
    rules: list[tuple[str, Rule]] = [
        ("auto-harness (>= best, 1 run)", autoharness_rule),
        ("previous gate (> best, 1 run)", previous_rule),
        ("paired gate", lambda b, c, r, s: paired_rule(b, c, r, s, plan)),
    ]
    tallies = [Tally(name) for name, _ in rules]
    for seed in range(seeds):
        rng = random.Random(seed)
        base, changes = world(rng), stream(rng)
        for (_, rule), tally in zip(rules, tallies, strict=True):
            draws = random.Random(seed * 7919 + 1)
            best, st = base, State()
            # Baseline: one val run for the single-run rules, the A/A check's two for the paired one.
            st.best_draw = sum(draw(p, draws) for p in base) / N_VAL
            if rule is not rules[0][1] and rule is not rules[1][1]:
                st.fresh = {t: [draw(base[t], draws), draw(base[t], draws)] for t in range(N_VAL)}
            for change in changes:
                cand = change.apply(best)
                effect = sum(cand) - sum(best)
                accepted, runs = rule(best, cand, draws, st)
                tally.runs += runs
                tally.decisions += 1
                if effect <= 1e-9:
                    tally.worse += 1
                    tally.false_accepts += accepted
                if effect >= 3 * 0.95 - 1e-9:
                    tally.fixes += 1
                    tally.fixes_accepted += accepted
                if accepted:
                    best = cand
            tally.final.append(sum(best) / N_VAL)
            tally.incumbent_runs += st.incumbent_runs
    return tallies


HEADER = f"{'rule':<28} {'false accepts':>13} {'fixes accepted':>14} {'final true score':>16} {'runs per decision':>16}"


def main(seeds: int = 200) -> list[Tally]:
    tallies = simulate(seeds)
    print(f"\nnoisy benchmark simulation: {seeds} seeds x {STREAM} candidates, {N_VAL} val tasks, about a quarter "
          "of them flaky\n  (false accepts: of the candidates whose true effect is <= 0; fixes: of those that fix "
          "3 or more failing tasks)")
    print("  " + HEADER)
    for t in tallies:
        print("  " + t.row())
    auto, prev, new = tallies
    fa, fx = new.false_accepts / max(new.worse, 1), new.fixes_accepted / max(new.fixes, 1)
    final = [sum(t.final) / max(len(t.final), 1) for t in tallies]
    print(f"  paired gate: false accepts {fa:.1%} (at most 5%: {'yes' if fa <= 0.05 else 'NO'}), fixes accepted "
          f"{fx:.1%} (at least 80%: {'yes' if fx >= 0.8 else 'NO'}), final true score above both others: "
          f"{'yes' if final[2] > max(final[:2]) else 'NO'}; task runs per decision "
          f"{new.runs / prev.runs:.2f}x the previous gate's, {new.runs / auto.runs:.2f}x auto-harness's; of them "
          f"{new.incumbent_runs / max(new.decisions, 1):.1f} re-measure the best (shared by the candidates after "
          "an acceptance)")
    return tallies


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
