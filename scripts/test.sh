#!/usr/bin/env bash
# The whole test suite against real engines; sets up what it needs.
#
# With no arguments: unit and integration tests against Docker, then the integration tests
# against Podman (scripts/podman-engine.sh installs and starts it; AIOTRACKER_ENGINES=docker
# leaves it out). With arguments, they go to one pytest run, e.g. `scripts/test.sh tests/unit`
# or `scripts/test.sh -m slow`, against Docker, or Podman with AIOTRACKER_TEST_ENGINE=podman.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -gt 0 ]; then
    [ "${AIOTRACKER_TEST_ENGINE:-docker}" = podman ] && bash scripts/podman-engine.sh
    exec .venv/bin/python -m pytest "$@"
fi
status=0
AIOTRACKER_TEST_ENGINE=docker .venv/bin/python -m pytest || status=$?
if [[ " ${AIOTRACKER_ENGINES:-docker podman} " == *" podman "* ]]; then
    bash scripts/podman-engine.sh
    AIOTRACKER_TEST_ENGINE=podman .venv/bin/python -m pytest tests/integration || status=$?
fi
exit "$status"
