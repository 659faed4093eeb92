"""The bench's outside measurement (tests/bench_parallel.py): the time covered by at least one logged span."""

from __future__ import annotations

from tests.bench_parallel import union_s


def test_overlapping_spans_count_once_and_the_window_clips_them() -> None:
    spans = [(0.5, 2.0), (0.0, 1.0), (5.0, 6.0), (5.5, 5.8), (9.0, 12.0)]
    assert union_s(spans, 0.0, 10.0) == 4.0           # [0, 2] + [5, 6] + [9, 10]
    assert union_s(spans, 1.5, 5.5) == 1.0            # [1.5, 2] + [5, 5.5]


def test_spans_wholly_outside_the_window_count_nothing() -> None:
    assert union_s([(-3.0, -1.0), (11.0, 12.0)], 0.0, 10.0) == 0.0
    assert union_s([], 0.0, 10.0) == 0.0
