#!/usr/bin/env bash
# Set up everything the demo and the tests need: a virtual environment with aiotracker and its
# dev tools in .venv, a Docker engine that answers, and the test image.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c 'import aiotracker, pytest, pytest_asyncio, mypy, ruff' >/dev/null 2>&1 \
    || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
    touch .venv/.installed
fi
bash scripts/docker-engine.sh
