"""The JSON API's handlers: each checks the token, reads and validates its input, calls the
tracker, and answers JSON; every error of the library or of the request becomes its status
(``_codec.error_answer``), never a 500 for bad input."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .._exceptions import TrackerError, UnsupportedOperationError, WaitTimeoutError
from .._model import JobState
from .._monitoring import MonitoringSession
from .._template_label import template_to_json
from ._codec import (
    BadRequest,
    Refused,
    count_of,
    error_answer,
    field,
    states_of,
    template_of,
    timeout_of,
)
from ._openapi import openapi
from ._service import Handler, Service

log = logging.getLogger("aiotracker.web")
SERVICE = web.AppKey("aiotracker.web.service", Service)
_ACTIONS = ("suspend", "resume", "hold", "release", "terminate")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, default=str))


def _guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        if not service.authorized(request):
            return web.json_response(
                {"error": "unauthorized", "message": "a bearer token is required"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="aiotracker"'},
            )  # fmt: skip
        try:
            return await handler(service, request)
        except (TrackerError, BadRequest, Refused) as exc:
            status, body = error_answer(exc)
            return _json(body, status)

    guarded.__name__ = handler.__name__
    return guarded


async def _body(service: Service, request: web.Request) -> dict[str, Any]:
    """The request's JSON object, at most ``max_body`` bytes (413 beyond)."""
    if request.content_length is not None and request.content_length > service.max_body:
        raise web.HTTPRequestEntityTooLarge(
            max_size=service.max_body, actual_size=request.content_length
        )
    raw = await request.content.read(service.max_body + 1)
    if len(raw) > service.max_body:
        raise web.HTTPRequestEntityTooLarge(max_size=service.max_body, actual_size=len(raw))
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _worker(service: Service, what: str) -> None:
    if service.role == "observer":
        raise UnsupportedOperationError(f"this service is an observer: it does not {what}")


def _job(request: web.Request) -> str:
    return request.match_info["job_id"]


async def _entry(service: Service, job_id: str) -> dict[str, Any]:
    tracker = service.tracker
    job_id = await tracker.resolve_id(job_id)
    state = await tracker.job_state(job_id)
    return {"id": job_id, "state": state.value, "array_id": tracker.job_array(job_id)}


def _counts(states: list[JobState]) -> dict[str, int]:
    counts = Counter(state.value for state in states)
    return {state.value: counts.get(state.value, 0) for state in JobState}


# -- jobs -------------------------------------------------------------------------------


async def submit_job(service: Service, request: web.Request) -> web.StreamResponse:
    _worker(service, "submit jobs")
    body = await _body(service, request)
    template = template_of(body.get("template"))
    service.policy.check(template)
    job_id = await service.tracker.add_job(template, key=field(body, "key", str))
    return _json(await _entry(service, job_id), 201)


async def list_jobs(service: Service, request: web.Request) -> web.StreamResponse:
    tracker = service.tracker
    query = request.query
    wanted = set(states_of(query.getall("state", [])))
    array = query.get("array")
    limit = count_of(query.get("limit"), "limit", 100, 10_000)
    offset = count_of(query.get("offset"), "offset", 0, 10**9)
    jobs = []
    for job_id in await tracker.list_jobs():
        state = tracker.cached_state(job_id)
        array_id = tracker.job_array(job_id)
        if state is None or (wanted and state not in wanted):
            continue
        if array is not None and array_id != array:
            continue
        jobs.append({"id": job_id, "state": state.value, "array_id": array_id})
    return _json({
        "total": len(jobs), "offset": offset, "limit": limit,
        "counts": _counts([JobState(str(j["state"])) for j in jobs]),
        "jobs": jobs[offset : offset + limit],
    })  # fmt: skip


async def job_state(service: Service, request: web.Request) -> web.StreamResponse:
    return _json(await _entry(service, _job(request)))


async def job_info(service: Service, request: web.Request) -> web.StreamResponse:
    tracker = service.tracker
    info = await tracker.job_info(await tracker.resolve_id(_job(request)))
    return _json(info.to_dict())


async def job_template(service: Service, request: web.Request) -> web.StreamResponse:
    tracker = service.tracker
    template = await tracker.job_template(await tracker.resolve_id(_job(request)))
    return _json(template_to_json(template))


async def control_job(service: Service, request: web.Request) -> web.StreamResponse:
    _worker(service, "control jobs")
    action = field(await _body(service, request), "action", str)
    if action not in _ACTIONS:
        raise BadRequest(f"'action' must be one of {', '.join(_ACTIONS)}")
    tracker = service.tracker
    job_id = await tracker.resolve_id(_job(request))
    await tracker.job_control(job_id, action)
    return _json(await _entry(service, job_id))


async def delete_job(service: Service, request: web.Request) -> web.StreamResponse:
    _worker(service, "delete jobs")
    tracker = service.tracker
    await tracker.delete_job(await tracker.resolve_id(_job(request)))
    return web.Response(status=204)


async def wait_job(service: Service, request: web.Request) -> web.StreamResponse:
    """A long poll: the state once the job reaches one of ``state`` (default: its end), or
    when ``timeout`` (s) expires, 200 with the current state and ``timed_out``."""
    tracker = service.tracker
    job_id = await tracker.resolve_id(_job(request))
    states = states_of(request.query.getall("state", []))
    timeout = timeout_of(request.query.get("timeout"), 30.0)
    timed_out = False
    try:
        state = await service.until_closing(tracker.wait(job_id, *states, timeout=timeout))
    except WaitTimeoutError:
        state, timed_out = await tracker.job_state(job_id), True
    return _json({"id": job_id, "state": state.value, "timed_out": timed_out})


async def job_output(service: Service, request: web.Request) -> web.StreamResponse:
    """The job's output as it comes (``stream_output``), ``stderr=1`` for its error stream,
    ``tail=N`` to begin with its last N lines; ends with the job's output."""
    tracker = service.tracker
    job_id = await tracker.resolve_id(_job(request))
    stderr = request.query.get("stderr", "0") in ("1", "true")
    tail = request.query.get("tail")
    lines = count_of(tail, "tail", 0, 10**9) if tail is not None else None
    stream = tracker.stream_output(job_id, stderr=stderr, tail=lines)
    response = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-cache",
                 "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip
    async with stream as chunks:
        await response.prepare(request)
        try:
            async for chunk in service.items_until_closing(chunks):
                await response.write(chunk)
        except TrackerError as exc:  # cut off, or the output cannot be had whole: say so
            log.info("output of %s ended early: %s", job_id[:12], exc)
            response.force_close()
            return response
    await response.write_eof()
    return response


# -- arrays -----------------------------------------------------------------------------


async def submit_array(service: Service, request: web.Request) -> web.StreamResponse:
    _worker(service, "submit jobs")
    body = await _body(service, request)
    template = template_of(body.get("template"))
    service.policy.check(template)
    tracker = service.tracker
    array_id = await tracker.add_array_job(
        template, field(body, "begin", int, 1), field(body, "end", int, 1),
        field(body, "step", int, 1), field(body, "max_parallel", int, 0),
        key=field(body, "key", str),
    )  # fmt: skip
    return _json(await _array(service, array_id), 201)


async def _array(service: Service, array_id: str) -> dict[str, Any]:
    tracker = service.tracker
    tasks = await tracker.list_array_jobs(array_id)
    states = [tracker.cached_state(t) or JobState.UNDETERMINED for t in tasks]
    return {
        "id": array_id, "counts": _counts(states),
        "tasks": [{"id": t, "state": s.value} for t, s in zip(tasks, states, strict=True)],
    }  # fmt: skip


async def list_arrays(service: Service, request: web.Request) -> web.StreamResponse:
    tracker = service.tracker
    by_array: dict[str, list[JobState]] = {}
    for job_id in await tracker.list_jobs():
        array_id = tracker.job_array(job_id)
        if array_id is not None:
            by_array.setdefault(array_id, []).append(
                tracker.cached_state(job_id) or JobState.UNDETERMINED
            )
    return _json({
        "arrays": [{"id": a, "tasks": len(s), "counts": _counts(s)} for a, s in by_array.items()]
    })  # fmt: skip


async def array_state(service: Service, request: web.Request) -> web.StreamResponse:
    return _json(await _array(service, request.match_info["array_id"]))


async def control_array(service: Service, request: web.Request) -> web.StreamResponse:
    _worker(service, "control jobs")
    action = field(await _body(service, request), "action", str)
    if action not in _ACTIONS:
        raise BadRequest(f"'action' must be one of {', '.join(_ACTIONS)}")
    array_id = request.match_info["array_id"]
    try:
        await service.tracker.array_job_control(array_id, action)
    except ExceptionGroup as group:  # some tasks refused it: the first says why
        first = group.exceptions[0]
        if isinstance(first, TrackerError):
            raise first from group
        raise
    return _json(await _array(service, array_id))


# -- the session ------------------------------------------------------------------------


async def events(service: Service, request: web.Request) -> web.StreamResponse:
    """Server-sent events: each state change as ``event: change`` with its id; resumable
    with ``Last-Event-ID``; ``event: reset`` when the missed changes are no longer kept (list
    again); ``event: closing`` when the service shuts down. ``job``/``array`` filter."""
    hub = service.hub
    jobs = set(request.query.getall("job", []))
    arrays = set(request.query.getall("array", []))
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                 "X-Accel-Buffering": "no"},
    )  # fmt: skip
    await response.prepare(request)
    await response.write(b"retry: 1000\n: connected\n\n")
    async for item in service.items_until_closing(hub.subscribe(last)):
        if item.get("reset"):
            await response.write(_sse("reset", item, hub.event_id(item["seq"])))
            continue
        if item.get("lost"):
            await response.write(_sse("reset", {"lost": item["lost"]}, None))
            continue
        if (jobs or arrays) and item["job_id"] not in jobs and item["array_id"] not in arrays:
            continue
        await response.write(_sse("change", item, hub.event_id(item["seq"])))
    if service.closing.is_set():
        await response.write(_sse("closing", {}, None))
    await response.write_eof()
    return response


def _sse(event: str, data: dict[str, Any], event_id: str | None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def categories(service: Service, request: web.Request) -> web.StreamResponse:
    return _json({"categories": await service.tracker.list_job_categories()})


async def machines(service: Service, request: web.Request) -> web.StreamResponse:
    async with MonitoringSession(service.docker_url) as monitor:
        found = await service.until_closing(monitor.get_all_machines())
    return _json({"machines": [dataclasses.asdict(m) for m in found]})


async def session(service: Service, request: web.Request) -> web.StreamResponse:
    tracker = service.tracker
    states = [tracker.cached_state(j) or JobState.UNDETERMINED for j in await tracker.list_jobs()]
    return _json({
        "session": service.session, "role": service.role, "contact": tracker.contact,
        "allowed_images": list(service.policy.allowed_images),
        "allow": sorted(service.policy.allow), "jobs": len(states), "counts": _counts(states),
    })  # fmt: skip


async def openapi_document(service: Service, request: web.Request) -> web.StreamResponse:
    return _json(openapi(request.app.get(PREFIX, "")))


PREFIX = web.AppKey("aiotracker.web.prefix", str)

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/api/jobs", submit_job),
    ("GET", "/api/jobs", list_jobs),
    ("GET", "/api/jobs/{job_id}", job_state),
    ("DELETE", "/api/jobs/{job_id}", delete_job),
    ("GET", "/api/jobs/{job_id}/info", job_info),
    ("GET", "/api/jobs/{job_id}/template", job_template),
    ("POST", "/api/jobs/{job_id}/control", control_job),
    ("GET", "/api/jobs/{job_id}/wait", wait_job),
    ("GET", "/api/jobs/{job_id}/output", job_output),
    ("POST", "/api/arrays", submit_array),
    ("GET", "/api/arrays", list_arrays),
    ("GET", "/api/arrays/{array_id}", array_state),
    ("POST", "/api/arrays/{array_id}/control", control_array),
    ("GET", "/api/events", events),
    ("GET", "/api/session", session),
    ("GET", "/api/categories", categories),
    ("GET", "/api/machines", machines),
    ("GET", "/api/openapi.json", openapi_document),
)


def add_routes(app: web.Application, prefix: str) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, prefix + path, _guarded(handler))
