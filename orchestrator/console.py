"""Terminal output: results and progress bars on stdout, errors on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Piped output (CI logs, `make demo | tee`) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)


@contextmanager
def progress_bars() -> Iterator[ProgressFn]:
    """A bar per running benchmark pass (train, suite, val, ...), gone when the pass is done.

    Yields the callback the evaluator calls with (label, done, total). Drawn on the results console, so
    lines printed meanwhile land above the bars; off when that is not a terminal.
    """
    bars: dict[str, int] = {}
    with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        def update(label: str, done: int, total: int) -> None:
            if label not in bars:
                bars[label] = progress.add_task(label, total=total)
            progress.update(bars[label], completed=done, total=total)
            if done >= total:
                progress.remove_task(bars.pop(label))
        yield update
