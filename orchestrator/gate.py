"""The gate's scoring rules: the regression suite, the val bound for early stops, and promotion."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.evaluate import StopRule
from orchestrator.store import StoredResult

STAGES = ("guard", "suite", "val")

# What a prompt may say about a rejection: val numbers stay out of anything the coding agent reads.
PUBLIC_REASON = {
    "val": "did not improve the held-out validation score",
}


def passed(res: StoredResult, pass_reward: float) -> bool:
    return res.reward is not None and res.reward >= pass_reward


@dataclass
class Suite:
    tasks: list[str] = field(default_factory=list)
    streaks: dict[str, int] = field(default_factory=dict)

    def as_dict(self, threshold: float) -> dict:
        return {"tasks": sorted(self.tasks), "threshold": threshold, "streaks": dict(sorted(self.streaks.items()))}

    @classmethod
    def from_dict(cls, data: dict) -> Suite:
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
    def stop(done: dict[str, StoredResult], remaining: int) -> bool:
        ok = sum(passed(r, pass_reward) for r in done.values())
        return total > 0 and (ok + remaining) / total < threshold
    return stop


def val_stop(total: int, best: float, min_improvement: float) -> StopRule:
    """Stop once the val mean cannot beat `best + min_improvement` even if every remaining task scores 1."""
    def stop(done: dict[str, StoredResult], remaining: int) -> bool:
        got = sum(r.reward for r in done.values() if r.reward is not None)
        dropped = sum(1 for r in done.values() if r.reward is None)
        denom = total - dropped
        return denom > 0 and (got + remaining) / denom <= best + min_improvement
    return stop
