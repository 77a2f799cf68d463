#!/usr/bin/env bash
# A 3-node Docker Swarm on loopback, in a network namespace of its own, for tests and benchmarks.
#
#   scripts/swarm-engine.sh [start]       start (or reuse) the swarm; the test image on every node
#   scripts/swarm-engine.sh stop          swarm leave, stop the dockerds by pid, unmount, delete the namespace
#   scripts/swarm-engine.sh stop-node K   stop node K's dockerd by its pid file (K = 1, 2, 3; 1 is the manager)
#   scripts/swarm-engine.sh start-node K  start it again: it rejoins from its data root
#   scripts/swarm-engine.sh env           AIOTRACKER_SWARM_MANAGER=unix://... and AIOTRACKER_SWARM_NODES=
#                                         unix://...,...,... (`export $(scripts/swarm-engine.sh env)`)
#
# - Reuse when the 3 node engines answer and the manager lists 3 Ready nodes; a node that is down
#   while the manager answers is started again. Else a fresh swarm: what this script left running is
#   stopped and its data roots are wiped (a crashed swarm's raft state would come back otherwise).
# - The dockerds run in the network namespace $NS, which holds only `lo` (`nsenter --net=`: `ip netns
#   exec` remounts /sys and dockerd fails), each in a UTS namespace of its own with hostname
#   aiotracker-nK (else all three report the host's name); node K listens and advertises on
#   127.0.0.1K only. `ingress` and docker_gwbridge are removed before anyone joins (their VXLAN
#   interfaces collide in one namespace): tasks get no network. Nothing talks but on loopback.
# - Each dockerd: --bridge=none, no iptables, forwarding or masquerading; its own data root ($DATA/nK),
#   exec root, pid file and socket ($BASE/nK), an empty config file, log $LOGS-nK.log (defaults below);
#   DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (no pull before a task). The main engine never joins.
# - aiotracker/busybox:latest is imported on each node (create services with --no-resolve-image);
#   node K has the label aiotracker.node=nK.
# - Exit status 3 and one line when namespaces cannot be used (not root, `ip netns add` or nsenter
#   fails): tests skip with that reason.
set -euo pipefail

NS="${AIOTRACKER_SWARM_NETNS:-aiotracker-swarm}"
BASE="${AIOTRACKER_SWARM_RUN_DIR:-/run/aiotracker-swarm}"   # short: unix socket paths are limited
DATA="${AIOTRACKER_SWARM_DATA_ROOT:-/var/lib/aiotracker/swarm}"
IMAGE="${AIOTRACKER_TEST_IMAGE:-aiotracker/busybox:latest}"
START_TIMEOUT="${AIOTRACKER_SWARM_START_TIMEOUT:-120}"
STOP_TIMEOUT="${AIOTRACKER_SWARM_STOP_TIMEOUT:-30}"
LOGS="${AIOTRACKER_SWARM_LOG_PREFIX:-/var/log/aiotracker-swarm}"  # node K logs to $LOGS-nK.log
LOCK=/run/aiotracker-swarm.lock

say() { printf 'swarm-engine: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
skip() { say "$*"; exit 3; }
# shellcheck source=scripts/engine-lib.sh
. "$(dirname "$0")/engine-lib.sh"

sock() { printf '%s/n%s/docker.sock' "$BASE" "$1"; }
D() { local k="$1"; shift; timeout 60 docker -H "unix://$(sock "$k")" "$@"; }
node_answers() { [ -S "$(sock "$1")" ] && curl -sf --max-time 2 --unix-socket "$(sock "$1")" http://d/_ping >/dev/null 2>&1; }
ready_count() { D 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true; }
swarm_answers() { node_answers 1 && node_answers 2 && node_answers 3 && [ "$(ready_count)" = 3 ]; }
# Node K is in the swarm by its own account and by the manager's.
node_ready() {
    [ "$(D "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ] &&
        [ "$(D 1 node inspect "aiotracker-n$1" --format '{{.Status.State}}' 2>/dev/null)" = ready ]
}
wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds, or fail
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.2; done
}
is_ours() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q "$2"; }  # is_ours PID REGEX
# The pid in node K's pid file, when it is alive and is this node's dockerd.
node_pid() {
    local pid
    pid="$(cat "$BASE/n$1/dockerd.pid" 2>/dev/null)" && [ -n "$pid" ] && is_ours "$pid" "^dockerd .*$BASE/n$1/" || return 1
    printf '%s\n' "$pid"
}
stop_pid() {  # SIGTERM, wait, then SIGKILL
    kill -TERM "$1" 2>/dev/null || return 0
    wait_for "$STOP_TIMEOUT" eval "! kill -0 $1 2>/dev/null" && return 0
    say "pid $1 still alive after $STOP_TIMEOUT s: SIGKILL"
    kill -KILL "$1" 2>/dev/null || true
    sleep 0.5
}

unmount_under() {  # each directory and what is under it, deepest first
    local dir m
    for dir in "$@"; do
        findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | sort -r | while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "cannot unmount $m"
        done
    done
}

stop_node() {
    local k="$1" pid f c="$BASE/n$1/e/containerd"
    if pid="$(node_pid "$k")"; then
        say "stopping node $k (dockerd pid $pid)"
        stop_pid "$pid"
    fi
    # After a crashed dockerd: its containerd, and each task's shim and container.
    pid="$(cat "$c/containerd.pid" 2>/dev/null)" && is_ours "$pid" "^containerd .*$c/" && stop_pid "$pid"
    for f in "$c"/daemon/io.containerd.runtime.v2.task/moby/*/init.pid; do
        pid="$(cat "$f" 2>/dev/null)" || continue
        f="$(ps -o ppid= -p "$pid" | tr -d ' ')" || continue
        is_ours "$f" "^/[^ ]*containerd-shim.* -address $c/" && kill -KILL "$pid" "$f" 2>/dev/null
    done
    rm -f "$BASE/n$k/dockerd.pid" "$(sock "$k")"
    unmount_under "$DATA/n$k" "$BASE/n$k"
}

start_node() {
    local k="$1" d="$BASE/n$1" log="$LOGS-n$1.log" pid=""
    [ -e "/run/netns/$NS" ] || die "no network namespace $NS: run '$0 start' first"
    if ! node_pid "$k" >/dev/null; then
        rm -f "$d/dockerd.pid" "$(sock "$k")"
        mkdir -p "$d" "$DATA/n$k"
        [ -f "$BASE/daemon.json" ] || echo '{}' >"$BASE/daemon.json"
        say "starting node $k: aiotracker-n$k on 127.0.0.1$k (log: $log)"
        # setsid: out of the caller's process group; nsenter, unshare and sh exec: $! is dockerd.
        # 9>&-: the lock must not outlive this script in the daemon.
        DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid nsenter --net="/run/netns/$NS" unshare --uts \
            sh -c 'echo "$0" >/proc/sys/kernel/hostname && exec "$@"' "aiotracker-n$k" \
            dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
            --config-file="$BASE/daemon.json" --data-root="$DATA/n$k" --exec-root="$d/e" \
            --pidfile="$d/dockerd.pid" --host="unix://$(sock "$k")" >>"$log" 2>&1 </dev/null 9>&- &
        pid=$!
    fi
    wait_for "$START_TIMEOUT" node_up "$k" "$pid" || die "node $k: dockerd did not answer within $START_TIMEOUT s"
}
node_up() {  # node_up K PID: node K answers; its dockerd (PID) must not have exited
    node_answers "$1" && return 0
    [ -z "$2" ] || kill -0 "$2" 2>/dev/null || { tail -n 20 "$LOGS-n$1.log" >&2; die "node $1: dockerd exited"; }
    return 1
}

import_images() {
    local k tar=""
    for k in 1 2 3; do
        D "$k" image inspect "$IMAGE" >/dev/null 2>&1 && continue
        [ -n "$tar" ] || { tar="$(mktemp)"; rootfs_tar >"$tar"; }
        D "$k" import "${IMAGE_CHANGES[@]}" - "$IMAGE" <"$tar" >/dev/null
        say "imported $IMAGE on node $k"
    done
    [ -z "$tar" ] || rm -f "$tar"
}

need_root() {
    have_root || skip "needs root for network namespaces (ip netns add, nsenter)"
    command -v dockerd >/dev/null || apt_install docker.io
    command -v ip >/dev/null || apt_install iproute2
    command -v nsenter >/dev/null && command -v unshare >/dev/null || apt_install util-linux
    command -v curl >/dev/null || apt_install curl
    exec 9>>"$LOCK"
    flock -w 600 9 || die "another swarm-engine.sh holds $LOCK"
}

stop_all() {
    local k
    for k in 3 2 1; do node_answers "$k" && D "$k" swarm leave --force >/dev/null 2>&1 || true; done
    for k in 3 2 1; do stop_node "$k" & done  # a dockerd takes ~3 s to exit: in parallel
    wait
    unmount_under "$DATA" "$BASE"
    if [ -e "/run/netns/$NS" ]; then ip netns del "$NS" || say "cannot delete namespace $NS"; fi
}

fresh_start() {
    local k err i token left
    stop_all
    rm -rf --one-file-system "$DATA" "$BASE"  # unmounted by stop_all
    mkdir -p "$BASE" "$DATA"
    err="$(ip netns add "$NS" 2>&1)" || skip "cannot create network namespace $NS: $err"
    err="$(nsenter --net="/run/netns/$NS" unshare --uts ip link set lo up 2>&1)" \
        || { ip netns del "$NS" || true; skip "cannot enter network namespace $NS: $err"; }
    say "no swarm answered: starting a fresh one (namespace $NS, sockets $BASE/nK/docker.sock)"
    for k in 1 2 3; do start_node "$k"; done
    D 1 swarm init --advertise-addr 127.0.0.11:2377 --listen-addr 127.0.0.11:2377 \
        --data-path-addr 127.0.0.11 >/dev/null
    for i in $(seq 100); do  # docker_gwbridge is refused while ingress's sandbox still uses it
        left=0
        D 1 network inspect ingress >/dev/null 2>&1 && { left=1; echo y | D 1 network rm ingress >/dev/null 2>&1 || true; }
        D 1 network inspect docker_gwbridge >/dev/null 2>&1 && { left=1; D 1 network rm docker_gwbridge >/dev/null 2>&1 || true; }
        [ "$left" = 1 ] || break; [ "$i" -lt 100 ] || die "cannot remove the ingress network and docker_gwbridge"
        sleep 0.2
    done
    token="$(D 1 swarm join-token -q worker)"
    for k in 2 3; do
        D "$k" swarm join --token "$token" --advertise-addr "127.0.0.1$k:2377" \
            --listen-addr "127.0.0.1$k:2377" --data-path-addr "127.0.0.1$k" 127.0.0.11:2377 >/dev/null
    done
    wait_for "$START_TIMEOUT" swarm_answers || { D 1 node ls >&2; die "not 3 nodes Ready within $START_TIMEOUT s"; }
    for k in 1 2 3; do D 1 node update --label-add "aiotracker.node=n$k" "aiotracker-n$k" >/dev/null; done
}

node_arg() { case "${1:-}" in 1|2|3) ;; *) die "usage: $0 $2 1|2|3" ;; esac; }

case "${1:-start}" in
    start)
        if swarm_answers; then import_images; exit 0; fi
        need_root
        # A node stopped (stop-node) or crashed while the manager still answers: start it again.
        if node_answers 1 && D 1 node ls >/dev/null 2>&1; then
            for k in 2 3; do node_answers "$k" || start_node "$k"; done
            wait_for 30 swarm_answers || true
        fi
        if swarm_answers; then import_images; exit 0; fi
        fresh_start
        import_images
        say "swarm up: $(D 1 node ls --format '{{.Hostname}}' | tr '\n' ' ')"
        ;;
    stop) need_root; stop_all; say "stopped" ;;
    stop-node|start-node)
        node_arg "${2:-}" "$1"
        need_root
        if [ "$1" = stop-node ]; then stop_node "$2"; else
            start_node "$2"
            wait_for "$START_TIMEOUT" node_ready "$2" || die "node $2 not back in the swarm within $START_TIMEOUT s"
        fi
        ;;
    env)
        printf 'AIOTRACKER_SWARM_MANAGER=unix://%s\n' "$(sock 1)"
        printf 'AIOTRACKER_SWARM_NODES=unix://%s,unix://%s,unix://%s\n' "$(sock 1)" "$(sock 2)" "$(sock 3)"
        ;;
    *) die "usage: $0 [start|stop|stop-node K|start-node K|env]" ;;
esac
