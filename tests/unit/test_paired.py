"""Unit tests of orchestrator/paired.py: the error-rate plan, pairing draws, and the round-by-round gate
(`compare`) driven by scripted draw functions, as the real gate and tests/gate_sim.py drive it."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from orchestrator import paired
from orchestrator.paired import Comparison, Plan, compare, pair_up, single_pairs, unsettled

Draw = Callable[[str, int], "float | None"]     # (task, draw index) -> reward


class Scripted:
    """Both sides of a comparison as the evaluator serves them: a call makes sure each task asked for has
    `count` draws (drawing only what is missing, the candidate in chunks, asking `stop` between chunks when
    `honour_stop`) and returns all of them. Every call and every draw is logged."""

    def __init__(self, inc: Draw, cand: Draw, *, chunk: int = 4, honour_stop: bool = True):
        self.inc_fn, self.cand_fn, self.chunk, self.honour_stop = inc, cand, chunk, honour_stop
        self.inc: dict[str, list[float | None]] = {}
        self.cand: dict[str, list[float | None]] = {}
        self.calls: list[tuple[str, list[str], int]] = []
        self.drawn: Counter[tuple[str, str]] = Counter()        # (side, task) -> draws made

    def incumbent(self, tasks: list[str], count: int) -> dict[str, list[float | None]]:
        self.calls.append(("incumbent", list(tasks), count))
        for t in tasks:
            have = self.inc.setdefault(t, [])
            while len(have) < count:
                have.append(self.inc_fn(t, len(have)))
                self.drawn["incumbent", t] += 1
        return {t: list(self.inc[t]) for t in tasks}

    def candidate(self, tasks: list[str], count: int, stop: paired.Stop) -> tuple[dict, bool]:
        self.calls.append(("candidate", list(tasks), count))

        def mine() -> dict[str, list[float | None]]:
            return {t: list(self.cand[t]) for t in tasks if t in self.cand}

        todo = [t for t in tasks if len(self.cand.get(t, ())) < count]
        while todo:
            if self.honour_stop and stop(mine(), todo):
                return mine(), True
            for t in todo[:self.chunk]:
                self.cand.setdefault(t, []).append(self.cand_fn(t, len(self.cand.get(t, ()))))
                self.drawn["candidate", t] += 1
            todo = todo[self.chunk:]
        return mine(), False

    def run(self, tasks: list[str], plan: Plan | None = None, **kw) -> Comparison:
        return compare(tasks, self.incumbent, self.candidate, plan or Plan(), **kw)


TASKS = [f"t{i:02d}" for i in range(40)]


def fixed(values: dict[str, float]) -> Draw:
    """A deterministic code version: every draw of a task gives the same reward."""
    return lambda task, _j: values[task]


# -- the plan -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("confidence", "max_samples"), [(0.95, 6), (0.9, 3), (0.99, 2), (0.95, 10)])
def test_alpha_spends_the_error_rate_over_the_looks(confidence, max_samples):
    plan = Plan(confidence=confidence, max_samples=max_samples)
    total = 1 - confidence
    looks = max_samples - 1
    assert plan.alpha(False) * looks + plan.alpha(True) == pytest.approx(total)
    assert plan.alpha(False) * looks == pytest.approx(total * paired.INTERIM_SHARE)
    assert plan.alpha(True) == pytest.approx(total * (1 - paired.INTERIM_SHARE))
    assert plan.alpha(False) < plan.alpha(True)


def test_alpha_default_values_and_single_look():
    assert Plan().alpha(False) == pytest.approx(0.001)      # 0.05 / 10 shared by 5 interim looks
    assert Plan().alpha(True) == pytest.approx(0.045)
    one = Plan(max_samples=1)
    assert one.alpha(True) == pytest.approx(0.05)
    assert one.alpha(False) == 0.0


# -- pairing ------------------------------------------------------------------------------------------------

def test_pair_up_pairs_draw_j_with_draw_j():
    cand = {"a": [1.0, 0.0, 1.0], "b": [0.5]}
    inc = {"a": [0.0, 0.0], "b": [0.25, 1.0], "c": [1.0]}
    # a: only two incumbent draws, so two pairs; c: no candidate draws, no pairs.
    assert pair_up(cand, inc) == {"a": [(1.0, 0.0), (0.0, 0.0)], "b": [(0.5, 0.25)]}


def test_pair_up_counts_a_one_sided_drop_as_zero_for_the_side_that_dropped():
    cand = {"a": [None, 1.0, 1.0], "b": [None], "c": [1.0], "d": [None]}
    inc = {"a": [1.0, None, 0.0], "b": [1.0], "c": [None], "d": [None]}
    # A candidate that crashes on what it would fail gains nothing: its dropped draw is a 0 against the
    # incumbent's score (and the other way round); only a pair both sides dropped is left out.
    assert pair_up(cand, inc) == {"a": [(0.0, 1.0), (1.0, 0.0), (1.0, 0.0)], "b": [(0.0, 1.0)], "c": [(1.0, 0.0)]}


def test_pair_up_extra_counts_pending_draws_as_no_change():
    inc = {"a": [0.0, 1.0, 0.0], "b": [1.0, 1.0], "c": [0.0]}
    cand = {"a": [1.0, 1.0, 1.0], "b": [0.0]}
    # a: draw 1 still to come: the candidate's draw 0 is kept, draw 1 is the incumbent's own (1.0); its
    # already-made draw 2 is not counted. b: draw 1 to come, (1, 1). c: nothing drawn yet, (0, 0).
    got = pair_up(cand, inc, {"a": 1, "b": 1, "c": 0})
    assert got == {"a": [(1.0, 0.0), (1.0, 1.0)], "b": [(0.0, 1.0), (1.0, 1.0)], "c": [(0.0, 0.0)]}
    # Tasks not in `extra` are paired as they are.
    assert pair_up(cand, inc, {"c": 0})["a"] == [(1.0, 0.0), (1.0, 1.0), (1.0, 0.0)]


def test_single_pairs():
    after = {"a": 1.0, "b": None, "c": 0.0, "d": 1.0}
    before = {"a": 0.0, "b": 1.0, "c": None}
    assert single_pairs(after, before) == {"a": [(1.0, 0.0)]}


def test_unsettled():
    assert not unsettled([])
    assert not unsettled([(1.0, 1.0)])
    assert not unsettled([(0.0, 0.0), (0.0, 0.0)])
    assert not unsettled([(0.5, 0.5 + 1e-12)])
    assert unsettled([(1.0, 0.0)])
    assert unsettled([(0.0, 1.0)])
    assert unsettled([(1.0, 1.0), (0.0, 0.0)])        # each pair agrees, but the task varies


# -- compare, scripted --------------------------------------------------------------------------------------

FIXED4 = {"t03", "t11", "t22", "t37"}


def test_a_deterministic_fix_of_four_tasks_is_accepted_and_settled_tasks_are_drawn_once():
    base = {t: float(i % 2) for i, t in enumerate(TASKS)}
    base.update({t: 0.0 for t in FIXED4})
    better = base | {t: 1.0 for t in FIXED4}
    sim = Scripted(fixed(base), fixed(better))
    got = sim.run(TASKS)
    assert got.accepted, got.reason
    # Round 1: 4 pairs of weight 1/40, p = 1/16; round 2: 8 pairs, 1/256; round 3: 12 pairs, p = 1/4096 is
    # below the interim alpha 0.001. The fixed tasks still differ, so it stopped before the last look.
    assert got.rounds == 3
    assert got.p == pytest.approx(1 / 4096)
    assert got.stopped_early
    assert got.diff == pytest.approx(4 / 40)
    assert got.lower > 0
    for t in TASKS:
        want = 3 if t in FIXED4 else 1
        assert sim.drawn["incumbent", t] == want, t
        assert sim.drawn["candidate", t] == want, t
    assert got.flipped() == (sorted(FIXED4), [])
    assert got.candidate_mean == pytest.approx(sum(better.values()) / 40)
    assert got.incumbent_mean == pytest.approx(sum(base.values()) / 40)


def test_identical_versions_are_rejected_after_one_round():
    base = {t: float(i % 3 == 0) for i, t in enumerate(TASKS)}
    sim = Scripted(fixed(base), fixed(base))
    got = sim.run(TASKS)
    assert not got.accepted
    assert got.rounds == 1 and not got.stopped_early
    assert got.p == 1.0 and got.diff == 0.0
    assert got.flipped() == ([], [])
    assert [c[0] for c in sim.calls] == ["incumbent", "candidate", "incumbent"]


def test_identical_flaky_draws_are_rejected():
    # Both sides draw the same value for draw j of a task (a flaky benchmark, same code, same luck).
    def same(task: str, j: int) -> float:
        return float(random.Random(f"{task}/{j}").random() < 0.5)
    got = Scripted(same, same).run(TASKS, bounds=False)
    assert not got.accepted
    assert got.rounds == 1 and got.p == 1.0


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("honour_stop", [True, False])
def test_a_clear_regression_stops_early(honour_stop, seed):
    base = {t: 1.0 for t in TASKS}
    worse = base | {t: 0.0 for t in TASKS[:10]}
    sim = Scripted(fixed(base), fixed(worse), honour_stop=honour_stop)
    got = sim.run(TASKS, Plan(max_samples=6, seed=seed))
    assert not got.accepted
    assert got.stopped_early
    assert got.rounds == 1 < 6
    assert got.diff < 0
    if honour_stop:
        # Mid-round: a regression counts once the incumbent's draw of its task is in, which the draw-order coin
        # puts before the candidate's for about half the tasks. With two counted (the rest of the round counted
        # as no change) "it reaches the bar" has p = 1/4 <= 0.25, so the candidate stops at the first chunk
        # boundary after the second regression whose incumbent was drawn first.
        coin = random.Random(got.seed)
        first = {t for t in TASKS if coin.random() < 0.5}
        counted, expected = 0, len(TASKS)
        for start in range(0, len(TASKS), 4):
            counted += sum(t in first for t in TASKS[:10][start:start + 4])
            if counted >= 2:
                expected = start + 4
                break
        assert expected < len(TASKS) and "in round 1" in got.reason    # 1 - 11/1024 of the seeds
        assert sum(n for (side, _), n in sim.drawn.items() if side == "candidate") == expected
    else:
        # After the round: 10 regressions, p = 1/1024.
        assert "after round 1" in got.reason
    assert set(got.flipped()[1]) <= set(TASKS[:10]) and got.flipped()[0] == []


def test_each_round_draws_the_incumbent_around_the_candidate_and_only_for_active_tasks():
    rng = random.Random(11)
    probs = {t: (0.5 if i < 10 else float(i % 2)) for i, t in enumerate(TASKS)}

    def draw(task: str, _j: int) -> float:
        return float(rng.random() < probs[task])
    sim = Scripted(draw, draw)
    got = sim.run(TASKS, Plan(futility=0.0, seed=5), bounds=False)  # no futility stop: every round played out
    assert len(sim.calls) == 3 * got.rounds
    active = list(TASKS)
    for r in range(1, got.rounds + 1):
        before, cand_call, after = sim.calls[3 * r - 3: 3 * r]
        # A coin per task: some incumbent draws come before the candidate's, the rest after.
        assert before[0] == "incumbent" and set(before[1]) <= set(active) and before[2] == r
        assert cand_call == ("candidate", active, r)
        assert after == ("incumbent", active, r)
        if r == 1:
            assert 5 < len(before[1]) < 35
        # Next round's tasks: those whose first r pairs still vary or differ.
        pairs = pair_up({t: sim.cand[t][:r] for t in TASKS}, {t: sim.inc[t][:r] for t in TASKS})
        active = [t for t in TASKS if unsettled(pairs.get(t, ()))]
    assert got.rounds > 1
    # Deterministic tasks never went past round 1.
    for t in TASKS[10:]:
        assert sim.drawn["incumbent", t] == sim.drawn["candidate", t] == 1


def test_flipped_and_as_dict():
    c = Comparison(pairs={
        "up": [(1.0, 0.0)], "half": [(1.0, 0.0), (0.0, 0.0)], "bit": [(0.6, 0.2)],
        "down": [(0.0, 1.0), (0.0, 1.0)], "halfdown": [(0.0, 1.0), (1.0, 1.0)], "same": [(1.0, 1.0)],
    }, accepted=True, rounds=2)
    assert c.flipped() == (["half", "up"], ["down", "halfdown"])
    d = c.as_dict()
    assert d["flipped_up"] == ["half", "up"] and d["flipped_down"] == ["down", "halfdown"]
    assert d["pairs"] == 9 and d["tasks"] == 6
    assert d["accepted"] is True and d["rounds"] == 2
    assert Comparison().flipped() == ([], [])


def test_a_task_the_candidate_drops_counts_as_failed():
    base = {t: 1.0 if t == "t03" else 0.0 for t in TASKS}
    better = base | {t: 1.0 for t in FIXED4}

    def cand(task: str, j: int) -> float | None:
        return None if task == "t03" else better[task]
    got = Scripted(fixed(base), cand).run(TASKS, bounds=False)
    assert got.pairs["t03"][0] == (0.0, 1.0)         # the incumbent passes it; the candidate's crash is a loss
    assert got.flipped() == (sorted(FIXED4 - {"t03"}), ["t03"])


def test_flakiness_that_follows_the_clock_favours_neither_side():
    """A task that passes on every other run of it, whoever runs it: with a fixed order (incumbent, then
    candidate) the candidate would draw every pass from round 2 on; the draw-order coins break that."""
    runs: Counter[str] = Counter()

    def clocked(task: str, _j: int) -> float:
        if TASKS.index(task) >= 10:
            return 1.0
        runs[task] += 1
        return float(runs[task] % 2 == 0)
    accepted = sum(Scripted(clocked, clocked).run(TASKS, Plan(seed=seed), bounds=False).accepted
                   for seed in range(100))
    assert accepted <= 8


# -- the error rate, simulated ------------------------------------------------------------------------------

FLAKY = TASKS[::4]                       # 10 tasks at p = 0.5
FIXES = ["t01", "t10", "t23", "t34"]     # deterministic failures the fix makes pass


def simulate(seed: int, cand_probs: dict[str, float], inc_probs: dict[str, float]) -> Comparison:
    rng = random.Random(seed)
    sim = Scripted(lambda t, _j: float(rng.random() < inc_probs[t]), lambda t, _j: float(rng.random() < cand_probs[t]))
    return sim.run(TASKS, bounds=False)


BASE = {t: 0.5 if t in FLAKY else (0.0 if t in FIXES or i % 3 == 0 else 1.0) for i, t in enumerate(TASKS)}


def test_neutral_candidates_are_rarely_accepted():
    # 400 comparisons of two versions with the same per-task probabilities. The gate promises at most
    # 1 - confidence = 5% false accepts; the margin, 0.03, is about 3 binomial standard errors of a 5% rate
    # over 400 trials (sqrt(0.05 * 0.95 / 400) = 0.011), so a gate that keeps its promise passes whatever the
    # seeds happen to give. (Seeded, so deterministic; this gate accepts 7 of 400 here, and a gate testing
    # at alpha 0.2 accepts about 21%, which fails.)
    accepted = sum(simulate(seed, BASE, BASE).accepted for seed in range(400))
    assert accepted / 400 <= 0.05 + 0.03


def test_four_task_fixes_are_mostly_accepted():
    better = BASE | {t: 1.0 for t in FIXES}
    accepted = sum(simulate(10_000 + seed, better, BASE).accepted for seed in range(200))
    assert accepted / 200 >= 0.8
