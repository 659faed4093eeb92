"""Where task ids come from (the command runner's listing, its `tasks` option, the config's split lists) and
what an id may hold, through the runner and the real CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.command import CommandRunner
from orchestrator.core.config import BenchmarkConfig, SplitConfig
from orchestrator.core.errors import ConfigError
from tests.toy import SPLIT, TASKS, Toy, cli, make_toy, tsv


def listing_runner(tmp_path: Path, stdout: str, *, exit_code: int = 0, split: SplitConfig | None = None,
                   stderr: str = "") -> CommandRunner:
    """A command runner whose listing prints `stdout` (and `stderr`) and exits `exit_code`."""
    script = tmp_path / "list.py"
    script.write_text(f"import sys\nsys.stdout.write({stdout!r})\nsys.stderr.write({stderr!r})\nsys.exit({exit_code})\n")
    config = BenchmarkConfig(options={"cmd": [sys.executable, str(script)]}, split=split or SplitConfig())
    return CommandRunner(config, tmp_path)


def test_a_log_line_in_a_listing_of_bare_ids_is_an_error_naming_it(tmp_path):
    runner = listing_runner(tmp_path, "Loading 8 tasks from tasks.json ...\nt1\nt2\ndone.\n")
    with pytest.raises(ConfigError) as err:
        runner.tasks()
    message = str(err.value)
    assert "line 1, 'Loading 8 tasks from tasks.json ...', is not a task id (it holds whitespace)" in message
    assert "logs to stderr" in message and len(message.splitlines()) == 1


def test_a_listing_of_json_objects_ignores_the_lines_around_them(tmp_path):
    objects = "".join(json.dumps({"task_id": t}) + "\n" for t in ("t1", "t2"))
    runner = listing_runner(tmp_path, f"Loading 2 tasks from tasks.json ...\n{objects}done.\n")
    assert runner.tasks() == ["t1", "t2"]


def test_a_listing_of_bare_ids_is_every_line(tmp_path):
    assert listing_runner(tmp_path, "t1\n\n  t2  \nt1\n").tasks() == ["t1", "t2"]


def test_a_failed_listing_says_how_it_ended_and_its_last_words(tmp_path):
    runner = listing_runner(tmp_path, "", exit_code=3, stderr="reading tasks.json\nno such file: tasks.json\n")
    with pytest.raises(ConfigError, match=r"failed \(exit 3\): no such file: tasks.json$"):
        runner.tasks()


@pytest.mark.parametrize("bad", ["../../../../escape", "a,b", "tab\there", "sub/dir"])
def test_bad_ids_from_the_tasks_option_are_refused(tmp_path, bad):
    config = BenchmarkConfig(options={"cmd": ["true"], "tasks": ["ok-1", bad]})
    with pytest.raises(ConfigError, match=r"^benchmark\.options\.tasks: task id .* holds "):
        CommandRunner(config, tmp_path).tasks()


def test_an_id_given_twice_is_one_task(tmp_path):
    config = BenchmarkConfig(options={"cmd": ["true"], "tasks": ["a", "b", "a"]})
    assert CommandRunner(config, tmp_path).tasks() == ["a", "b"]


def test_a_runner_s_own_bad_id_is_refused_when_the_splits_are_made():
    from orchestrator.splits import make_splits
    with pytest.raises(ConfigError, match=r"^the benchmark's task list: task id 'cases/7' holds a path separator"):
        make_splits(SplitConfig(), ["ok-1", "cases/7", "ok-2"])


# -- through the CLI ----------------------------------------------------------------------------------------
def fractions(toy: Toy) -> None:
    """Replace the toy's explicit split lists by fractions: the listing alone says what the tasks are."""
    text = toy.config.read_text()
    lists = text[text.index("[benchmark.split]"):text.index("[benchmark.options]")]
    toy.config.write_text(text.replace(lists, "[benchmark.split]\nseed = 3\ntrain = 0.5\nval = 0.25\ntest = 0.25\n"))


def set_listing(toy: Toy, listing: str) -> None:
    """Make the toy benchmark's listing run `listing` (Python, with `tasks` and `sys` at hand) instead."""
    eval_py = toy.bench / "eval.py"
    old = '    for t in tasks:\n        print(json.dumps({"task_id": t}))\n'
    assert old in eval_py.read_text()
    eval_py.write_text(eval_py.read_text().replace(old, "".join(f"    {ln}\n" for ln in listing.splitlines())))


def refused(toy: Toy, *args: str) -> str:
    """The one stderr line of a command refused as bad input (exit 2); nothing of the run was started."""
    res = cli(toy, *args, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert not (toy.workspace / "splits.json").exists()
    return lines[0]


def test_a_listing_with_a_log_line_freezes_nothing(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    fractions(toy)
    set_listing(toy, 'print("Loading 13 tasks from tasks.json ...")\nprint("\\n".join(tasks))\nprint("done.")')
    line = refused(toy, "baseline")
    assert "line 1, 'Loading 13 tasks from tasks.json ...', is not a task id" in line


ESCAPE = "../../../../escape"   # from traces/train/<code>/ up and out of the workspace


@pytest.mark.parametrize("source", ["split lists", "listing", "tasks option"])
def test_an_id_that_would_write_outside_the_traces_folder_is_refused(tmp_path, source):
    tasks = {**TASKS, ESCAPE: "beta"}
    split = {**SPLIT, "train": [*SPLIT["train"], ESCAPE]}
    toy = make_toy(tmp_path, tasks, split)
    if source == "split lists":
        set_listing(toy, "sys.exit(0)")   # no listing: the lists are the tasks
    else:
        fractions(toy)
    if source == "tasks option":
        toy.config.write_text(toy.config.read_text().replace("token = true", f"token = true\ntasks = {json.dumps(list(tasks))}"))
    line = refused(toy, "baseline")
    where = {"split lists": "benchmark.split.train", "listing": "benchmark.options.cmd (its task listing)",
             "tasks option": "benchmark.options.tasks"}[source]
    assert line == (f"error: {where}: task id {ESCAPE!r} holds a path separator; an id is one token without "
                    "whitespace, commas, path separators or '..'")
    assert not (tmp_path / "escape.json").exists() and toy.runs() == []


def test_split_lists_are_the_tasks_when_the_benchmark_lists_none(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    set_listing(toy, 'sys.exit("this benchmark has no listing")')
    cli(toy, "baseline")
    frozen = json.loads((toy.workspace / "splits.json").read_text())
    assert {name: frozen[name] for name in ("train", "val", "test")} == SPLIT
    assert tsv(toy)[0]["decision"] == "baseline"


def test_split_lists_are_the_tasks_when_the_listing_prints_nothing(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    set_listing(toy, "sys.exit(0)")
    cli(toy, "baseline")
    assert json.loads((toy.workspace / "splits.json").read_text())["val"] == SPLIT["val"]


def test_split_lists_naming_ids_the_listing_lacks_name_them_all_in_one_line(tmp_path):
    toy = make_toy(tmp_path, TASKS, SPLIT)
    toy.config.write_text(toy.config.read_text().replace('"va-beta-3"]', '"va-beta-3", "va-nope"]')
                          .replace('"te-gamma-2"]', '"te-gamma-2", "te-gone"]'))
    line = refused(toy, "baseline")
    assert line == "error: benchmark.split: 2 ids are not among the benchmark's 13 tasks: 'va-nope' (val), 'te-gone' (test)"
    toy.config.write_text(toy.config.read_text().replace(', "te-gone"]', "]"))
    assert refused(toy, "baseline") == "error: benchmark.split.val: 1 id is not among the benchmark's 13 tasks: 'va-nope'"
