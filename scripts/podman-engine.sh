#!/usr/bin/env bash
# Make sure a rootful Podman service answers on a socket of its own and the test image exists.
#
#   scripts/podman-engine.sh          start (or reuse) the service, import the image when absent
#   scripts/podman-engine.sh stop     stop the service started by this script (by its pid file)
#
# - If a Podman service already answers on $AIOTRACKER_PODMAN_SOCKET (default
#   /run/podman-test/podman.sock), it is reused (never restarted).
# - Else, as root on Debian: install podman (and busybox-static) when missing, write
#   /etc/containers/containers.conf and a loopback-only CNI network, and start
#   `podman system service --time=0` in a session and a network namespace of its own
#   (setsid, unshare --net), its pid in $AIOTRACKER_PODMAN_PIDFILE. No container gets a
#   network address: Podman 4.3's compat create ignores netns="none" when NetworkMode is empty
#   and uses the default network, which here is the loopback-only one. Nothing is pulled
#   (pull_policy = "never").
# - events_logfile_max_size is raised to 1 GiB: Podman 4.3 rotates the file events log at 1 MB
#   and an event stream then ends or replays old events (fixed in 4.5.0).
# - Import aiotracker/busybox:latest when absent, built like docker-engine.sh does (busybox-static
#   and its applets, /etc/passwd with root and nobody, /tmp 1777), with `podman import`.
# - Clients: DOCKER_HOST=unix://$AIOTRACKER_PODMAN_SOCKET.
set -euo pipefail

IMAGE="${AIOTRACKER_TEST_IMAGE:-aiotracker/busybox:latest}"
SOCKET="${AIOTRACKER_PODMAN_SOCKET:-/run/podman-test/podman.sock}"
PIDFILE="${AIOTRACKER_PODMAN_PIDFILE:-/run/podman-test/podman.pid}"
EVENTS_LOG="${AIOTRACKER_PODMAN_EVENTS_LOG:-/run/libpod/events/events.log}"
LOG="${AIOTRACKER_PODMAN_LOG:-/var/log/aiotracker-podman.log}"
START_TIMEOUT="${AIOTRACKER_PODMAN_START_TIMEOUT:-120}"
STOP_TIMEOUT="${AIOTRACKER_PODMAN_STOP_TIMEOUT:-30}"
CONF=/etc/containers/containers.conf
CNI_DIR=/etc/containers/cni-loopback
REGISTRY_DROP_IN=/etc/containers/registries.conf.d/50-aiotracker-test-registry.conf
# The service's working directory (Podman writes files into it).
RUN_DIR="${AIOTRACKER_PODMAN_RUN_DIR:-/var/lib/aiotracker/podman-run}"

say() { printf 'podman-engine: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=scripts/engine-lib.sh
. "$(dirname "$0")/engine-lib.sh"



# A Podman service answers on the socket: /_ping says OK and carries Podman's API header.
engine_answers() {
    [ -S "$SOCKET" ] || return 1
    if command -v curl >/dev/null; then
        local out
        out="$(curl -sS -i --max-time "${1:-10}" --unix-socket "$SOCKET" http://d/_ping 2>/dev/null)" || return 1
        printf '%s' "$out" | grep -qi '^libpod-api-version:' && printf '%s' "$out" | grep -q 'OK'
    else
        DOCKER_HOST="unix://$SOCKET" timeout "${1:-10}" docker version 2>/dev/null | grep -qi podman
    fi
}

# The pid in the pid file, when it is alive and is a `podman system service`.
service_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null)"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'podman system service' || return 1
    printf '%s\n' "$pid"
}

# Write $1 with the content on stdin, only when it differs; keep a copy of a foreign file once.
write_file() {
    local path="$1" tmp
    tmp="$(mktemp)"
    cat >"$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        return 0
    fi
    if [ -f "$path" ] && [ ! -f "$path.before-aiotracker" ]; then
        cp -p "$path" "$path.before-aiotracker"
    fi
    mkdir -p "$(dirname "$path")"
    install -m 0644 "$tmp" "$path"
    rm -f "$tmp"
    say "wrote $path"
}

write_config() {
    write_file "$CONF" <<'EOF'
# Written by aiotracker scripts/podman-engine.sh: no network, no pulls, no systemd.
[containers]
netns = "none"
# root here may lack CAP_SYS_RESOURCE; Podman's rootful default nofile 1048576 makes runc fail.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
# Bytes (a number without unit). Podman 4.3 rotates the events log at 1 MB by default, and an
# event stream then ends or replays old events (fixed in 4.5.0): 1 GiB avoids the rotation.
events_logfile_max_size = 1073741824
pull_policy = "never"

[network]
network_backend = "cni"
network_config_dir = "/etc/containers/cni-loopback"
default_network = "podman"
EOF
    write_file "$CNI_DIR/podman.conflist" <<'EOF'
{"cniVersion":"0.4.0","name":"podman","plugins":[{"type":"loopback"}]}
EOF
    # Read once, when the service starts (Podman caches its registries configuration).
    write_file "$REGISTRY_DROP_IN" <<'EOF'
# Written by aiotracker scripts/podman-engine.sh: the tests' registry
# (tests/integration/_registry.py) listens on 127.0.0.1:5000 inside the service's own network
# namespace and speaks plain HTTP.
[[registry]]
location = "127.0.0.1:5000"
insecure = true
EOF
}

start_engine() {
    have_root || die "no Podman service answers on $SOCKET and starting one needs root"
    command -v podman >/dev/null || apt_install podman
    [ -x /usr/lib/cni/loopback ] || apt_install containernetworking-plugins
    command -v podman >/dev/null || die "no podman after installing it"
    write_config
    mkdir -p "$(dirname "$SOCKET")" "$(dirname "$PIDFILE")"
    local pid
    if pid="$(service_pid)"; then
        say "podman service (pid $pid) is running but does not answer yet: waiting for it"
    else
        rm -f "$PIDFILE"
        # A socket left by a service that died.
        [ -S "$SOCKET" ] && rm -f "$SOCKET"
        # The file events log is replayed whole by every event stream opened with `since`
        # (a tracker's reconnect): measured here, at 100 MB a reconnect's replay was so slow
        # that a tracker whose streams were cut lost its lease before it could catch up. No
        # client of a service that is not running needs its old events.
        if [ -f "$EVENTS_LOG" ]; then
            say "dropping the events log $EVENTS_LOG ($(du -h "$EVENTS_LOG" | cut -f1)) of the stopped service"
            rm -f "$EVENTS_LOG"
        fi
        say "starting podman system service on $SOCKET (own network namespace, log: $LOG)"
        # setsid: own session, out of this shell's process group; the shell writes its pid and
        # execs unshare, which execs podman: the pid file holds the service's own pid.
        # Its working directory is a directory of its own: Podman 4.3's OOM handling leaves an
        # empty file named "oom" in the service's working directory (seen in the checkout).
        mkdir -p "$RUN_DIR"
        PIDFILE="$PIDFILE" SOCKET="$SOCKET" RUN_DIR="$RUN_DIR" setsid sh -c \
            'cd "$RUN_DIR" && echo $$ >"$PIDFILE" && exec unshare --net podman system service --time=0 "unix://$SOCKET"' \
            >>"$LOG" 2>&1 </dev/null &
        local deadline_pid=$((SECONDS + 10))
        until pid="$(service_pid)"; do
            [ "$SECONDS" -lt "$deadline_pid" ] || { tail -n 30 "$LOG" >&2 || true; die "podman service did not start"; }
            sleep 0.1
        done
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        engine_answers 2 && { say "engine up (pid $pid, socket $SOCKET)"; return 0; }
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$LOG" >&2 || true; rm -f "$PIDFILE"; die "podman service exited"; }
        sleep 0.2
    done
    tail -n 30 "$LOG" >&2 || true
    die "podman service did not answer within $START_TIMEOUT s"
}

stop_engine() {
    local pid
    if ! pid="$(service_pid)"; then
        rm -f "$PIDFILE"
        say "no podman service to stop (no live pid in $PIDFILE)"
        return 0
    fi
    say "stopping podman service (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "pid $pid still alive after $STOP_TIMEOUT s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$PIDFILE"
    say "stopped"
}

image_exists() {
    # Podman stores the import as localhost/$IMAGE; the compat API resolves the short name.
    if command -v curl >/dev/null; then
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --unix-socket "$SOCKET" \
            "http://d/images/$IMAGE/json")" = 200 ]
    else
        podman image exists "$IMAGE"
    fi
}

build_image() {
    image_exists && return 0
    command -v podman >/dev/null || die "$IMAGE is absent and there is no podman CLI to import it"
    rootfs_tar | podman import -q "${IMAGE_CHANGES[@]}" - "$IMAGE" >/dev/null
    image_exists || die "imported $IMAGE but the service does not see it"
    say "built $IMAGE"
}


case "${1:-start}" in
    start)
        if engine_answers; then
            say "podman service answers on $SOCKET: reusing it"
        else
            start_engine
        fi
        build_image
        ;;
    stop)
        stop_engine
        ;;
    *)
        die "usage: $0 [start|stop]"
        ;;
esac
