"""The TOML config: validated with pydantic, `${VAR}` expanded, paths relative to the file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.core.errors import ConfigError

SEARCH_ORDER = ("autoharness.toml", "config/autoharness.toml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetConfig(Strict):
    repo: Path
    base: str = "main"
    branch: str = "autoharness"
    editable: list[str] = Field(min_length=1)


class SplitConfig(Strict):
    seed: int = 42
    train: float | list[str] = 0.5
    val: float | list[str] = 0.25
    test: float | list[str] = 0.25

    @model_validator(mode="after")
    def _one_style(self) -> SplitConfig:
        parts = (self.train, self.val, self.test)
        if all(isinstance(p, float) for p in parts):
            if any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
                raise ValueError("train + val + test fractions must be non-negative and sum to 1")
        elif not all(isinstance(p, list) for p in parts):
            raise ValueError("give train, val and test all as fractions or all as id lists")
        return self

    @property
    def explicit(self) -> bool:
        return isinstance(self.train, list)


class BenchmarkConfig(Strict):
    kind: str = "command"
    trials: int = Field(1, ge=1)
    concurrency: int = Field(4, ge=1)
    task_timeout_s: float = Field(600, gt=0)
    infra_error: Literal["fail", "drop"] = "fail"
    infra_retries: int = Field(1, ge=0)
    split: SplitConfig = SplitConfig()
    options: dict[str, Any] = {}


class BackendConfig(Strict):
    kind: str = "claude-code"
    model: str = ""
    timeout_s: float = Field(1800, gt=0)
    max_cost_usd: float = Field(5.0, gt=0)
    options: dict[str, Any] = {}
    env: dict[str, str] = {}


class BackendSection(BackendConfig):
    fallback: list[BackendConfig] = []
    sandbox: Literal["auto", "bwrap", "docker", "none"] = "auto"  # for every backend: see core/sandbox.py
    sandbox_hide: list[Path] = []                # more folders to hide from the coding agent (bwrap)
    sandbox_image: str = "autoharness-sandbox"   # docker: the image the coding agent runs in
    sandbox_mounts: list[Path] = []              # docker: host folders shown read-only (a toolchain)


class GateConfig(Strict):
    suite_threshold: float = Field(0.8, ge=0, le=1)
    min_improvement: float = Field(0.0, ge=0)
    promote_after: int = Field(2, ge=1)
    pass_reward: float = Field(1.0, gt=0, le=1)
    # Noise (orchestrator/paired.py): "auto" decides by the baseline's A/A check (val run `baseline_runs`
    # times); a noisy benchmark gets the paired gate, a deterministic one the exact rule.
    noise: Literal["auto", "noisy", "deterministic"] = "auto"
    baseline_runs: int = Field(2, ge=1, le=20)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    max_samples: int = Field(6, ge=1, le=50)   # draws per val task and side, at most, on a noisy benchmark


class LoopConfig(Strict):
    max_iterations: int = Field(50, ge=1)
    plateau: int = Field(8, ge=1)
    budget_usd: float = Field(50.0, gt=0)


class ScheduleConfig(Strict):
    start: str = ""
    hours: float = Field(9, gt=0)
    timezone: str = "UTC"
    grace_s: float = Field(600, ge=0)

    @model_validator(mode="after")
    def _valid_cron(self) -> ScheduleConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from apscheduler.triggers.cron import CronTrigger
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if self.start:
            try:
                CronTrigger.from_crontab(self.start, timezone=self.timezone)
            except ValueError as exc:
                raise ValueError(f"not a cron expression ({exc})") from None
        return self


class NotifyConfig(Strict):
    webhook: str = ""


class Config(Strict):
    workspace: Path = Path("workspace")
    target: TargetConfig
    benchmark: BenchmarkConfig = BenchmarkConfig()
    backend: BackendSection = BackendSection()
    gate: GateConfig = GateConfig()
    loop: LoopConfig = LoopConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    notify: NotifyConfig = NotifyConfig()

    # Set by load_config, not by the file.
    source: Path | None = Field(None, exclude=True)

    @property
    def config_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def digest(self) -> str:
        """Hash of everything that decides results, for provenance and resume checks."""
        data = self.model_dump(mode="json", exclude={"schedule", "notify", "source"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")
            return os.environ[name]
        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def find_config(explicit: Path | None) -> Path:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return explicit
    env = os.environ.get("AUTOHARNESS_CONFIG")
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"{env}: config file not found (from $AUTOHARNESS_CONFIG)")
        return Path(env)
    for candidate in SEARCH_ORDER:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError("no config: pass --config, set $AUTOHARNESS_CONFIG, or create ./autoharness.toml")


def _error_line(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "missing"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{path}: {loc}: {msg}{more}"


def load_config(explicit: Path | None = None) -> Config:
    path = find_config(explicit).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw = _expand(raw, "")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_error_line(path, exc)) from None
    base = path.parent
    cfg.source = path
    cfg.workspace = (base / cfg.workspace).resolve()
    cfg.target.repo = (base / cfg.target.repo).resolve()
    _check_target(cfg, path)
    return cfg


def _check_target(cfg: Config, path: Path) -> None:
    repo = cfg.target.repo
    if not repo.is_dir():
        raise ConfigError(f"{path}: target.repo: {repo} does not exist")
    if not (repo / ".git").exists():
        raise ConfigError(f"{path}: target.repo: {repo} is not a git repository")


def resolve_path(cfg: Config, value: str | Path) -> Path:
    """A path from options, relative to the config file."""
    return (cfg.config_dir / Path(value).expanduser()).resolve()


def parse_options(model: type[BaseModel], options: dict[str, Any], where: str) -> Any:
    """Validate a plugin's `options` table with its own strict model."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{where}.{loc}: {msg}") from None
