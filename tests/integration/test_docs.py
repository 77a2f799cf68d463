"""Every Python code sample of README.md and docs/*.md runs, as written, against the engine
of the run: each file's samples in order, in one namespace, with top-level await."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ENGINE

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def samples(path: Path) -> list[str]:
    return _BLOCK.findall(path.read_text())


def is_swarm(code: str) -> bool:
    """A sample of Swarm's (it opens a swarm tracker or monitor): run on the swarm pass only,
    where the swarm is up; the others run on Docker and Podman."""
    return bool(re.search(r"\bSwarm(Tracker|MonitoringSession)\(", code))


def samples_here(path: Path) -> list[str]:
    return [code for code in samples(path) if is_swarm(code) == (ENGINE == "swarm")]


def test_the_readme_and_the_docs_have_samples() -> None:
    """The test below would pass vacuously if the extraction found nothing."""
    assert len(samples(ROOT / "README.md")) >= 2
    assert samples(ROOT / "docs" / "web.md")


def _sessions(code: str) -> set[str]:
    return set(re.findall(r'(?:DockerTracker|JobSession|SwarmTracker)\("([^"]+)"', code)) | set(
        re.findall(r'session="([^"]+)"', code)
    )


@pytest.mark.parametrize("path", [p for p in DOCS if samples_here(p)], ids=lambda p: p.name)
async def test_samples_run(path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
    used: set[str] = set()
    try:
        for number, code in enumerate(samples_here(path), 1):
            used |= _sessions(code)
            compiled = compile(code, f"{path.name} sample {number}", "exec",
                               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # fmt: skip
            result = eval(compiled, namespace)
            if result is not None:
                await result
    finally:
        for session in used:  # the samples' jobs go with the test
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label=drmaa2_jobsession={session}"],
                capture_output=True, text=True, check=False, timeout=60,
            ).stdout.split()  # fmt: skip
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False,
                               timeout=120)  # fmt: skip
            if ENGINE == "swarm":
                services = subprocess.run(
                    ["docker", "service", "ls", "-q", "--filter",
                     f"label=drmaa2_jobsession={session}"],
                    capture_output=True, text=True, check=False, timeout=60,
                ).stdout.split()  # fmt: skip
                if services:
                    subprocess.run(["docker", "service", "rm", *services], capture_output=True,
                                   check=False, timeout=120)  # fmt: skip
