"""Importing the modules that log configures nothing: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO


def test_import_has_no_side_effects(tmp_path):
    code = ("import logging, structlog, orchestrator.logs, orchestrator.notify, orchestrator.report\n"
            "assert not logging.getLogger('autoharness').handlers\n"
            "assert not structlog.is_configured()\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
