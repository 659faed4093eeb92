"""results.tsv: auto-harness's first six columns, then ours; a rejection's reason keeps the stage that gave it,
as the console shows it (`guard: ...`, `val: ...`)."""

from __future__ import annotations

from orchestrator.core.errors import Decision, Stage
from orchestrator.store import TSV_COLUMNS, IterationRecord, Store


def rows(tmp_path, *records: IterationRecord) -> list[dict[str, str]]:
    store = Store(tmp_path / "state.db")
    for rec in records:
        store.record_iteration(rec)
    store.write_tsv(tmp_path / "results.tsv")
    store.close()
    lines = (tmp_path / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t") == TSV_COLUMNS
    return [dict(zip(TSV_COLUMNS, ln.split("\t"), strict=True)) for ln in lines[1:]]


def test_the_columns_are_the_designed_ones():
    assert TSV_COLUMNS[:6] == ["iteration", "val_score", "commit", "evals_passed", "evals_total", "timestamp"]
    assert TSV_COLUMNS[6:] == ["decision", "reason", "backend", "cost_usd", "duration_s"]


def test_the_reason_keeps_its_stage(tmp_path):
    def rec(n: int, decision: Decision, stage: Stage, reason: str) -> IterationRecord:
        return IterationRecord(n=n, started_at=0, decided_at=0, decision=decision, stage=stage, reason=reason)
    got = rows(tmp_path,
               rec(0, Decision.BASELINE, Stage.NONE, "train 6/14, test 0.3750"),
               rec(1, Decision.REJECTED, Stage.GUARD, "changes outside editable ['agent/**']: README.md"),
               rec(2, Decision.REJECTED, Stage.SUITE, "suite 1/6 = 17% < 80%"),
               rec(3, Decision.REJECTED, Stage.VAL, "val 0.6250 does not beat best 0.6250 + 0"),
               rec(4, Decision.ERROR, Stage.BACKEND, "timed out\tafter 30 s\nand gave up"),
               rec(5, Decision.ACCEPTED, Stage.NONE, "val 0.6250 -> 0.7500"),
               rec(6, Decision.ERROR, Stage.GIT, ""))
    assert [r["reason"] for r in got] == [
        "train 6/14, test 0.3750",
        "guard: changes outside editable ['agent/**']: README.md",
        "suite: suite 1/6 = 17% < 80%",
        "val: val 0.6250 does not beat best 0.6250 + 0",
        "backend: timed out after 30 s and gave up",   # one line, one cell
        "val 0.6250 -> 0.7500",
        "git",
    ]
