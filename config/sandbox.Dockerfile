# The image the coding agent runs in with `backend.sandbox = "docker"` (backend.sandbox_image, default
# "autoharness-sandbox"): bash, git, python3, node 20 and the two coding-agent CLIs, pinned to the versions
# .ci/install-clis.sh installs (keep the two in step).
#
#   docker build -t autoharness-sandbox -f config/sandbox.Dockerfile .
#
# Building needs a registry (the base image) and npm; machines without them (like the project's CI, which
# has neither) test the docker sandbox with the skeleton image .ci/install-docker.sh imports instead.
# The sandbox runs every command as the host's uid:gid with its own HOME, so nothing here depends on a user.
FROM node:20-bookworm-slim

ARG CLAUDE_CODE_VERSION=2.1.330
ARG CODEX_VERSION=0.169.0

RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates git python3 ripgrep \
 && rm -rf /var/lib/apt/lists/*

RUN npm install -g --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" "@openai/codex@${CODEX_VERSION}" \
 && npm cache clean --force \
 && claude --version && codex --version

# Any uid can write here; the sandbox moves HOME to /tmp (a tmpfs) when the host's is not mounted.
ENV HOME=/tmp
WORKDIR /tmp
CMD ["bash"]
