#!/usr/bin/env bash
# A docker engine and a small local image, for `backend.sandbox = "docker"` and its tests. Idempotent.
#
# Installs Debian's docker.io when dockerd is missing, starts the engine when none answers (no iptables, no
# bridge, the vfs storage driver: what runs inside a VM or a container without extra kernel modules), and
# builds the test image locally: no registry is reachable here, so the image is a skeleton root filesystem
# imported from a tar, and the sandbox shows the host's /usr inside it at run time (backend.sandbox_mounts).
# vfs copies the whole image for every container, so the image stays a few kilobytes.
set -euo pipefail

IMAGE=${AUTOHARNESS_TEST_IMAGE:-autoharness-sandbox-test}
LOG=${DOCKERD_LOG:-/var/log/autoharness-dockerd.log}
START=$SECONDS

answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "install-docker: $1" >&2
    exit 1
  fi
}

install_engine() {
  command -v dockerd >/dev/null 2>&1 && return
  need_root "dockerd is missing; install it with: sudo apt-get install docker.io"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
}

start_engine() {
  answers && return
  need_root "no docker engine answers; start one (systemctl start docker, or Docker Desktop)"
  # Its own session, so the engine outlives this script and the make that ran it.
  setsid dockerd --iptables=false --bridge=none --storage-driver=vfs >>"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 60); do
    answers && return
    sleep 0.5
  done
  echo "install-docker: dockerd did not answer within 30 s; its log ($LOG) ends with:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
}

build_image() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 && return
  local root
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  mkdir -p "$root"/{tmp,etc,usr,proc,dev,sys}
  chmod 1777 "$root/tmp"
  ln -s usr/bin "$root/bin"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  ln -s usr/sbin "$root/sbin"
  printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  tar -C "$root" -c . | docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$IMAGE" >/dev/null
}

install_engine
start_engine
build_image
echo "install-docker: engine $(docker version --format '{{.Server.Version}}'), image $IMAGE ready" \
  "in $((SECONDS - START)) s"
