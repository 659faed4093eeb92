"""Bad config gets one line naming the key or file and exit code 2, through the real CLI; `init` writes a config
that loads. (How a good config resolves, in-process: tests/unit/test_config.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core.config import load_config
from tests.toy import REPO, SPLIT, TASKS, cli, make_toy


@pytest.fixture
def toy(tmp_path):
    return make_toy(tmp_path, TASKS, SPLIT)


def bad(toy, old: str, new: str, commands: tuple[str, ...] = ("baseline",)) -> str:
    """The one line each command (`run --once` is one string) answers the config with `old` made `new`: exit 2,
    `error: ...` alone on stderr, and the target's refs as they were."""
    assert old in toy.config.read_text(), old
    toy.config.write_text(toy.config.read_text().replace(old, new, 1))
    refs, said = toy.git("for-each-ref"), set()
    for command in commands:
        res = cli(toy, *command.split(), check=False)
        assert res.returncode == 2, f"{command}: {res.stdout}{res.stderr}"
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{command}: {res.stderr}"
        assert toy.git("for-each-ref") == refs, f"{command} moved a ref"
        said.add(lines[0])
    assert len(said) == 1, said  # every command says the same
    return said.pop()


def test_unknown_key(toy):
    assert "benchmark.concurency: unknown key" in bad(toy, "concurrency = 2", "concurency = 2")


def test_wrong_type(toy):
    assert "benchmark.concurrency" in bad(toy, "concurrency = 2", 'concurrency = "many"')


def test_missing_target(toy):
    line = bad(toy, '[target]\nrepo = "target"', '[target]\nrepo = "nowhere"')
    assert "target.repo" in line and "does not exist" in line


def test_target_not_a_git_repo(toy):
    (toy.root / "plain").mkdir()
    assert "is not a git repository" in bad(toy, 'repo = "target"', 'repo = "plain"')


def test_split_names_unknown_task(toy):
    line = bad(toy, '"va-beta-3"]', '"va-beta-3", "va-nope"]')
    assert "benchmark.split.val" in line and "va-nope" in line


def test_not_toml(toy):
    assert "not valid TOML" in bad(toy, "[target]", "[target")


def test_unknown_backend_lists_valid_ones(toy):
    toy.config.write_text(toy.config.read_text().replace('kind = "replay"', 'kind = "gpt-magic"'))
    res = cli(toy, "run", "--once", check=False)
    assert res.returncode == 2 and "claude-code" in res.stderr and "replay" in res.stderr


def test_unset_variable(toy):
    assert "${NOPE_NOT_SET}" in bad(toy, 'branch = "autoharness"', 'branch = "${NOPE_NOT_SET}"')


def test_missing_base_branch(toy):
    assert "target.base" in bad(toy, 'base = "main"', 'base = "trunk"')


def test_usage_error_is_exit_2(toy):
    res = cli(toy, "run", "--sometimes", check=False)
    assert res.returncode == 2


def test_init_writes_a_config_that_loads(tmp_path):
    target = tmp_path / "agent-repo"
    target.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=target, check=True)
    out = tmp_path / "autoharness.toml"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "orchestrator", "init", "--target", str(target), "--backend", "replay",
                          "--output", str(out)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    cfg = load_config(out)
    assert cfg.target.repo == target.resolve() and cfg.backend.kind == "replay"
    again = subprocess.run([sys.executable, "-m", "orchestrator", "init", "--target", str(target), "--output", str(out)],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "--force" in again.stderr
    assert Path(out).read_text() == out.read_text()


def test_bad_schedule(toy):
    toy.config.write_text(toy.config.read_text() + '[schedule]\nstart = "0 99 * * *"\n')
    line = cli(toy, "baseline", check=False).stderr.strip()
    assert "schedule" in line and "cron" in line and len(line.splitlines()) == 1
    toy.config.write_text(toy.config.read_text().replace('start = "0 99 * * *"', 'timezone = "Mars/Olympus"'))
    res = cli(toy, "run", check=False)
    assert res.returncode == 2 and "unknown timezone" in res.stderr
