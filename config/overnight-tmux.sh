#!/usr/bin/env bash
# Run `make overnight` in a detached tmux session named "autoharness", or attach to it if it is already there.
#
#   config/overnight-tmux.sh            start (if needed) and attach; detach with Ctrl-b d, the run goes on
#   config/overnight-tmux.sh --detach   start (if needed) and return
#
# A tmux session takes its environment from the tmux server, which may predate your shell's exports: put API
# keys in config/autoharness.env (see autoharness.env.example), which the session loads before starting.
# AUTOHARNESS_ENV_FILE and AUTOHARNESS_TMUX_SESSION override the file and the session name.
set -euo pipefail

session="${AUTOHARNESS_TMUX_SESSION:-autoharness}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="${AUTOHARNESS_ENV_FILE:-$root/config/autoharness.env}"

if ! command -v tmux >/dev/null 2>&1; then
  echo "overnight-tmux: tmux is not installed (Debian/Ubuntu: sudo apt-get install tmux; macOS: brew install tmux)." >&2
  echo "overnight-tmux: without it, run 'make overnight' under nohup or install config/autoharness.service." >&2
  exit 1
fi

if tmux has-session -t "=$session" 2>/dev/null; then
  echo "tmux session '$session' is already running"
else
  load=""
  if [ -f "$env_file" ]; then
    load="set -a; . $(printf '%q' "$env_file"); set +a; "
  fi
  # The pane stays open after the run ends, so its last lines can be read in the morning.
  tmux new-session -d -s "$session" -c "$root" \
    "${load}make overnight; status=\$?; echo; echo \"autoharness exited with status \$status; press Enter to close\"; read -r _"
  echo "started 'make overnight' in tmux session '$session' (in $root)"
fi

if [ "${1:-}" != "--detach" ] && [ -t 0 ] && [ -t 1 ] && [ -z "${TMUX:-}" ]; then
  exec tmux attach-session -t "=$session"
fi
echo "attach with: tmux attach -t $session   (detach again with Ctrl-b d)"
