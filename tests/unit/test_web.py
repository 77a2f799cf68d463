"""aiotracker.web through a real aiohttp server on 127.0.0.1 and a real HTTP client, over
the fake engine (jobs' lives stepped by the test): every route, every refusal, statuses,
shutdown. The real engine's side (and the dashboard in Chromium) is in
tests/integration/test_web.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import aiotracker.web
from aiotracker._engine.fake import FakeEngine
from aiotracker.web import Service
from tests.unit.test_races import IMAGE, SESSION, until

TOKEN = "t" * 32


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, service: Service) -> None:
        self.http, self.base, self.service = session, base, service

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
        raw: bytes | None = None, **params: str,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.http.request(
            method, self.base + path, data=data, headers=headers, params=params or None
        ) as resp:
            text = await resp.read()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text


async def serve(engine: FakeEngine, **options: Any) -> tuple[web.AppRunner, str, Service]:
    app = web.Application()
    options.setdefault("allowed_images", [IMAGE])
    service = aiotracker.web.setup(
        app, session=SESSION, token=TOKEN, tracker_options={"engine": engine, "engine_timeout": 2},
        **options,
    )  # fmt: skip
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", service


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def client(engine: FakeEngine) -> AsyncIterator[Client]:
    runner, base, service = await serve(engine)
    async with aiohttp.ClientSession() as http:
        yield Client(http, base, service)
    await runner.cleanup()


def template(**fields: Any) -> dict[str, Any]:
    return {"jobCategory": IMAGE, "command": ["sh", "-c", "true"], **fields}


async def submit(client: Client, **fields: Any) -> str:
    status, body = await client.call("POST", "/api/jobs", {"template": template(**fields)})
    assert status == 201, body
    return str(body["id"])


async def test_every_route_needs_the_token(client: Client) -> None:
    """No token, a wrong one, another scheme: 401 on every API route; the dashboard page
    (static, no data) is served without it."""
    for method, path, _ in aiotracker.web.ROUTES:
        path = path.replace("{job_id}", "abc").replace("{array_id}", "abc")
        for token in (None, "x" * 32):
            status, body = await client.call(method, path, {}, token=token)
            assert status == 401, (method, path, body)
    status, page = await client.call("GET", "/", token=None)
    assert status == 200
    assert b"<title>aiotracker</title>" in page


async def test_submit_state_info_template_wait_and_delete(
    client: Client, engine: FakeEngine
) -> None:
    """A job's whole life through the API, the template read back in the Go JSON."""
    job_id = await submit(client, jobName="web-job", jobEnvironment={"A": "1"})
    assert (await client.call("GET", f"/api/jobs/{job_id}"))[1]["state"] == "running"
    status, body = await client.call("GET", f"/api/jobs/{job_id[:12]}/template")
    assert status == 200
    assert body["remoteCommand"] == "sh"
    assert body["args"] == ["-c", "true"]
    assert body["jobEnvironment"] == {"A": "1"}
    status, body = await client.call("GET", f"/api/jobs/{job_id}/wait", timeout="0.05")
    assert (status, body["state"], body["timed_out"]) == (200, "running", True)
    engine.exit(job_id, 3)
    status, body = await client.call("GET", f"/api/jobs/{job_id}/wait", timeout="5")
    assert (status, body) == (200, {"id": job_id, "state": "failed", "timed_out": False})
    status, info = await client.call("GET", f"/api/jobs/{job_id}/info")
    assert (status, info["exit_status"], info["state"]) == (200, 3, "failed")
    status, body = await client.call("GET", "/api/jobs", state="FAILED")
    assert [j["id"] for j in body["jobs"]] == [job_id]
    assert body["counts"]["failed"] == 1
    assert (await client.call("DELETE", f"/api/jobs/{job_id}"))[0] == 204
    assert (await client.call("GET", f"/api/jobs/{job_id}"))[0] == 404


async def test_control_and_its_statuses(client: Client) -> None:
    """suspend/resume/terminate answer the state after; an action the state does not allow
    is 409; an unknown action 400; deleting a running job 409."""
    job_id = await submit(client)
    status, body = await client.call("POST", f"/api/jobs/{job_id}/control", {"action": "suspend"})
    assert (status, body["state"]) == (200, "suspended")
    status, body = await client.call("POST", f"/api/jobs/{job_id}/control", {"action": "suspend"})
    assert (status, body["error"]) == (409, "invalid_state")
    assert (await client.call("POST", f"/api/jobs/{job_id}/control", {"action": "resume"}))[
        0
    ] == 200
    assert (await client.call("DELETE", f"/api/jobs/{job_id}"))[0] == 409
    status, body = await client.call("POST", f"/api/jobs/{job_id}/control", {"action": "explode"})
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await client.call("POST", f"/api/jobs/{job_id}/control", {"action": "terminate"})
    assert status == 200
    status, body = await client.call("GET", f"/api/jobs/{job_id}/wait", timeout="5")
    assert body["state"] == "failed"


async def test_arrays(client: Client, engine: FakeEngine) -> None:
    """An array's tasks and counts; control of the whole array; the arrays listing."""
    status, body = await client.call(
        "POST", "/api/arrays", {"template": template(), "begin": 1, "end": 3, "max_parallel": 1}
    )
    assert status == 201, body
    array_id, tasks = body["id"], [t["id"] for t in body["tasks"]]
    assert len(tasks) == 3
    await until(lambda: client.service.tracker.cached_state(tasks[0]) == "running")
    status, body = await client.call("POST", f"/api/arrays/{array_id}/control",
                                     {"action": "terminate"})  # fmt: skip
    assert status == 200
    await until(lambda: all(client.service.tracker.cached_state(t) == "failed" for t in tasks))
    status, body = await client.call("GET", f"/api/arrays/{array_id}")
    assert body["counts"]["failed"] == 3
    status, body = await client.call("GET", "/api/arrays")
    assert body["arrays"] == [{"id": array_id, "tasks": 3, "counts": body["arrays"][0]["counts"]}]
    assert (await client.call("GET", "/api/jobs", array=array_id))[1]["total"] == 3
    assert (await client.call("GET", "/api/arrays/nope"))[0] == 404


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        pytest.param({"template": template(jobCategory="evil/image")}, 403, "refused",
                     id="image-not-allowed"),
        pytest.param({"template": template(outputPath="/etc/passwd")}, 403, "refused",
                     id="host-file"),
        pytest.param({"template": template(stageInFiles={"/": "/host"})}, 403, "refused",
                     id="bind"),
        pytest.param({"template": template(stageOutFiles={"/a": "/tmp/a"})}, 403, "refused",
                     id="stage-out"),
        pytest.param({"template": template(extension={"extensionList": {"privileged": "true"}})},
                     403, "refused", id="privileged"),
        pytest.param({"template": template(extension={"extensionList": {"net": "host"}})},
                     403, "refused", id="host-net"),
        pytest.param({"template": template(extension={"extensionList": {"pid": "container:x"}})},
                     403, "refused", id="other-pid"),
        pytest.param({"template": template(extension={"extensionList": {"gpus": "all"}})},
                     403, "refused", id="devices"),
        pytest.param({"template": template(extension={"extensionList": {"exposedPorts": "80"}})},
                     403, "refused", id="ports"),
        pytest.param({"template": template(remoteComand="x")}, 400, "bad_request", id="typo"),
        pytest.param({"template": {"command": ["true"]}}, 400, "bad_request", id="no-image"),
        pytest.param({"template": template(command=[])}, 400, "bad_request", id="empty-cmd"),
        pytest.param({"template": template(args="x")}, 400, "bad_request", id="args-not-list"),
        pytest.param({"template": template(priority="high")}, 400, "bad_request", id="type"),
        pytest.param({"template": "sh"}, 400, "bad_request", id="not-object"),
        pytest.param({}, 400, "bad_request", id="no-template"),
        pytest.param({"template": template(), "key": 3}, 400, "bad_request", id="key-type"),
        pytest.param({"template": template(queueName="q")}, 400, "unsupported", id="queue"),
        pytest.param({"template": template(jobName="bad name")}, 400, "invalid_argument",
                     id="bad-name"),
    ],
)  # fmt: skip
async def test_bad_and_forbidden_submissions(
    client: Client, body: dict[str, Any], status: int, error: str
) -> None:
    """Each is a clear 4xx naming the problem, never a 500, and nothing is made."""
    got, answer = await client.call("POST", "/api/jobs", body)
    assert (got, answer["error"]) == (status, error), answer
    assert answer["message"]
    assert len(client.service.tracker) == 0


async def test_bodies_that_are_not_json_or_too_large(client: Client) -> None:
    status, body = await client.call("POST", "/api/jobs", raw=b"{not json")
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await client.call("POST", "/api/jobs", raw=b"[1, 2]")
    assert status == 400
    status, _ = await client.call("POST", "/api/jobs", raw=b"x" * (client.service.max_body + 1))
    assert status == 413
    job_id = await submit(client)
    for params in ({"timeout": "soon"}, {"timeout": "-1"}, {"timeout": "nan"}, {"state": "x"}):
        status, body = await client.call("GET", f"/api/jobs/{job_id}/wait", None, **params)  # type: ignore[arg-type]
        assert (status, body["error"]) == (400, "bad_request"), (params, body)
    status, body = await client.call("GET", "/api/jobs", limit="ten")
    assert status == 400


async def test_granted_permissions_and_observers(engine: FakeEngine, tmp_path: Any) -> None:
    """A service that grants ``files`` lets an output path through; an observer refuses
    submissions and actions but answers reads."""
    runner, base, service = await serve(engine, allow=["files"])
    try:
        async with aiohttp.ClientSession() as http:
            client = Client(http, base, service)
            out = tmp_path / "o"
            job_id = await submit(client, outputPath=str(out))
            engine.write_output(job_id, 1, b"hi\n")
            engine.exit(job_id, 0)
            status, body = await client.call("GET", f"/api/jobs/{job_id}/wait", timeout="5")
            assert body["state"] == "done"
            assert out.read_bytes() == b"hi\n"
    finally:
        await runner.cleanup()
    runner, base, service = await serve(engine, role="observer")
    try:
        async with aiohttp.ClientSession() as http:
            client = Client(http, base, service)
            status, body = await client.call("POST", "/api/jobs", {"template": template()})
            assert (status, body["error"]) == (400, "unsupported")
            status, body = await client.call("DELETE", f"/api/jobs/{job_id}")
            assert status == 400
            assert (await client.call("GET", f"/api/jobs/{job_id}"))[1]["state"] == "done"
    finally:
        await runner.cleanup()


async def test_output_stream(client: Client, engine: FakeEngine) -> None:
    """A job's bytes as they come, until its output ends; ``tail`` for the last lines."""
    job_id = await submit(client)
    received = bytearray()

    async def read() -> None:
        url = f"{client.base}/api/jobs/{job_id}/output"
        async with client.http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                received.extend(chunk)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    engine.write_output(job_id, 1, b"a\x00b\n")
    engine.write_output(job_id, 1, b"c\n")
    engine.exit(job_id, 0)
    await asyncio.wait_for(reader, 5)
    assert bytes(received) == b"a\x00b\nc\n"
    status, tail = await client.call("GET", f"/api/jobs/{job_id}/output", tail="1")
    assert (status, tail) == (200, b"c\n")


async def read_events(client: Client, count: int, last: str | None = None,
                      **params: str) -> list[tuple[str, str, dict[str, Any]]]:  # fmt: skip
    """The first ``count`` events (id, event, data) of the SSE stream."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if last:
        headers["Last-Event-ID"] = last
    events: list[tuple[str, str, dict[str, Any]]] = []
    async with client.http.get(f"{client.base}/api/events", headers=headers,
                               params=params or None) as resp:  # fmt: skip
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "event" in block:
                    events.append((block.get("id", ""), block["event"], json.loads(block["data"])))
                    if len(events) == count:
                        return events
                block = {}
            elif not line.startswith(":") and ": " in line:
                key, value = line.split(": ", 1)
                block[key] = value
    return events


async def test_events_are_live_and_resumable(client: Client, engine: FakeEngine) -> None:
    """Changes come as events with ids; a client that reconnects with the id of the last it
    saw gets exactly the ones it missed; an id from another service is a reset."""
    reading = asyncio.create_task(read_events(client, 2))
    await until(lambda: client.service.hub.subscribers == 1)
    job_id = await submit(client)
    first = await asyncio.wait_for(reading, 5)
    assert [(e[1], e[2]["job_id"], e[2]["new_state"]) for e in first] == [
        ("change", job_id, "queued"), ("change", job_id, "running")]  # fmt: skip
    engine.exit(job_id, 0)
    await until(lambda: client.service.tracker.cached_state(job_id) == "done")
    missed = await read_events(client, 1, last=first[-1][0])
    assert [(e[1], e[2]["new_state"]) for e in missed] == [("change", "done")]
    reset = await read_events(client, 1, last="00000000.5")
    assert reset[0][1] == "reset"
    other = await submit(client)
    filtered = asyncio.create_task(read_events(client, 1, job=other))
    await until(lambda: client.service.hub.subscribers == 1)
    engine.exit(other, 0)
    assert (await asyncio.wait_for(filtered, 5))[0][2]["job_id"] == other


async def test_shutdown_with_twenty_pending_long_polls_is_quick(engine: FakeEngine) -> None:
    """20 long polls on running jobs and an event stream are answered at once when the app
    shuts down (503 for the polls, a closing event for the stream): well under a second."""
    runner, base, service = await serve(engine)
    async with aiohttp.ClientSession() as http:
        client = Client(http, base, service)
        job_id = await submit(client)
        polls = [asyncio.create_task(client.call("GET", f"/api/jobs/{job_id}/wait",
                                                 timeout="60")) for _ in range(20)]  # fmt: skip
        stream = asyncio.create_task(read_events(client, 1))
        await until(lambda: service.pending == 21)
        started = time.monotonic()
        await runner.cleanup()
        answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
        elapsed = time.monotonic() - started
        events = await asyncio.wait_for(stream, 5)
    assert elapsed < 1.0, elapsed
    assert {status for status, _ in answers} == {503}
    assert {body["error"] for _, body in answers} == {"closing"}
    assert [e[1] for e in events] == ["closing"]


async def test_session_categories_and_openapi(client: Client) -> None:
    status, body = await client.call("GET", "/api/session")
    assert (status, body["session"], body["allowed_images"]) == (200, SESSION, [IMAGE])
    assert (await client.call("GET", "/api/categories"))[1] == {"categories": [IMAGE]}
    status, doc = await client.call("GET", "/api/openapi.json")
    assert doc["openapi"].startswith("3.")
    documented = {(m.lower(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(m.lower(), p) for m, p, _ in aiotracker.web.ROUTES}


def test_setup_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        aiotracker.web.setup(web.Application(), session="s", token="short")
    with pytest.raises(ValueError, match="unknown permission"):
        aiotracker.web.setup(web.Application(), session="s", allow=["everything"])
    with pytest.raises(ValueError, match="prefix"):
        aiotracker.web.setup(web.Application(), session="s", prefix="jobs/")
