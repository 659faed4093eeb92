"""The statistics of a paired comparison of two code versions on the same tasks, and of a benchmark's noise.

Pairs: per task, the draws (candidate reward, incumbent reward) in the order they were drawn. The estimate is
the mean over tasks of each task's mean paired difference: the difference of the two val means, with every
task weighted alike however many draws it got.

The test is a sign-flip (randomization) test (Fisher 1935; for paired evaluation comparisons see Smucker,
Allan and Carterette, CIKM 2007). Its assumption: when the candidate is no better than the incumbent by
`shift`, each pair's difference minus `shift` is as likely to come out with either sign; for `shift` = 0 that
is exactly the case when the two versions share a task's reward distribution, whatever that distribution is
(a flaky task, partial credit), and how many draws each task got may depend on anything that does not tell
the two apart. It is exact for few discordant pairs (every sign pattern enumerated) and a Monte Carlo
estimate with a fixed seed otherwise, so the same data always gives the same decision. Confidence bounds
are the test inverted (the set of shifts it does not reject).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist

import numpy as np

Pair = tuple[float, float]            # (candidate reward, incumbent reward)
PairsByTask = Mapping[str, Sequence[Pair]]

EXACT_UP_TO = 12                      # discordant pairs: 2**12 sign patterns are enumerated
MONTE_CARLO = 10_000                  # sign patterns drawn beyond that
_EPS = 1e-12


def _weighted(pairs: PairsByTask) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's difference and its weight (1 / (tasks x the task's pairs)); tasks without pairs are left out."""
    tasks = [p for p in pairs.values() if p]
    diffs, weights = [], []
    for ps in tasks:
        for c, b in ps:
            diffs.append(c - b)
            weights.append(1.0 / (len(tasks) * len(ps)))
    return np.asarray(diffs, dtype=float), np.asarray(weights, dtype=float)


def mean_difference(pairs: PairsByTask) -> float:
    d, w = _weighted(pairs)
    return float(np.dot(d, w)) if len(d) else 0.0


@lru_cache(maxsize=64)
def _signs(m: int) -> np.ndarray:
    """Sign patterns for m pairs: all of them (exact) or a fixed-seed sample; the identity comes first."""
    if m <= EXACT_UP_TO:
        codes = np.arange(2 ** m, dtype=np.int64)[:, None] >> np.arange(m)[None, :]
        return 1.0 - 2.0 * (codes & 1)
    rng = np.random.default_rng(0)
    return np.vstack([np.ones((1, m)), rng.choice([-1.0, 1.0], size=(MONTE_CARLO, m))])


def p_value(pairs: PairsByTask, shift: float = 0.0, *, greater: bool = True) -> float:
    """One-sided p-value of "the candidate is no better than the incumbent by more than `shift`" (or, with
    `greater=False`, of "it is at least `shift` better")."""
    d, w = _weighted(pairs)
    x = w * (d - shift)
    if not greater:
        x = -x
    x = x[np.abs(x) > _EPS]
    if len(x) == 0:
        return 1.0
    stats = _signs(len(x)) @ x
    # The observed pattern (the first row) counts itself: exact when enumerated, (1 + hits) / (1 + draws),
    # a valid p-value, when sampled.
    return int(np.count_nonzero(stats >= stats[0] - 1e-9)) / len(stats)


def lower_bound(pairs: PairsByTask, confidence: float) -> float:
    """The smallest improvement the pairs support at `confidence` (one-sided): the largest shift rejected."""
    return _invert(pairs, 1.0 - confidence, greater=True)


def upper_bound(pairs: PairsByTask, confidence: float) -> float:
    return -_invert({t: [(b, c) for c, b in ps] for t, ps in pairs.items()}, 1.0 - confidence, greater=True)


def interval(pairs: PairsByTask, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided interval of the mean paired difference."""
    half = 1.0 - (1.0 - confidence) / 2
    return lower_bound(pairs, half), upper_bound(pairs, half)


def _invert(pairs: PairsByTask, alpha: float, *, greater: bool) -> float:
    """The largest shift the test rejects at `alpha` (p grows with the shift), to 1e-4."""
    lo, hi = -1.0, 1.0
    if p_value(pairs, lo, greater=greater) > alpha:
        return lo
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        if p_value(pairs, mid, greater=greater) <= alpha:
            lo = mid
        else:
            hi = mid
    return 0.0 if abs(lo) < 1e-4 else lo  # within the tolerance of 0 is 0, not "-0.000"


def mean_of_means(rewards: Mapping[str, Sequence[float | None]]) -> float | None:
    """The mean over tasks of each task's mean reward (dropped draws left out): a score from samples."""
    means = [sum(rs) / len(rs) for rs in ([r for r in v if r is not None] for v in rewards.values()) if rs]
    return sum(means) / len(means) if means else None


# -- the noise of a benchmark, from repeated runs of the same code ----------------------------------------

def z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def flip_rate(samples: Sequence[float]) -> float:
    """Of all pairs of runs of one task on the same code, the share that disagree."""
    k = len(samples)
    if k < 2:
        return 0.0
    differ = sum(1 for i in range(k) for j in range(i + 1, k) if abs(samples[i] - samples[j]) > 1e-9)
    return differ / (k * (k - 1) / 2)


@dataclass
class Noise:
    """What repeated val runs of one code version (the baseline's A/A check) say about the benchmark."""

    runs: int = 0                                   # val runs of the base commit
    tasks: int = 0
    flips: dict[str, float] = field(default_factory=dict)   # task -> flip rate, for tasks that flipped
    flip_rate: float = 0.0                          # mean over the val tasks
    se: float = 0.0                                 # standard error of one run's val mean
    task_variance: float = 0.0                      # sum over tasks of the reward's variance

    @property
    def measured(self) -> bool:
        return self.runs >= 2

    @property
    def noisy(self) -> bool:
        return bool(self.flips)

    def resolvable(self, confidence: float, samples: int, power: float = 0.8) -> float:
        """About the smallest true gain the paired gate accepts with `power`, with `samples` draws per side
        of each task that varies (a normal approximation: a guide for choosing trials and val tasks)."""
        if not self.tasks:
            return 0.0
        se_diff = math.sqrt(2 * self.task_variance / max(samples, 1)) / self.tasks
        return (z(confidence) + z(power)) * se_diff

    @classmethod
    def measure(cls, samples: Mapping[str, Sequence[float | None]]) -> Noise:
        scored = {t: [r for r in rs if r is not None] for t, rs in samples.items()}
        scored = {t: rs for t, rs in scored.items() if rs}
        runs = min((len(rs) for rs in scored.values()), default=0)
        rates = {t: flip_rate(rs) for t, rs in scored.items()}
        var = sum(float(np.var(rs, ddof=1)) for rs in scored.values() if len(rs) > 1)
        n = len(scored)
        return cls(runs=runs, tasks=n, flips={t: r for t, r in sorted(rates.items()) if r > 0},
                   flip_rate=sum(rates.values()) / n if n else 0.0,
                   se=math.sqrt(var) / n if n else 0.0, task_variance=var)

    def as_dict(self) -> dict:
        return {"runs": self.runs, "tasks": self.tasks, "flips": self.flips, "flip_rate": self.flip_rate,
                "se": self.se, "task_variance": self.task_variance}

    @classmethod
    def from_dict(cls, data: Mapping) -> Noise:
        return cls(**{k: data[k] for k in ("runs", "tasks", "flips", "flip_rate", "se", "task_variance") if k in data})
