#!/usr/bin/env bash
# Make sure a Docker engine answers and the test image exists.
#
# - If `docker info` already works, that engine is reused (never restarted).
# - Else, as root on Debian: install docker.io and busybox-static when missing and start dockerd
#   in the background with no bridge, no iptables and no forwarding (no container gets a network).
# - Build aiotracker/busybox:latest when absent: busybox-static and its applets in a root file
#   system, /etc/passwd with root and nobody, /tmp; loaded with `docker import`. Nothing is pulled.
set -euo pipefail

IMAGE="${AIOTRACKER_TEST_IMAGE:-aiotracker/busybox:latest}"
LOG="${AIOTRACKER_DOCKERD_LOG:-/var/log/aiotracker-dockerd.log}"

say() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

have_root() { [ "$(id -u)" -eq 0 ]; }
is_debian() { [ -r /etc/debian_version ] && command -v apt-get >/dev/null; }

apt_install() {
    have_root || die "need root to install $* (apt-get install $*)"
    is_debian || die "not Debian: install $* yourself"
    if [ -z "${_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _APT_UPDATED=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_engine() {
    command -v dockerd >/dev/null || apt_install docker.io
    # The Debian docker.io package brings its own CLI; keep whichever `docker` is first on PATH.
    command -v docker >/dev/null || die "no docker CLI after installing docker.io"
    have_root || die "no engine answers and starting dockerd needs root"
    # containerd may be left running by the package's postinst on a systemd host; dockerd starts
    # its own otherwise.
    # A pid file left by a daemon that died stops a new one from starting.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    say "starting dockerd (log: $LOG)"
    nohup dockerd \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --host=unix:///var/run/docker.sock \
        >>"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        engine_answers && { say "engine up"; return 0; }
        sleep 0.5
    done
    tail -n 30 "$LOG" >&2 || true
    die "dockerd did not answer within 60 s"
}

build_image() {
    docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
    local busybox=/bin/busybox
    if ! { [ -x "$busybox" ] && file_is_static "$busybox"; }; then
        dpkg -s busybox-static >/dev/null 2>&1 || apt_install busybox-static
    fi
    [ -x "$busybox" ] || die "no $busybox after installing busybox-static"
    local root
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' RETURN
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root" "$root/proc" "$root/sys" "$root/dev" "$root/home"
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    chroot "$root" /bin/busybox --install -s /bin
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" -c . | docker import \
        -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$IMAGE" >/dev/null
    say "built $IMAGE"
}

file_is_static() {
    # busybox-static replaces /bin/busybox with a static binary; a dynamic one cannot run in the image.
    ! ldd "$1" >/dev/null 2>&1
}

engine_answers || start_engine
build_image
