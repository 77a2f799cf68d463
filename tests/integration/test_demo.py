"""The README's demo, end to end, against the engine of the run (Docker, or Podman with
AIOTRACKER_TEST_ENGINE=podman): what a new user runs first must work on both."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

DEMO = Path(__file__).parents[2] / "examples" / "demo.py"


async def test_demo_runs_end_to_end() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(DEMO), env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "finished done" in text, text
    assert "hello from" in text, text
    assert "to stderr" in text, text
    assert [line.split()[-1] for line in text.splitlines() if "tick" in line] == ["1", "2", "3"]
    assert "6 tasks ['DONE']" in text, text
