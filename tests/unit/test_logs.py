"""JSON-lines logging: fields, rotation, secret redaction, phase tracing, and no duplicated handlers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog

from orchestrator.core.errors import BenchmarkFailed, ConfigError, Rejected, Stage
from orchestrator.logs import LOG_FILE, LOGGER, configure_logging, phase


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    for name in (LOGGER, "apscheduler"):
        std = logging.getLogger(name)
        for h in list(std.handlers):
            std.removeHandler(h)
            h.close()
        std.propagate = True
    structlog.reset_defaults()


def lines(logs_dir: Path, name: str = LOG_FILE) -> list[dict]:
    return [json.loads(ln) for ln in (logs_dir / name).read_text().splitlines()]


def test_json_lines_carry_the_fields_and_console_is_readable(tmp_path, capsys):
    log = configure_logging(tmp_path, secrets=[])
    log.info("iteration_decided", iteration=3, decision="accepted", val=0.75)
    log.debug("detail_only_in_file", x=1)
    (first, second) = lines(tmp_path)
    assert first["event"] == "iteration_decided" and first["iteration"] == 3 and first["val"] == 0.75
    assert first["level"] == "info" and first["logger"] == "autoharness" and first["timestamp"].endswith("Z")
    assert second["event"] == "detail_only_in_file"
    err = capsys.readouterr().err
    assert "iteration_decided" in err and "decision=accepted" in err and "detail_only_in_file" not in err
    assert not err.lstrip().startswith("{")


def test_child_and_captured_stdlib_loggers_reach_the_file(tmp_path):
    configure_logging(tmp_path, secrets=[], console_level="off")
    structlog.get_logger("autoharness.notify").warning("notify_failed", host="h")
    logging.getLogger("apscheduler.scheduler").info("Scheduler started %s", "now")
    logging.getLogger("unrelated").warning("not ours")
    got = lines(tmp_path)
    assert [(g["logger"], g["event"]) for g in got] == [("autoharness.notify", "notify_failed"),
                                                        ("apscheduler.scheduler", "Scheduler started now")]


def test_configure_twice_does_not_duplicate(tmp_path, capsys):
    configure_logging(tmp_path / "a", secrets=[])
    log = configure_logging(tmp_path / "b", secrets=[])
    log.info("once")
    assert len(logging.getLogger(LOGGER).handlers) == 2
    assert [g["event"] for g in lines(tmp_path / "b")] == ["once"]
    assert (tmp_path / "a" / LOG_FILE).read_text() == ""
    assert capsys.readouterr().err.count("once") == 1


def test_rotation(tmp_path):
    log = configure_logging(tmp_path, secrets=[], console_level="off", max_bytes=2000, backups=2)
    for i in range(200):
        log.info("filler", i=i, pad="x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    assert lines(tmp_path)[-1]["i"] == 199  # the newest in the live file, every line whole
    assert all(isinstance(json.loads(ln), dict) for ln in (tmp_path / f"{LOG_FILE}.2").read_text().splitlines())


def test_secrets_are_redacted_everywhere(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-supersecret-123")
    log = configure_logging(tmp_path)
    log.info("calling sk-ant-supersecret-123", env={"k": ["Bearer sk-ant-supersecret-123"]})
    try:
        raise RuntimeError("auth failed for sk-ant-supersecret-123")
    except RuntimeError:
        log.exception("crash")
    text = (tmp_path / LOG_FILE).read_text()
    assert "supersecret" not in text and text.count("[REDACTED]") >= 3
    assert "RuntimeError" in lines(tmp_path)[-1]["exception"]
    assert "supersecret" not in capsys.readouterr().err


def test_phase_end_and_error(tmp_path):
    log = configure_logging(tmp_path, secrets=[], console_level="off")
    with phase(log, "train", iteration=2) as plog:
        plog.info("inside")
    with pytest.raises(ValueError, match="boom"):
        with phase(log, "propose", iteration=2):
            raise ValueError("boom")
    with pytest.raises(BenchmarkFailed):
        with phase(log, "gate", iteration=2):
            raise BenchmarkFailed("the benchmark is gone")
    with pytest.raises(Rejected):  # a rejection is the gate's outcome, not a failure of the phase
        with phase(log, "gate", iteration=3):
            raise Rejected(Stage.VAL, "no better")
    got = lines(tmp_path)
    assert [(g["event"], g["phase"]) for g in got] == [
        ("phase_start", "train"), ("inside", "train"), ("phase_end", "train"),
        ("phase_start", "propose"), ("phase_error", "propose"), ("phase_start", "gate"), ("phase_error", "gate"),
        ("phase_start", "gate"), ("phase_end", "gate")]
    assert all(g["iteration"] == 2 for g in got[:7])
    assert got[2]["duration_s"] >= 0
    err = got[4]
    assert err["error"] == "ValueError: boom" and err["error_type"] == "ValueError" and err["level"] == "error"
    assert "Traceback" in err["exception"] and err["duration_s"] >= 0
    assert got[6]["error"] == "BenchmarkFailed: the benchmark is gone" and "exception" not in got[6]
    assert got[8]["outcome"] == "val: no better" and got[8]["level"] == "info"


def test_bad_console_level_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="console_level"):
        configure_logging(tmp_path, console_level="loud")
