#!/usr/bin/env bash
# bubblewrap, for `backend.sandbox = "bwrap"` and its tests. Idempotent.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
  echo "install-sandbox: $(bwrap --version) already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-sandbox: bwrap is missing; install it with: sudo apt-get install bubblewrap" >&2
  exit 1
fi
apt-get update -qq >/dev/null
apt-get install -y -qq bubblewrap >/dev/null
bwrap --version
