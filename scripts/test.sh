#!/usr/bin/env bash
# The whole test suite against real engines; sets up what it needs.
#
# With no arguments: unit and integration tests against Docker, then the integration tests
# against Podman (scripts/podman-engine.sh installs and starts it), then the tracker's
# integration tests and Swarm's own on a 3-node swarm (scripts/swarm-engine.sh; the files in
# SWARM_TESTS, tests/integration/SWARM.md says why not the others). AIOTRACKER_ENGINES (default
# "docker podman swarm") leaves engines out. With arguments, they go to one pytest run, e.g.
# `scripts/test.sh tests/unit` or `scripts/test.sh -m slow`, against Docker, or the engine of
# AIOTRACKER_TEST_ENGINE (podman, swarm).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

SWARM_TESTS=(
    tests/integration/test_swarm.py
    tests/integration/test_tracker.py
    tests/integration/test_arrays.py
    tests/integration/test_session_layer.py
    tests/integration/test_job_info.py
    tests/integration/test_timers.py
    tests/integration/test_docs.py
)

# Start the swarm and export its addresses; status 3: namespaces cannot be used here.
swarm_up() {
    local status=0
    bash scripts/swarm-engine.sh start || status=$?
    [ "$status" -eq 0 ] || return "$status"
    local line
    while IFS= read -r line; do export "${line?}"; done < <(bash scripts/swarm-engine.sh env)
}

if [ $# -gt 0 ]; then
    case "${AIOTRACKER_TEST_ENGINE:-docker}" in
        podman) bash scripts/podman-engine.sh ;;
        swarm) swarm_up ;;
    esac
    exec .venv/bin/python -m pytest "$@"
fi
engines=" ${AIOTRACKER_ENGINES:-docker podman swarm} "
status=0
if [[ "$engines" == *" docker "* ]]; then
    AIOTRACKER_TEST_ENGINE=docker .venv/bin/python -m pytest || status=$?
fi
if [[ "$engines" == *" podman "* ]]; then
    bash scripts/podman-engine.sh
    AIOTRACKER_TEST_ENGINE=podman .venv/bin/python -m pytest tests/integration || status=$?
fi
if [[ "$engines" == *" swarm "* ]]; then
    # A swarm that answered before is reused and left running; one started here is stopped
    # (by its pids) when the pass is over.
    started_swarm=1
    manager=$(bash scripts/swarm-engine.sh env | sed -n 's/^AIOTRACKER_SWARM_MANAGER=//p')
    if docker -H "$manager" node ls >/dev/null 2>&1; then started_swarm=0; fi
    swarm=0
    swarm_up || swarm=$?
    if [ "$swarm" -eq 0 ]; then
        AIOTRACKER_TEST_ENGINE=swarm .venv/bin/python -m pytest "${SWARM_TESTS[@]}" || status=$?
        if [ "$started_swarm" -eq 1 ]; then bash scripts/swarm-engine.sh stop; fi
    elif [ "$swarm" -eq 3 ]; then
        echo "test.sh: Swarm tests skipped: network namespaces cannot be used here" >&2
    else
        status=$swarm
    fi
fi
exit "$status"
