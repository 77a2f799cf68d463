#!/usr/bin/env bash
# The whole test suite (unit and integration) against a real engine; sets up what it needs.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit` or `scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
