#!/usr/bin/env bash
# .ci/docker-setup.sh -- install and start a Docker engine on this machine kind (Debian 12, root,
# no systemd, no container registry reachable) and build simml's base image with
# `simml docker build-base` (no registry: a rootfs from the host's own Debian packages, imported).
# Recipe: /work/shared/reference/docker-offline.md. Leaves dockerd running; its PID is written to
# $DOCKERD_PIDFILE (default /tmp/simml-dockerd.pid) so the caller stops it by PID.
#
#   bash .ci/docker-setup.sh engine     # apt install docker.io, start dockerd (if none answers)
#   bash .ci/docker-setup.sh base       # simml docker build-base (needs simml installed)
#   bash .ci/docker-setup.sh            # both
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
WHAT=${1:-all}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/tmp/simml-dockerd.pid}
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/simml-dockerd.log}
ts() { date +%s%N; }
step() { local ms=$(( ($(ts) - $2) / 1000000 )); printf '[docker-setup] %-30s %4d.%03ds\n' "$1" $((ms/1000)) $((ms%1000)); }

engine() {
  local t
  t=$(ts)
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends \
      docker.io debootstrap >/dev/null
  fi
  step "apt install docker.io" "$t"
  t=$(ts)
  if ! docker info >/dev/null 2>&1; then
    # A SIGKILLed daemon leaves pid files behind, and dockerd then refuses to start.
    for f in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
      if [[ -f $f ]] && ! kill -0 "$(cat "$f")" 2>/dev/null; then rm -f "$f"; fi
    done
    # overlay2 on ext4, the default bridge with iptables NAT (builds reach PyPI through it).
    setsid dockerd --storage-driver=overlay2 >"$DOCKERD_LOG" 2>&1 </dev/null &
    echo $! >"$DOCKERD_PIDFILE"
    for _ in $(seq 240); do docker info >/dev/null 2>&1 && break; sleep 0.25; done
    docker info >/dev/null 2>&1 || { tail -50 "$DOCKERD_LOG"; exit 1; }
    echo "[docker-setup] dockerd started (pid $(cat "$DOCKERD_PIDFILE"), log $DOCKERD_LOG)"
  else
    echo "[docker-setup] a Docker engine already answers"
  fi
  step "dockerd ready" "$t"
}

base() {
  local t
  t=$(ts)
  # the hostpkg method (the host's own Debian python3 packages, ~30 s); debootstrap as fallback
  simml docker build-base || simml docker build-base --method debootstrap
  step "simml docker build-base" "$t"
}

case $WHAT in
  engine) engine ;;
  base) base ;;
  all) engine; base ;;
  *) echo "usage: $0 [engine|base|all]" >&2; exit 2 ;;
esac
