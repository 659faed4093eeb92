"""Unit tests of orchestrator/stats.py: the sign-flip test over paired draws per task, its inversion into
confidence bounds, and the noise a benchmark shows on repeated runs of the same code."""

from __future__ import annotations

import json
import math
import random
from statistics import NormalDist

import numpy as np
import pytest

from orchestrator import stats
from orchestrator.stats import Noise


def tasks_with(*per_task: list[tuple[float, float]]) -> dict[str, list[tuple[float, float]]]:
    return {f"t{i}": list(ps) for i, ps in enumerate(per_task)}


UP, DOWN, SAME1, SAME0 = (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)


# -- exact p-values -----------------------------------------------------------------------------------------

def test_three_tasks_one_pair_each_is_one_in_eight():
    # 3 discordant pairs of equal weight: only the observed sign pattern is as extreme.
    assert stats.p_value(tasks_with([UP], [UP], [UP])) == pytest.approx(1 / 8)


def test_three_tasks_two_pairs_each_is_one_in_sixty_four():
    assert stats.p_value(tasks_with([UP, UP], [UP, UP], [UP, UP])) == pytest.approx(1 / 64)


def test_concordant_pairs_give_p_one_and_do_not_count():
    assert stats.p_value(tasks_with([SAME1], [SAME0], [SAME1, SAME0])) == 1.0
    assert stats.p_value({}) == 1.0
    assert stats.p_value({"a": []}) == 1.0
    # Ties are left out of the sign patterns: adding them changes nothing but the weights (all equal here).
    assert stats.p_value(tasks_with([UP], [UP], [UP], [SAME1], [SAME0])) == pytest.approx(1 / 8)


def test_tasks_are_weighted_alike_whatever_their_pair_count():
    # Task a: one pair (1,0), weight 1/2. Task b: (1,0) and (0,1), weight 1/4 each.
    # x = [+1/2, +1/4, -1/4], observed sum 1/2. Sign patterns (s1, s2, s3) with
    # s1/2 + s2/4 - s3/4 >= 1/2: s1 = +1 and (s2, s3) in {(+,+), (-,-), (+,-)}: 3 of 8.
    pairs = {"a": [UP], "b": [UP, DOWN]}
    assert stats.p_value(pairs) == pytest.approx(3 / 8)
    # Weighting every pair alike would give x = [1, 1, -1], observed 1, and 4 of 8 patterns >= 1.
    assert stats.p_value(pairs) != pytest.approx(1 / 2)
    assert stats.mean_difference(pairs) == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)


def test_partial_credit_exact_enumeration():
    # Differences 0.5, 0.25, -0.25 over three one-pair tasks: sums >= 0.5 are (+,+,+) 0.5, (+,+,-) 1.0,
    # (+,-,-) 0.5: 3 of 8.
    pairs = tasks_with([(0.75, 0.25)], [(0.5, 0.25)], [(0.25, 0.5)])
    assert stats.p_value(pairs) == pytest.approx(3 / 8)


def test_greater_false_mirrors_swapped_sides():
    pairs = {"a": [UP], "b": [UP, DOWN], "c": [(0.7, 0.2), (0.1, 0.4)], "d": [SAME1]}
    swapped = {t: [(b, c) for c, b in ps] for t, ps in pairs.items()}
    for shift in (-0.3, 0.0, 0.1, 0.25):
        assert stats.p_value(pairs, shift, greater=False) == pytest.approx(stats.p_value(swapped, -shift))
    # Three regressions: "it is at least as good" has p = 1/8, "it is no better" has p = 1.
    down = tasks_with([DOWN], [DOWN], [DOWN])
    assert stats.p_value(down, greater=False) == pytest.approx(1 / 8)
    assert stats.p_value(down) == 1.0


def test_p_value_grows_with_the_shift():
    pairs = {"a": [UP], "b": [UP, DOWN], "c": [(0.7, 0.2), (0.1, 0.4)], "d": [SAME1, UP]}
    shifts = np.linspace(-1.0, 1.0, 81)
    ps = [stats.p_value(pairs, float(s)) for s in shifts]
    assert all(a <= b + 1e-12 for a, b in zip(ps, ps[1:], strict=False))
    assert ps[0] < 0.1 and ps[-1] == 1.0
    down = [stats.p_value(pairs, float(s), greater=False) for s in shifts]
    assert all(a >= b - 1e-12 for a, b in zip(down, down[1:], strict=False))


def test_shift_is_subtracted_from_every_pair():
    # Three ties tested against "better by -0.5": every difference minus the shift is +0.5, p = 1/8.
    assert stats.p_value(tasks_with([SAME1], [SAME0], [SAME1]), -0.5) == pytest.approx(1 / 8)
    # A difference exactly at the shift drops out: one (1,0) task left of two, x = [+1/2], p = 1/2.
    assert stats.p_value(tasks_with([UP], [(0.75, 0.25)]), 0.5) == pytest.approx(1 / 2)


# -- confidence bounds --------------------------------------------------------------------------------------

def test_lower_bound_by_hand():
    three = tasks_with([UP], [UP], [UP])
    # Every shift below 1 has p = 1/8: rejected at alpha 0.125, so the bound is 1 (to the bisection's 1e-4).
    assert 1.0 - 2e-4 <= stats.lower_bound(three, 0.875) <= 1.0
    # At alpha 0.1 nothing is rejected: the bound is the search's floor, -1.
    assert stats.lower_bound(three, 0.9) == -1.0
    # The same by symmetry for the upper bound of three regressions.
    down = tasks_with([DOWN], [DOWN], [DOWN])
    assert -1.0 <= stats.upper_bound(down, 0.875) <= -1.0 + 2e-4
    assert stats.upper_bound(down, 0.9) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_bounds_bracket_the_estimate(seed):
    rng = random.Random(seed)
    pairs = {f"t{i}": [(float(rng.random() < 0.6), float(rng.random() < 0.5)) for _ in range(rng.randint(1, 3))]
             for i in range(rng.randint(3, 9))}
    est = stats.mean_difference(pairs)
    for conf in (0.8, 0.95):
        lo, hi = stats.lower_bound(pairs, conf), stats.upper_bound(pairs, conf)
        assert -1.0 <= lo <= est <= hi <= 1.0
        ilo, ihi = stats.interval(pairs, conf)
        assert ilo <= est <= ihi
        # The two-sided interval at conf uses the one-sided bounds at (1 + conf) / 2: wider than these.
        assert ilo <= lo and ihi >= hi


def test_interval_of_a_clear_gain_excludes_zero():
    pairs = {f"t{i}": [UP, UP] for i in range(6)} | {f"s{i}": [SAME1] for i in range(6)}
    est = stats.mean_difference(pairs)
    assert est == pytest.approx(0.5)
    lo, hi = stats.interval(pairs, 0.95)
    assert 0.0 < lo <= est <= hi


# -- the Monte Carlo path -----------------------------------------------------------------------------------

def test_monte_carlo_is_deterministic():
    rng = random.Random(7)
    pairs = {f"t{i}": [(rng.random(), rng.random()) for _ in range(2)] for i in range(20)}  # 40 > 12 pairs
    first = stats.p_value(pairs)
    stats._signs.cache_clear()
    assert stats.p_value(pairs) == first
    assert stats.p_value(dict(pairs)) == first
    # A valid sampled p-value: (1 + hits) / (1 + draws), never 0.
    assert first * (stats.MONTE_CARLO + 1) == pytest.approx(round(first * (stats.MONTE_CARLO + 1)))


def test_monte_carlo_all_discordant_one_way_is_the_smallest_p():
    pairs = {f"t{i}": [UP] for i in range(30)}
    assert stats.p_value(pairs) == pytest.approx(1 / (stats.MONTE_CARLO + 1))


def test_monte_carlo_matches_the_binomial_and_normal_tails():
    # 40 one-pair tasks, 25 up and 15 down: the statistic is a count of +1 signs, so the exact p-value is
    # P(Binomial(40, 1/2) >= 25) = 0.07693; the normal approximation (continuity corrected) gives 0.0774.
    pairs = {f"t{i}": [UP if i < 25 else DOWN] for i in range(40)}
    exact = sum(math.comb(40, k) for k in range(25, 41)) / 2 ** 40
    normal = 1 - NormalDist().cdf((24.5 - 20) / math.sqrt(10))
    p = stats.p_value(pairs)
    # 10 000 sampled patterns: the Monte Carlo standard error is sqrt(0.077 * 0.923 / 10 000) = 0.0027.
    assert p == pytest.approx(exact, abs=0.01)
    assert p == pytest.approx(normal, abs=0.01)
    # And symmetric: the mirrored data gives the mirrored p.
    assert stats.p_value({t: [(b, c) for c, b in ps] for t, ps in pairs.items()}, greater=False) == pytest.approx(p)


def test_monte_carlo_matches_the_normal_approximation_for_continuous_differences():
    rng = random.Random(3)
    pairs = {f"t{i}": [(rng.random(), rng.random())] for i in range(60)}
    d, w = stats._weighted(pairs)
    x = d * w
    normal = 1 - NormalDist().cdf(float(x.sum() / np.sqrt((x ** 2).sum())))
    assert stats.p_value(pairs) == pytest.approx(normal, abs=0.015)


# -- scores from samples ------------------------------------------------------------------------------------

def test_mean_difference_and_mean_of_means():
    assert stats.mean_difference({}) == 0.0
    assert stats.mean_difference({"a": [UP, SAME1], "b": [DOWN]}) == pytest.approx((0.5 - 1.0) / 2)
    assert stats.mean_of_means({"a": [1.0, 0.0, None], "b": [1.0], "c": [None]}) == pytest.approx(0.75)
    assert stats.mean_of_means({"c": [None]}) is None
    assert stats.mean_of_means({}) is None


# -- noise --------------------------------------------------------------------------------------------------

def test_flip_rate():
    assert stats.flip_rate([1, 0, 1]) == pytest.approx(2 / 3)
    assert stats.flip_rate([1, 1, 1]) == 0.0
    assert stats.flip_rate([1, 0]) == 1.0
    assert stats.flip_rate([0.5, 0.5, 0.25, 0.25]) == pytest.approx(4 / 6)
    assert stats.flip_rate([1]) == 0.0
    assert stats.flip_rate([]) == 0.0


KNOWN = {
    "a": [1.0, 1.0, 1.0],
    "b": [1.0, None, 0.0, 1.0],     # scored [1, 0, 1]: flip rate 2/3, variance (1/9 + 4/9 + 1/9) / 2 = 1/3
    "c": [0.0, 0.0, None],          # scored [0, 0]: the fewest runs
    "d": [None, None],              # nothing scored: not a task
}


def test_noise_measure_by_hand():
    n = Noise.measure(KNOWN)
    assert n.runs == 2
    assert n.tasks == 3
    assert n.flips == {"b": pytest.approx(2 / 3)}
    assert n.flip_rate == pytest.approx((0 + 2 / 3 + 0) / 3)
    assert n.task_variance == pytest.approx(1 / 3)
    assert n.se == pytest.approx(math.sqrt(1 / 3) / 3)
    assert n.measured and n.noisy


def test_noise_of_a_deterministic_benchmark_and_of_nothing():
    n = Noise.measure({"a": [1.0, 1.0], "b": [0.0, 0.0]})
    assert (n.runs, n.tasks, n.flips, n.flip_rate, n.se, n.task_variance) == (2, 2, {}, 0.0, 0.0, 0.0)
    assert n.measured and not n.noisy
    empty = Noise.measure({})
    assert (empty.runs, empty.tasks, empty.se) == (0, 0, 0.0)
    assert not empty.measured
    assert Noise.measure({"a": [1.0]}).measured is False


def test_resolvable():
    n = Noise.measure(KNOWN)
    by_hand = (NormalDist().inv_cdf(0.95) + NormalDist().inv_cdf(0.8)) * math.sqrt(2 * (1 / 3) / 2) / 3
    assert n.resolvable(0.95, 2) == pytest.approx(by_hand)
    sizes = [n.resolvable(0.95, s) for s in (1, 2, 4, 8)]
    assert all(a > b > 0 for a, b in zip(sizes, sizes[1:], strict=False))
    assert n.resolvable(0.95, 4) == pytest.approx(n.resolvable(0.95, 1) / 2)
    assert n.resolvable(0.99, 4) > n.resolvable(0.95, 4)
    assert Noise().resolvable(0.95, 4) == 0.0
    assert Noise.measure({}).resolvable(0.95, 4) == 0.0


def test_noise_round_trip():
    n = Noise.measure(KNOWN)
    assert Noise.from_dict(n.as_dict()) == n
    assert Noise.from_dict(json.loads(json.dumps(n.as_dict()))) == n
    # Missing keys keep their defaults; unknown ones are ignored.
    assert Noise.from_dict({"runs": 3, "future": 1}) == Noise(runs=3)
