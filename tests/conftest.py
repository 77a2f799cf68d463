"""Shared test configuration: a per-run label on every container, removed at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

TEST_IMAGE = os.environ.get("AIOTRACKER_TEST_IMAGE", "aiotracker/busybox:latest")
RUN_LABEL = "aiotracker.test-run"
RUN_TOKEN = os.environ.get("AIOTRACKER_TEST_RUN") or uuid.uuid4().hex[:12]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove every container this run made (by label), whatever the tests left behind."""
    if shutil.which("docker") is None:
        return
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={RUN_LABEL}={RUN_TOKEN}"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(
            ["docker", "rm", "-f", "-v", *ids], capture_output=True, check=False, timeout=120
        )
