"""aiotracker.web against the real engine: the API end to end, two service processes on one
session, and the dashboard in headless Chromium (a row's state and the counts change
without a reload; a button terminates a job; a screenshot is kept as a test artifact)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import aiotracker.web
from aiotracker import JobState
from aiotracker.web import Service
from tests.conftest import RUN_LABEL, RUN_TOKEN, TEST_IMAGE
from tests.integration._chromium import browser, json_js

TOKEN = "integration-token-0123456789"
ARTIFACTS = Path(os.environ.get("AIOTRACKER_TEST_ARTIFACTS", "test-artifacts"))
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def start(session: str, **options: Any) -> tuple[web.AppRunner, str, Service]:
    app = web.Application()
    service = aiotracker.web.setup(
        app, session=session, token=TOKEN, allowed_images=[TEST_IMAGE],
        tracker_options={"labels": {RUN_LABEL: RUN_TOKEN}}, **options,
    )  # fmt: skip
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", service


@pytest.fixture
async def served(session_name: str) -> AsyncIterator[tuple[str, Service]]:
    runner, base, service = await start(session_name)
    try:
        yield base, service
    finally:
        await runner.cleanup()


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with http.post(url, json=body, headers=AUTH) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def get(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with http.get(url, headers=AUTH, params=params or None) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_job_through_the_api(served: tuple[str, Service]) -> None:
    """Submitted, waited for by long poll, its output streamed, its info and the session's
    counts read: all against Docker (or Podman)."""
    base, _ = served
    async with aiohttp.ClientSession() as http:
        job = await post(http, f"{base}/api/jobs", {"template": {
            "jobCategory": TEST_IMAGE, "command": ["sh", "-c", "echo out; echo err >&2; exit 4"],
        }})  # fmt: skip
        waited = await get(http, f"{base}/api/jobs/{job['id']}/wait", timeout="60")
        assert waited == {"id": job["id"], "state": "failed", "timed_out": False}
        async with http.get(f"{base}/api/jobs/{job['id']}/output", headers=AUTH) as resp:
            assert await resp.read() == b"out\n"
        async with http.get(f"{base}/api/jobs/{job['id']}/output", headers=AUTH,
                            params={"stderr": "1"}) as resp:  # fmt: skip
            assert await resp.read() == b"err\n"
        info = await get(http, f"{base}/api/jobs/{job['id']}/info")
        assert (info["exit_status"], info["state"]) == (4, "failed")
        session = await get(http, f"{base}/api/session")
        assert session["counts"]["failed"] == 1


def serve_process(session: str, port: int, role: str, log: Path) -> subprocess.Popen[bytes]:
    code = (
        "import aiotracker.web as w; "
        f"w.run_service(session={session!r}, host='127.0.0.1', port={port}, token={TOKEN!r}, "
        f"allowed_images=[{TEST_IMAGE!r}], role={role!r}, "
        f"tracker_options={{'labels': {{{RUN_LABEL!r}: {RUN_TOKEN!r}}}}})"
    )
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ready(http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(30):
        while True:
            assert proc.poll() is None, "the service process exited"
            try:
                async with http.get(f"{base}/api/session", headers=AUTH) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def test_two_service_processes_on_one_session(session_name: str, tmp_path: Path) -> None:
    """A worker process and an observer process serve one session: a job submitted to the
    worker is seen by the observer's event stream and long poll; the observer refuses
    submissions. Both stop on SIGTERM in well under their jobs' run time."""
    ports = free_port(), free_port()
    procs = [
        serve_process(session_name, port, role, tmp_path / f"{role}.log")
        for port, role in zip(ports, ("worker", "observer"), strict=True)
    ]
    worker, observer = (f"http://127.0.0.1:{p}" for p in ports)
    try:
        async with aiohttp.ClientSession() as http:
            await ready(http, worker, procs[0])
            await ready(http, observer, procs[1])
            async with http.get(f"{observer}/api/events", headers=AUTH) as events:
                job = await post(http, f"{worker}/api/jobs", {"template": {
                    "jobCategory": TEST_IMAGE, "command": ["sleep", "0.5"]}})  # fmt: skip
                seen = []
                async with asyncio.timeout(30):
                    async for raw in events.content:
                        line = raw.decode().strip()
                        if line.startswith("data: "):
                            change = json.loads(line[6:])
                            if change.get("job_id") == job["id"]:
                                seen.append(change["new_state"])
                                if change["new_state"] == "done":
                                    break
            assert seen[-1] == "done"
            assert "running" in seen
            waited = await get(http, f"{observer}/api/jobs/{job['id']}/wait", timeout="30")
            assert waited["state"] == "done"
            async with http.post(f"{observer}/api/jobs", headers=AUTH, json={"template": {
                    "jobCategory": TEST_IMAGE, "command": ["true"]}}) as resp:  # fmt: skip
                assert resp.status == 400
                assert (await resp.json())["error"] == "unsupported"
            long = await post(http, f"{worker}/api/jobs", {"template": {
                "jobCategory": TEST_IMAGE, "command": ["sleep", "30"]}})  # fmt: skip
            poll = asyncio.create_task(
                http.get(f"{worker}/api/jobs/{long['id']}/wait", headers=AUTH,
                         params={"timeout": "60"})
            )  # fmt: skip
            await asyncio.sleep(0.3)
            started = time.monotonic()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                await asyncio.to_thread(proc.wait, 20)
            stopped = time.monotonic() - started
            resp = await poll
            assert resp.status == 503
            resp.release()
        assert stopped < 5, stopped
        assert [p.returncode for p in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        subprocess.run(["docker", "rm", "-f", long["id"]] if "long" in locals() else ["true"],
                       capture_output=True, check=False, timeout=60)  # fmt: skip


async def test_the_dashboard_in_chromium(served: tuple[str, Service]) -> None:
    """The page lists the session's jobs; a new job's row appears and turns RUNNING and the
    running count goes up without a reload; its terminate button ends it FAILED, and the
    row and counts follow; a screenshot is kept in test-artifacts/."""
    base, service = served
    tracker = service.tracker
    done = await tracker.add_job(aiotracker.JobTemplate(job_category=TEST_IMAGE,
                                                        remote_command="true"))  # fmt: skip
    assert await tracker.wait(done, timeout=60) is JobState.DONE
    async with browser(f"{base}/#token={TOKEN}") as page:
        row = f"document.querySelector('tr[data-job={json_js(done)}]')"
        await page.until(f"{row} && {row}.querySelector('.state').textContent === 'done'")
        await page.until("document.getElementById('status').textContent === 'live'")
        count = "Number(document.querySelector('#count-running b').textContent)"
        assert await page.evaluate(count) == 0
        assert await page.evaluate("location.hash") == ""  # the token left the URL
        ticking = aiotracker.JobTemplate(
            job_category=TEST_IMAGE, remote_command="sh", args=["-c", "echo tick; sleep 60"]
        )
        job_id = await tracker.add_job(ticking)
        row = f"document.querySelector('tr[data-job={json_js(job_id)}]')"
        await page.until(f"{row} && {row}.querySelector('.state').textContent === 'running'")
        assert await page.until(f"{count} === 1")
        await page.evaluate(f"{row}.click()")
        await page.until("document.getElementById('output').textContent.includes('tick')")
        await page.screenshot(ARTIFACTS / "dashboard.png")
        await page.evaluate(f"{row}.querySelector('button[data-action=terminate]').click()")
        assert await tracker.wait(job_id, timeout=30) is JobState.FAILED
        await page.until(f"{row}.querySelector('.state').textContent === 'failed'")
        assert await page.until(f"{count} === 0")
        assert (
            await page.evaluate("Number(document.querySelector('#count-failed b').textContent)")
            == 1
        )
        await page.screenshot(ARTIFACTS / "dashboard-after-terminate.png")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


async def test_the_example_service_runs(session_name: str) -> None:
    """examples/service.py, started as the docs say: it serves its own route and the API
    with the token it was given, and stops at SIGTERM."""
    port = free_port()
    example = Path(__file__).parents[2] / "examples" / "service.py"
    env = {**os.environ, "AIOTRACKER_TOKEN": TOKEN, "AIOTRACKER_PORT": str(port),
           "AIOTRACKER_SESSION": session_name}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(example), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == f"serving {base}/#token={TOKEN}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/hello") as resp:
                assert await resp.json() == {"session": session_name, "jobs": 0}
            assert (await get(http, f"{base}/api/session"))["session"] == session_name
            async with http.get(f"{base}/api/session") as resp:
                assert resp.status == 401
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
    assert proc.returncode == 0
