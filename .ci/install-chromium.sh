#!/usr/bin/env bash
# A headless browser for the test that opens the report as a user would (tests/e2e/test_report_browser.py).
# Idempotent: nothing to do when Debian's chromium is already there.
#
# Installs Debian's `chromium` package. Without root it says how and fails, which `make tools` reports outside
# CI (the browser test then skips with a reason) and turns into a failed run in CI.
set -euo pipefail

BROWSER=${AUTOHARNESS_CHROMIUM:-/usr/bin/chromium}
START=$SECONDS

present() { [ -x "$BROWSER" ] && "$BROWSER" --version >/dev/null 2>&1; }

if ! present; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-chromium: $BROWSER is missing; install it with: sudo apt-get install chromium" >&2
    exit 1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  present || { echo "install-chromium: installed, but $BROWSER --version fails" >&2; exit 1; }
fi
echo "install-chromium: $("$BROWSER" --version 2>/dev/null) ready in $((SECONDS - START)) s"
