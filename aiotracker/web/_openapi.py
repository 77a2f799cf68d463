"""The OpenAPI 3.1 document of the JSON API (served at ``/api/openapi.json``). Pure."""

from __future__ import annotations

from typing import Any

_STATES = [
    "undetermined",
    "queued",
    "queued_held",
    "running",
    "suspended",
    "requeued",
    "requeued_held",
    "done",
    "failed",
]
_ACTIONS = ["suspend", "resume", "hold", "release", "terminate"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB = {"$ref": "#/components/schemas/Job"}
_ARRAY = {"$ref": "#/components/schemas/Array"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _answer("invalid argument: a bad template, field, state or timeout", _ERROR),
    "401": _answer("no bearer token, or a wrong one", _ERROR),
    "403": _answer("refused by the service's policy (image, host paths, privileges)", _ERROR),
    "404": _answer("no such job or array in this session", _ERROR),
    "409": _answer("the job's state does not allow it (or its name is in use)", _ERROR),
    "413": _answer("the body is larger than the service allows"),
    "502": _answer("the engine failed to carry it out", _ERROR),
    "503": _answer("the engine is unreachable, or the service is shutting down", _ERROR),
}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    status: str = "200",
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {status: ok, **_ERRORS}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_STATE_PARAM = _query(
    "state",
    {"type": "array", "items": {"enum": _STATES}},
    "states (repeatable; DRMAA2's names, any case)",
)
_CONTROL = {
    "type": "object",
    "required": ["action"],
    "additionalProperties": False,
    "properties": {"action": {"enum": _ACTIONS}},
}


def openapi(prefix: str = "") -> dict[str, Any]:
    p = prefix + "/api"
    job, array = _path("job_id"), _path("array_id")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aiotracker",
            "version": "1",
            "description": "DRMAA2 jobs as containers of one job session. Every route needs "
            "the service's bearer token (Authorization: Bearer <token>).",
        },
        "security": [{"bearer": []}],
        "paths": {
            f"{p}/jobs": {
                "post": _op(
                    "submit a job",
                    _answer("made", _JOB),
                    status="201",
                    body={"$ref": "#/components/schemas/Submission"},
                ),
                "get": _op(
                    "the session's jobs",
                    _answer("jobs", {"type": "object"}),
                    params=[
                        _STATE_PARAM,
                        _query("array", {"type": "string"}, "tasks of this array"),
                        _query("limit", {"type": "integer", "default": 100}, "page size"),
                        _query("offset", {"type": "integer", "default": 0}, "page start"),
                    ],
                ),
            },
            f"{p}/jobs/{{job_id}}": {
                "get": _op("a job's state", _answer("its state", _JOB), params=[job]),
                "delete": _op(
                    "delete a finished job", _answer("deleted"), params=[job], status="204"
                ),
            },
            f"{p}/jobs/{{job_id}}/info": {
                "get": _op(
                    "its DRMAA2 JobInfo", _answer("JobInfo", {"type": "object"}), params=[job]
                )
            },
            f"{p}/jobs/{{job_id}}/template": {
                "get": _op(
                    "the template it was submitted with (drmaa2interface JSON)",
                    _answer("template", {"type": "object"}),
                    params=[job],
                )
            },
            f"{p}/jobs/{{job_id}}/control": {
                "post": _op(
                    "suspend, resume, hold, release or terminate",
                    _answer("its state after", _JOB),
                    body=_CONTROL,
                    params=[job],
                )
            },
            f"{p}/jobs/{{job_id}}/wait": {
                "get": _op(
                    "wait (long poll) for one of the states (default: its end); when "
                    "the timeout expires, 200 with the current state and timed_out",
                    _answer("a state", {"$ref": "#/components/schemas/Waited"}),
                    params=[
                        job,
                        _STATE_PARAM,
                        _query(
                            "timeout", {"type": "number", "default": 30}, "seconds, at most 3600"
                        ),
                    ],
                )
            },
            f"{p}/jobs/{{job_id}}/output": {
                "get": {
                    "summary": "its output as it comes (bytes), from its start or its "
                    "last `tail` lines",
                    "parameters": [
                        job,
                        _query("stderr", {"type": "boolean"}, "the error stream"),
                        _query("tail", {"type": "integer"}, "begin with the last N lines"),
                    ],
                    "responses": {
                        "200": {
                            "description": "a stream of bytes",
                            "content": {"application/octet-stream": {}},
                        },
                        **_ERRORS,
                    },
                }
            },
            f"{p}/arrays": {
                "post": _op(
                    "submit an array job",
                    _answer("made", _ARRAY),
                    status="201",
                    body={"$ref": "#/components/schemas/ArraySubmission"},
                ),
                "get": _op(
                    "the session's arrays and their counts", _answer("arrays", {"type": "object"})
                ),
            },
            f"{p}/arrays/{{array_id}}": {
                "get": _op("an array's tasks", _answer("its tasks", _ARRAY), params=[array])
            },
            f"{p}/arrays/{{array_id}}/control": {
                "post": _op(
                    "an action on every task it applies to",
                    _answer("its tasks after", _ARRAY),
                    body=_CONTROL,
                    params=[array],
                )
            },
            f"{p}/events": {
                "get": {
                    "summary": "state changes as server-sent events (event: change, "
                    "reset, closing), resumable with Last-Event-ID",
                    "parameters": [
                        _query("job", {"type": "string"}, "only this job (repeatable)"),
                        _query("array", {"type": "string"}, "only this array"),
                    ],
                    "responses": {
                        "200": {
                            "description": "an event stream",
                            "content": {"text/event-stream": {}},
                        },
                        **_ERRORS,
                    },
                }
            },
            f"{p}/session": {
                "get": _op(
                    "the session: counts per state, the service's policy",
                    _answer("the session", {"type": "object"}),
                )
            },
            f"{p}/categories": {
                "get": _op("the job categories (images)", _answer("categories", {"type": "object"}))
            },
            f"{p}/machines": {
                "get": _op(
                    "the engine's machines (DRMAA2 MachineInfo)",
                    _answer("machines", {"type": "object"}),
                )
            },
            f"{p}/openapi.json": {
                "get": _op("this document", _answer("OpenAPI", {"type": "object"}))
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "job_id": {"type": "string"},
                    },
                },
                "Job": {
                    "type": "object",
                    "required": ["id", "state"],
                    "properties": {
                        "id": {"type": "string"},
                        "state": {"enum": _STATES},
                        "array_id": {"type": ["string", "null"]},
                    },
                },
                "Waited": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "state": {"enum": _STATES},
                        "timed_out": {"type": "boolean"},
                    },
                },
                "Array": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "counts": {"type": "object"},
                        "tasks": {"type": "array", "items": _JOB},
                    },
                },
                "Template": {
                    "type": "object",
                    "required": ["jobCategory"],
                    "description": "drmaa2interface's JobTemplate JSON (jobCategory = the "
                    "image, remoteCommand, args, jobEnvironment, ...; "
                    "extension.extensionList for Docker options), or "
                    "'command': a list, first word remoteCommand",
                    "properties": {
                        "jobCategory": {"type": "string"},
                        "command": {"type": "array", "items": {"type": "string"}},
                        "remoteCommand": {"type": "string"},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "jobEnvironment": {"type": "object"},
                        "jobName": {"type": "string"},
                        "priority": {"type": "integer"},
                        "submitAsHold": {"type": "boolean"},
                        "extension": {"type": "object"},
                    },
                },
                "Submission": {
                    "type": "object",
                    "required": ["template"],
                    "properties": {
                        "template": {"$ref": "#/components/schemas/Template"},
                        "key": {"type": "string", "description": "idempotency key"},
                    },
                },
                "ArraySubmission": {
                    "type": "object",
                    "required": ["template"],
                    "properties": {
                        "template": {"$ref": "#/components/schemas/Template"},
                        "begin": {"type": "integer"},
                        "end": {"type": "integer"},
                        "step": {"type": "integer"},
                        "max_parallel": {"type": "integer"},
                        "key": {"type": "string"},
                    },
                },
            },
        },
    }
