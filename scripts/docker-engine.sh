#!/usr/bin/env bash
# Make sure a Docker engine answers and the test image exists.
#
# - If `docker info` already works, that engine is reused (never restarted).
# - Else, as root on Debian: install docker.io and busybox-static when missing and start dockerd
#   in the background with no bridge, no iptables and no forwarding (no container gets a network),
#   on a data root, exec root and pid file of its own (the socket stays /var/run/docker.sock
#   unless AIOTRACKER_DOCKER_SOCKET names another).
# - dockerd with --bridge=none keeps a network sandbox record for every container that ran on the
#   default network (moby/moby#46583, #42461) and removes them one by one, ~75 ms each, at its next
#   start: a day of test runs made 16,000 of them and a 20-minute start. The data root is the
#   project's own, so its network store is dropped before a start (without live-restore every
#   sandbox in it is stale; dockerd recreates the built-in networks; the project makes no other).
# - Build aiotracker/busybox:latest when absent: busybox-static and its applets in a root file
#   system, /etc/passwd with root and nobody, /tmp; loaded with `docker import`. Nothing is pulled.
set -euo pipefail

IMAGE="${AIOTRACKER_TEST_IMAGE:-aiotracker/busybox:latest}"
LOG="${AIOTRACKER_DOCKERD_LOG:-/var/log/aiotracker-dockerd.log}"
DATA_ROOT="${AIOTRACKER_DOCKERD_DATA_ROOT:-/var/lib/aiotracker/docker}"
EXEC_ROOT="${AIOTRACKER_DOCKERD_EXEC_ROOT:-/var/run/aiotracker-docker}"
PIDFILE="${AIOTRACKER_DOCKERD_PIDFILE:-/var/run/aiotracker-dockerd.pid}"
START_TIMEOUT="${AIOTRACKER_DOCKERD_START_TIMEOUT:-120}"
SOCKET="${AIOTRACKER_DOCKER_SOCKET:-/var/run/docker.sock}"
if [ -n "${AIOTRACKER_DOCKER_SOCKET:-}" ]; then
    export DOCKER_HOST="unix://$SOCKET"  # an engine of its own: the CLI below talks to it
fi

say() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=scripts/engine-lib.sh
. "$(dirname "$0")/engine-lib.sh"



engine_answers() { timeout "${1:-10}" docker info >/dev/null 2>&1; }

start_engine() {
    command -v dockerd >/dev/null || apt_install docker.io
    # The Debian docker.io package brings its own CLI; keep whichever `docker` is first on PATH.
    command -v docker >/dev/null || die "no docker CLI after installing docker.io"
    have_root || die "no engine answers and starting dockerd needs root"
    # containerd may be left running by the package's postinst on a systemd host; dockerd starts
    # its own otherwise.
    # A pid file left by a daemon that died stops a new one from starting.
    if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        rm -f "$PIDFILE"
    fi
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
    # Every sandbox in the network store is stale now (no live-restore: no container survives
    # its daemon), and the project makes no network of its own there: the store goes.
    local store="$DATA_ROOT/network/files/local-kv.db"
    if [ -f "$store" ]; then
        say "dropping $DATA_ROOT's network store (its stale sandboxes would slow the start)"
        rm -f "$store"
    fi
    say "starting dockerd (data root: $DATA_ROOT, log: $LOG)"
    nohup dockerd \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --data-root="$DATA_ROOT" --exec-root="$EXEC_ROOT" --pidfile="$PIDFILE" \
        --host="unix://$SOCKET" \
        >>"$LOG" 2>&1 </dev/null &
    local pid=$! deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        engine_answers 2 && { say "engine up"; return 0; }
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$LOG" >&2 || true; die "dockerd exited"; }
        sleep 0.5
    done
    tail -n 30 "$LOG" >&2 || true
    die "dockerd did not answer within $START_TIMEOUT s"
}

build_image() {
    docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
    rootfs_tar | docker import "${IMAGE_CHANGES[@]}" - "$IMAGE" >/dev/null
    say "built $IMAGE"
}


engine_answers || start_engine
build_image
