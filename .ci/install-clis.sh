#!/usr/bin/env bash
# Installs the coding-agent CLIs the claude-code and codex backends drive, pinned, into .ci-tools/npm
# (gitignored). Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION=2.1.330
CODEX_VERSION=0.169.0
PREFIX=.ci-tools/npm

installed() {  # package version -> 0 when that exact version is in the prefix
  local manifest="$PREFIX/node_modules/$1/package.json"
  [[ -f "$manifest" ]] && node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' \
    "$(pwd)/$manifest" "$2"
}

if installed @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" && installed @openai/codex "$CODEX_VERSION" \
  && [[ -x "$PREFIX/node_modules/.bin/claude" && -x "$PREFIX/node_modules/.bin/codex" ]]; then
  echo "install-clis: claude-code $CLAUDE_CODE_VERSION and codex $CODEX_VERSION already installed"
  exit 0
fi

mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION"
"$PREFIX/node_modules/.bin/claude" --version
"$PREFIX/node_modules/.bin/codex" --version
