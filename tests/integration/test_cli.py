"""The real console script (``.venv/bin/aiotracker``, next to the interpreter) run as a
subprocess against the real engine (Docker, or Podman with ``AIOTRACKER_TEST_ENGINE=podman``:
the script's tracker follows ``DOCKER_HOST``). Its containers carry the run's label through the
hidden ``AIOTRACKER_LABELS`` variable; each test has a session of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aiotracker._labels import LEASE_LABEL, SESSION_LABEL
from tests.conftest import RUN_LABEL, RUN_TOKEN, TEST_IMAGE
from tests.integration._cli import (
    adocker,
    eventually,
    remove_session_containers,
    session_containers,
)

SCRIPT = Path(sys.executable).with_name("aiotracker")
ID = re.compile(r"^[0-9a-f]{64}$")

pytestmark = pytest.mark.timeout(60)


class Tool:
    """The console script on one session: ``tool("ls", "--json")``."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.env = {
            **os.environ, "AIOTRACKER_SESSION": session,
            "AIOTRACKER_LABELS": f"{RUN_LABEL}={RUN_TOKEN}",
        }  # fmt: skip
        for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
            self.env.pop(name, None)  # a pipe must look like a pipe to rich as well

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args))


@pytest.fixture
def tool(session_name: str) -> Iterator[Tool]:
    assert SCRIPT.is_file(), f"no console script at {SCRIPT}: pip install -e '.[cli]'"
    yield Tool(session_name)
    remove_session_containers(session_name)


def test_run_wait_exits_with_the_jobs_status_and_writes_its_output(
    tool: Tool, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    done = tool("run", "--wait", "--output", str(out), TEST_IMAGE, "--", "sh", "-c",
                "echo hi; exit 3")  # fmt: skip
    assert done.returncode == 3, done.stderr
    job_id = done.stdout.strip()
    assert ID.match(job_id), done.stdout
    assert done.stderr == ""
    assert out.read_text() == "hi\n"  # complete when the command returns

    assert tool.json("state", job_id) == {"id": job_id, "state": "failed"}
    info = tool.json("info", job_id[:12])
    assert info["job_id"] == job_id
    assert info["exit_status"] == 3
    assert info["state"] == "failed"
    assert info["finish_time"] is not None
    assert {"id": job_id, "state": "failed"} in tool.json("ls")
    assert tool.ok("logs", job_id) == "hi\n"


def test_hold_release_terminate_wait_timeout_and_rm(tool: Tool) -> None:
    held = tool.json("run", "--hold", "--name", "sleeper", TEST_IMAGE, "--", "sleep", "30")
    job_id = held["id"]
    assert held["state"] == "queued_held"
    assert tool.json("ls", "--state", "queued_held") == [{"id": job_id, "state": "queued_held"}]

    started = time.monotonic()
    timed_out = tool("wait", "--timeout", "0.5", job_id)
    assert timed_out.returncode == 124
    assert timed_out.stderr.startswith("aiotracker: ")
    assert time.monotonic() - started < 10

    assert tool.json("release", "sleeper")["state"] == "running"  # named by its job name
    refused = tool("rm", job_id)  # not finished
    assert refused.returncode == 1
    assert "only a finished job" in refused.stderr
    # The kill is sent; its end is known at the die event: at once on Docker, ~0.1-0.25 s
    # later on Podman (its events come from a file), so it may still read running here.
    assert tool.json("terminate", job_id)["state"] in ("failed", "running")
    waited = tool("wait", job_id)
    assert (waited.returncode, waited.stdout) == (1, "failed\n")

    assert tool.json("rm", job_id) == {"id": job_id, "deleted": True}
    gone = tool("state", job_id)
    assert gone.returncode == 2
    assert gone.stderr.startswith("aiotracker: ")
    assert tool.json("ls") == []


def test_logs_watch_and_bad_input(tool: Tool) -> None:
    job_id = tool.json("run", TEST_IMAGE, "--", "sh", "-c", "sleep 1; echo out; echo err >&2")["id"]
    lines = [json.loads(line) for line in tool.ok("--json", "watch", job_id).splitlines()]
    assert lines[0]["id"] == job_id
    assert lines[0]["old_state"] is None
    assert lines[-1]["new_state"] == "done"
    assert tool.ok("logs", job_id) == "out\n"
    assert tool.ok("logs", "--stderr", job_id) == "err\n"

    unknown = tool("run", "no/such-image:1", "--", "true")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("aiotracker: ")
    assert unknown.stderr.count("\n") == 1  # one line, no traceback
    bad_env = tool("run", "--env", "NOVALUE", TEST_IMAGE, "--", "true")
    assert bad_env.returncode == 2
    assert "KEY=VALUE" in bad_env.stderr


def test_an_unreachable_engine_exits_3(tool: Tool, tmp_path: Path) -> None:
    done = tool("--docker-url", f"unix://{tmp_path}/no.sock", "ls")
    assert done.returncode == 3
    assert done.stderr.startswith("aiotracker: ")
    assert "Traceback" not in done.stderr


def test_categories_and_machines(tool: Tool) -> None:
    assert TEST_IMAGE in tool.json("categories")
    assert TEST_IMAGE in tool.ok("categories").splitlines()
    [machine] = tool.json("machines")
    assert machine["name"]
    assert machine["cores_per_socket"] >= 1
    assert machine["physical_memory"] > 0


ARRAY = ["array", "--end", "3", "--max-parallel", "2", "--wait"]


def test_array_wait_without_a_terminal_prints_the_final_counts(tool: Tool, tmp_path: Path) -> None:
    output = str(tmp_path / "task-$DRMAA2_INDEX$.out")
    done = tool(*ARRAY, "--output", output, TEST_IMAGE, "--", "sh", "-c",
                'echo "task $TASK_ID"; [ "$TASK_ID" != 2 ]')  # fmt: skip
    assert done.returncode == 1, done.stderr  # task 2 failed
    array_id, counts = done.stdout.splitlines()
    assert counts == f"array {array_id}: 3 tasks, 0 queued, 0 running, 2 done, 1 failed"
    assert "\x1b" not in done.stdout  # no live display into a pipe
    assert "\r" not in done.stdout
    assert "━" not in done.stdout
    for index in (1, 2, 3):
        assert (tmp_path / f"task-{index}.out").read_text() == f"task {index}\n"
    tasks = tool.json("ls", "--array", array_id)
    assert [t["state"] for t in tasks] == ["done", "failed", "done"]


def _run_in_pty(tool: Tool, *args: str, timeout: float = 30) -> tuple[int, bytes]:
    """The script with its stdout on a pseudo-terminal: its exit status and all it wrote."""
    main, secondary = pty.openpty()
    env = {**tool.env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen(
        [str(SCRIPT), *args], env=env, stdin=subprocess.DEVNULL, stdout=secondary,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(secondary)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            out += data
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    return status, bytes(out)


def test_array_wait_on_a_terminal_shows_a_live_progress(tool: Tool) -> None:
    status, out = _run_in_pty(tool, *ARRAY, TEST_IMAGE, "--", "sleep", "0.4")
    assert status == 0, out
    text = out.decode(errors="replace")
    assert "━" in text  # rich's progress bar
    assert "\x1b[" in text  # drawn with control sequences...
    assert text.count("\r") >= 2  # ...and redrawn in place
    assert "3/3" in text
    array_id = text.splitlines()[0].strip()
    assert f"array {array_id}: 3 tasks, 0 queued, 0 running, 3 done, 0 failed" in text


def test_watch_on_a_terminal_redraws_a_table(tool: Tool) -> None:
    job_id = tool.ok("run", TEST_IMAGE, "--", "sleep", "0.5").strip()
    status, out = _run_in_pty(tool, "watch", job_id)
    assert status == 0, out
    text = out.decode(errors="replace")
    assert "JOB ID" in text
    assert job_id[:12] in text
    assert "\x1b[1A" in text  # the table is redrawn in place (cursor up)
    assert "{" not in text  # not the JSON lines of a pipe
    assert "done" in text


def test_ctrl_c_exits_130_quietly(tool: Tool) -> None:
    job_id = tool.json("run", "--hold", TEST_IMAGE, "--", "true")["id"]
    proc = subprocess.Popen(
        [str(SCRIPT), "wait", job_id], env=tool.env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)  # started, connected and waiting
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert (out, err) == ("", "")


def test_serve_help(tool: Tool) -> None:
    out = tool.ok("serve", "--help")
    assert "--allow-image" in out
    assert "--observer" in out


# -- serve: the README's dashboard, run as a user runs it ------------------------------------

# The line ``serve`` prints once it listens (README.md: "open the printed URL").
SERVED = re.compile(
    r"aiotracker: session '(?P<session>[^']+)' served at "
    r"(?P<base>http://127\.0\.0\.1:(?P<port>[0-9]+))/#token=(?P<token>[A-Za-z0-9_-]{16,})"
)
ALLOWED = TEST_IMAGE.rpartition(":")[0] + ":*"  # the README's 'aiotracker/busybox:*'


class Served:
    """An ``aiotracker serve`` process, and what its printed URL says."""

    def __init__(self, proc: asyncio.subprocess.Process, base: str, token: str) -> None:
        self.proc, self.base, self.token = proc, base, token
        self.auth = {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def serving(tool: Tool) -> AsyncIterator[Served]:
    """``aiotracker --session S serve --port 0 --allow-image ...`` (a free port: the one
    it printed), until the test stops it; killed if it is still running at the end."""
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), "--session", tool.session, "serve", "--port", "0", "--allow-image",
        ALLOWED, env=tool.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        served = SERVED.fullmatch(line.rstrip("\n"))
        if served is None:
            proc.kill()
            _, err = await proc.communicate()
            raise AssertionError(f"printed {line!r}, stderr {err!r}")
        assert served["session"] == tool.session
        assert int(served["port"]) != 0
        yield Served(proc, served["base"], served["token"])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def running_containers(session: str) -> dict[str, str]:
    """The session's running containers: id -> its lease label ("" for a job)."""
    out = await adocker(
        "ps", "--no-trunc", "--filter", f"label={SESSION_LABEL}={session}",
        "--format", f'{{{{.ID}}}} {{{{.Label "{LEASE_LABEL}"}}}}',
    )  # fmt: skip
    return {line.split()[0]: "".join(line.split()[1:]) for line in out.splitlines()}


async def stop_with_a_pending_poll(
    tool: Tool, http: aiohttp.ClientSession, served: Served, signum: int
) -> None:
    """A ``sleep 30`` job's long poll pending, ``signum`` to the process: the poll is
    answered 503 at once, the process exits 0 within 2 s and leaves nothing of its own
    running (its lease's ``cat`` ends); the job, as every job of a session, outlives it."""
    template = {"jobCategory": TEST_IMAGE, "command": ["sleep", "30"]}
    async with http.post(f"{served.base}/api/jobs", headers=served.auth,
                         json={"template": template}) as resp:  # fmt: skip
        assert resp.status == 201, await resp.text()
        job_id = (await resp.json())["id"]
    poll = asyncio.ensure_future(http.get(
        f"{served.base}/api/jobs/{job_id}/wait", headers=served.auth, params={"timeout": "60"}
    ))  # fmt: skip
    await asyncio.sleep(0.5)  # at the service, waiting
    assert not poll.done()

    sent = time.monotonic()
    served.proc.send_signal(signum)
    async with asyncio.timeout(10):
        answer = await poll
        answered = time.monotonic() - sent
        status = await served.proc.wait()
        stopped = time.monotonic() - sent
    async with answer:
        assert (answer.status, (await answer.json())["error"]) == (503, "closing")
    assert answered < 1, answered
    assert stopped < 2, stopped
    assert status == 0
    assert served.proc.stdout is not None
    assert served.proc.stderr is not None
    assert (await served.proc.stdout.read(), await served.proc.stderr.read()) == (b"", b"")

    async def only_the_job_runs() -> bool:
        return await running_containers(tool.session) == {job_id: ""}

    await eventually(only_the_job_runs, "the service's lease stopped", timeout=10)
    assert (await asyncio.to_thread(tool.json, "terminate", job_id))["id"] == job_id
    waited = await asyncio.to_thread(tool, "wait", job_id)
    assert (waited.returncode, waited.stdout) == (1, "failed\n")
    assert await running_containers(tool.session) == {}


async def test_serve_as_the_readme_runs_it_then_sigterm(tool: Tool) -> None:
    """``aiotracker serve`` as a subprocess: the printed URL's page and token work, a job runs
    through the API (long poll, output), another image is refused, and SIGTERM stops it."""
    image_id = (await adocker("image", "inspect", "--format", "{{.Id}}", TEST_IMAGE)).strip()
    async with serving(tool) as served, aiohttp.ClientSession() as http:
        async with http.get(f"{served.base}/") as page:  # the dashboard, no token needed
            assert page.status == 200
            assert page.content_type == "text/html"
            assert "<title>aiotracker</title>" in await page.text()
        async with http.get(f"{served.base}/api/session") as resp:
            assert resp.status == 401
        async with http.get(f"{served.base}/api/session", headers=served.auth) as resp:
            assert resp.status == 200
            assert (await resp.json())["session"] == tool.session

        template = {"jobCategory": TEST_IMAGE, "command": ["sh", "-c", "echo hi"]}
        async with http.post(f"{served.base}/api/jobs", headers=served.auth,
                             json={"template": template}) as resp:  # fmt: skip
            assert resp.status == 201, await resp.text()
            job_id = (await resp.json())["id"]
        assert ID.match(job_id)
        async with http.get(f"{served.base}/api/jobs/{job_id}/wait", headers=served.auth,
                            params={"timeout": "60"}) as resp:  # fmt: skip
            assert await resp.json() == {"id": job_id, "state": "done", "timed_out": False}
        async with http.get(f"{served.base}/api/jobs/{job_id}/output",
                            headers=served.auth) as resp:  # fmt: skip
            assert (resp.status, await resp.read()) == (200, b"hi\n")

        # The same image by its id: the engine has it, the service's policy refuses it.
        refused = {**template, "jobCategory": image_id}
        async with http.post(f"{served.base}/api/jobs", headers=served.auth,
                             json={"template": refused}) as resp:  # fmt: skip
            assert resp.status == 403
            assert (await resp.json())["error"] == "refused"
        assert await session_containers(tool.session) == [job_id]

        await stop_with_a_pending_poll(tool, http, served, signal.SIGTERM)


async def test_serve_stops_on_ctrl_c(tool: Tool) -> None:
    """Ctrl-C (SIGINT), the way ``serve --help`` says it stops, ends it as SIGTERM does:
    exit 0, a pending long poll answered 503 at once."""
    async with serving(tool) as served, aiohttp.ClientSession() as http:
        await stop_with_a_pending_poll(tool, http, served, signal.SIGINT)


def test_serve_on_a_port_in_use_prints_no_url(tool: Tool) -> None:
    """A port already taken: one line on stderr, exit 1, and no URL printed to open."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = tool("serve", "--port", str(port), "--allow-image", ALLOWED)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"aiotracker: cannot serve on 127.0.0.1:{port}: ")
    assert done.stderr.count("\n") == 1
