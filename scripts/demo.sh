#!/usr/bin/env bash
# A real job end to end through aiotracker: sets up, then runs examples/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/demo.py "$@"
