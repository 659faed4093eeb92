#!/usr/bin/env bash
# The benchmarks' own Python 3.12 environments (tau2-bench, harbor), built by the same code as
# `autoharness install NAME` (orchestrator/install.py, pins in benchmarks/shims/__init__.py) and where the
# runners look for them: $AUTOHARNESS_HOME/<name>-venv if AUTOHARNESS_HOME is set, else an existing
# .ci-tools/<name>-venv of this checkout (machines that built it before), else
# ${XDG_DATA_HOME:-~/.local/share}/autoharness/<name>-venv.
#
#   .ci/install-benchmarks.sh            # tau2 and harbor: what the tests need
#   .ci/install-benchmarks.sh tau2       # only tau2 (harbor's environment is about 420 MB)
#
# Idempotent: an environment whose stamp names the pinned versions is reused. Needs `make install` first
# (it runs the installer with the project's own .venv) and a Python 3.12 (PYTHON312, pyenv, or python3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "install-benchmarks: no .venv here; run \`make install\` first" >&2
  exit 1
fi
exec .venv/bin/python -m orchestrator.install "$@"
