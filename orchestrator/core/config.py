"""The TOML config: validated with pydantic, `${VAR}` expanded, paths relative to the file."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.core.errors import ConfigError

SEARCH_ORDER = ("autoharness.toml", "config/autoharness.toml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_WINDOW_HOURS = 168  # schedule.hours: a week; a longer window is a typo, not a night


class Strict(BaseModel):
    # inf and nan are no timeout, budget or window length: refused in every number of the config.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def ref_name_problem(name: str) -> str | None:
    """Why git would refuse `name` as a branch (the rules of `git check-ref-format --branch`), or None."""
    if not name:
        return "it is empty"
    if name.startswith("-"):
        return "it starts with '-'"  # git would read it as an option
    if name == "@" or name == "HEAD":
        return f"{name!r} is reserved"
    bad = next((c for c in name if ord(c) <= 32 or ord(c) == 127 or c in "~^:?*[\\"), None)
    if bad is not None:
        return f"it contains {bad!r}"
    for part in ("..", "@{", "//"):
        if part in name:
            return f"it contains {part!r}"
    if name.startswith("/"):
        return "it starts with '/'"
    if name.endswith(("/", ".")):
        return f"it ends with {name[-1]!r}"
    for component in name.split("/"):
        if component.startswith(".") or component.endswith(".lock"):
            return f"the part {component!r} starts with '.' or ends with '.lock'"
    return None


def glob_problem(glob: str) -> str | None:
    """Why an `editable` glob cannot name files of the target repo, or None."""
    if not glob.strip():
        return "it is empty"
    if glob.startswith(("/", "~")) or re.match(r"[A-Za-z]:[\\/]", glob):
        return "it is absolute; globs are relative to the target repo's root, like 'agent/**'"
    parts = re.split(r"[\\/]", glob)
    if ".." in parts:
        return "it reaches outside the target repo ('..')"
    if "." in parts:
        return "it has a '.' part, which no repo path has; write 'agent/**', not './agent/**'"
    return None


class TargetConfig(Strict):
    repo: Path
    base: str = "main"
    branch: str = "autoharness"
    editable: list[str] = Field(min_length=1)

    @field_validator("base", "branch")
    @classmethod
    def _git_name(cls, name: str, info: ValidationInfo) -> str:
        why = None if info.field_name == "base" and name == "HEAD" else ref_name_problem(name)
        if why is not None:
            what = "git branch name" if info.field_name == "branch" else "git branch, tag or commit name"
            raise ValueError(f"{name!r} is not a valid {what}: {why}")
        if info.field_name == "branch" and name in (base := info.data.get("base", ""), base.removeprefix("refs/heads/")):
            raise ValueError(f"{name!r} is also target.base; the run commits on its own branch and never moves "
                             "base: choose another branch")
        return name

    @field_validator("editable")
    @classmethod
    def _globs(cls, globs: list[str]) -> list[str]:
        for glob in globs:
            why = glob_problem(glob)
            if why is not None:
                raise ValueError(f"{glob!r} cannot be an editable glob: {why}")
        return globs


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
    # The task pool every candidate's runs share: "local" (processes on this machine) or "ray" (an existing Ray
    # cluster at `address`: "auto", "ray://host:10001" or "host:6379"; the command runner only).
    executor: Literal["local", "ray"] = "local"
    address: str = ""
    split: SplitConfig = SplitConfig()
    options: dict[str, Any] = {}


class BackendConfig(Strict):
    kind: str = "claude-code"
    model: str = ""
    timeout_s: float = Field(1800, gt=0)
    max_cost_usd: float = Field(5.0, gt=0)
    options: dict[str, Any] = {}
    env: dict[str, str] = {}
    _where: str = PrivateAttr("backend")

    @property
    def where(self) -> str:
        """The table this backend came from, for error lines: `backend` or `backend.fallback[i]`."""
        return self._where


class BackendSection(BackendConfig):
    fallback: list[BackendConfig] = []
    sandbox: Literal["auto", "bwrap", "docker", "none"] = "auto"  # for every backend: see core/sandbox.py
    sandbox_hide: list[Path] = []                # more folders to hide from the coding agent (bwrap)
    sandbox_image: str = "autoharness-sandbox"   # docker: the image the coding agent runs in
    sandbox_mounts: list[Path] = []              # docker: host folders shown read-only (a toolchain)

    @model_validator(mode="after")
    def _name_fallbacks(self) -> BackendSection:
        for i, fallback in enumerate(self.fallback):
            fallback._where = f"backend.fallback[{i}]"
        return self

    def chain(self) -> list[BackendConfig]:
        """The primary backend, then its fallbacks in order."""
        return [self, *self.fallback]


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
    parallel: int = Field(1, ge=1, le=16)     # proposals in flight at once, each on its own failure group


class ScheduleConfig(Strict):
    start: str = ""
    hours: float = Field(9, gt=0)
    timezone: str = "UTC"
    grace_s: float = Field(600, ge=0)

    @field_validator("hours")
    @classmethod
    def _a_window(cls, hours: float) -> float:
        if hours > MAX_WINDOW_HOURS:
            raise ValueError(f"{hours:g} is more than {MAX_WINDOW_HOURS} (a week), the longest window")
        return hours

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


def _where(prefix: str, loc: tuple[Any, ...]) -> str:
    """`backend.fallback[0].kind` from pydantic's ('backend', 'fallback', 0, 'kind')."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, through `list[...]` and `... | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_in, get_args(annotation))), None)


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the table at `loc` may hold (empty when it is free-form, like `options`)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the list's model was already found
        field = current.model_fields.get(part) if current else None
        current = _model_in(field.annotation) if field else None
    return [k for k, f in current.model_fields.items() if not f.exclude] if current else []


def problem_line(err: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line for a failed validation of `model`: the key and what is wrong with it. An unknown key comes
    first, with the key probably meant: a misspelt key also leaves the meant one missing, and the typo is the
    news."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        # A required key the typo left missing is the likeliest meaning; else any key of the table.
        missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and tuple(e["loc"][:-1]) == loc[:-1]]
        near = (difflib.get_close_matches(str(loc[-1]), missing, n=1)
                or difflib.get_close_matches(str(loc[-1]), _keys_at(model, loc[:-1]), n=1))
        msg = f"unknown key; did you mean {near[0]!r}?" if near else "unknown key"
        if near:  # the meant key, missing because of the typo, is the same mistake
            errors = [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"]) == (*loc[:-1], near[0]))]
    elif first["type"] == "missing":
        msg = "missing"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_where(prefix, loc)}: {msg}{more}"


def load_config(explicit: Path | None = None) -> Config:
    """The config, checked as far as it can be without running anything: its keys and values, the target
    repo, the workspace folder, and that each plugin kind names a class of its kind."""
    path = find_config(explicit).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw = _expand(raw, "")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {problem_line(exc, Config)}") from None
    base = path.parent
    cfg.source = path
    cfg.workspace = (base / cfg.workspace).resolve()
    cfg.target.repo = (base / cfg.target.repo).resolve()
    _check_target(cfg, path)
    _check_workspace(cfg, path)
    _check_kinds(cfg, path)
    return cfg


def _check_workspace(cfg: Config, path: Path) -> None:
    """The workspace, or the nearest of its parents that exists, must be a folder."""
    folder = cfg.workspace
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        what = "is" if folder == cfg.workspace else f"is inside {folder}, which is"
        raise ConfigError(f"{path}: workspace: {cfg.workspace} {what} a file, not a folder")


def _check_kinds(cfg: Config, path: Path) -> None:
    """Each plugin kind loads as a class of its kind, before any command starts on the config."""
    from orchestrator.core import registry  # it imports the contracts, which import this module
    try:
        registry.load("benchmark", cfg.benchmark.kind)
        for backend in cfg.backend.chain():
            registry.load("backend", backend.kind, where=f"{backend.where}.kind")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


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
        raise ConfigError(problem_line(exc, model, where)) from None
