"""A good config resolves as documented: variables expanded, paths relative to the config file, and the
lookup order of the config file. (Bad config through the real CLI: tests/integration/test_config_cli.py.)"""

from __future__ import annotations

import pytest

from orchestrator.core.config import load_config
from orchestrator.core.errors import ConfigError
from tests.toy import SPLIT, TASKS, write_toy


@pytest.fixture
def toy(tmp_path):
    """The toy's files and config; load_config only needs the target to look like a git repo."""
    toy = write_toy(tmp_path, TASKS, SPLIT)
    (toy.target / ".git").mkdir()
    return toy


def test_expansion_and_relative_paths(toy, monkeypatch):
    monkeypatch.setenv("TOY_BRANCH", "nightly")
    toy.config.write_text(toy.config.read_text().replace('branch = "autoharness"', 'branch = "${TOY_BRANCH}"'))
    cfg = load_config(toy.config)
    assert cfg.target.branch == "nightly"
    assert cfg.target.repo == toy.target.resolve()
    assert cfg.workspace == (toy.root / "ws").resolve()


def test_lookup_order(toy, tmp_path, monkeypatch):
    tmp_path = tmp_path / "elsewhere"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOHARNESS_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="no config"):
        load_config(None)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "autoharness.toml").write_text(toy.config.read_text().replace('"target"', f'"{toy.target}"'))
    assert load_config(None).source == (tmp_path / "config" / "autoharness.toml").resolve()
    (tmp_path / "autoharness.toml").write_text(toy.config.read_text().replace('"target"', f'"{toy.target}"'))
    assert load_config(None).source == (tmp_path / "autoharness.toml").resolve()
    monkeypatch.setenv("AUTOHARNESS_CONFIG", str(toy.config))
    assert load_config(None).source == toy.config.resolve()
