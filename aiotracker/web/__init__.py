"""aiotracker's aiohttp integration: a JSON API, live state changes as server-sent events,
job output as a stream, an OpenAPI document and a one-page dashboard, over one tracker.

::

    from aiohttp import web
    import aiotracker.web

    app = web.Application()
    aiotracker.web.setup(app, session="my-session", token=os.environ["TOKEN"],
                         allowed_images=["aiotracker/busybox:*"])
    web.run_app(app, host="127.0.0.1", port=8080)

The tracker opens at the app's startup and closes at its cleanup; at shutdown, pending long
polls are answered 503 at once and streams end, so a service stops in milliseconds. Several
worker processes may serve one session (trackers share it through leases); give the extra
ones ``role="observer"`` if they should only read.

Safe by default: every API route needs the bearer token; only images matching
``allowed_images`` run; host paths, bind mounts, privileges, host namespaces, devices and
published ports are refused unless granted by name in ``allow`` (``_policy``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any, Literal

from aiohttp import web

from ._codec import BadRequest, Refused, error_answer
from ._policy import PERMISSIONS, Policy
from ._routes import PREFIX, ROUTES, SERVICE, add_routes
from ._service import MAX_BODY, Service

__all__ = [
    "PERMISSIONS",
    "ROUTES",
    "SERVICE",
    "BadRequest",
    "Policy",
    "Refused",
    "Service",
    "create_app",
    "error_answer",
    "run_service",
    "setup",
]

log = logging.getLogger("aiotracker.web")


def setup(
    app: web.Application,
    *,
    session: str,
    docker_url: str | None = None,
    token: str | None = None,
    allowed_images: Iterable[str] = (),
    allow: Iterable[str] = (),
    role: Literal["worker", "observer"] = "worker",
    prefix: str = "",
    dashboard: bool = True,
    max_body: int = MAX_BODY,
    tracker_options: Mapping[str, Any] | None = None,
) -> Service:
    """Add aiotracker's routes to ``app`` and tie its tracker to the app's life cycle.

    Args:
        session: The job session the service serves.
        docker_url: The engine (None: the client configuration, as ``DockerTracker``).
        token: The bearer token every API route requires (at least 16 characters). None: a
            random one, logged at startup (``Service.token``).
        allowed_images: ``fnmatch`` patterns of the images clients may run (none by default).
        allow: Permissions granted to clients (``PERMISSIONS``): ``binds``, ``files``,
            ``privileged``, ``host_namespaces``, ``devices``, ``ports``.
        role: ``observer`` for a service that only reads (submissions and actions are 400).
        prefix: A path prefix for every route (``/jobs`` -> ``/api/jobs`` under it).
        dashboard: Serve the dashboard page at ``{prefix}/``.
        max_body: Bytes a request body may have (413 beyond).
        tracker_options: More ``DockerTracker`` arguments (``max_running``, ``labels``, ...).

    Returns the ``Service`` (also ``app[aiotracker.web.SERVICE]``).
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError("prefix must start with '/' and not end with it, e.g. '/jobs'")
    service = Service(
        session, docker_url=docker_url, token=token, allowed_images=allowed_images,
        allow=allow, role=role, max_body=max_body, tracker_options=tracker_options,
    )  # fmt: skip
    app[SERVICE] = service
    app[PREFIX] = prefix
    app.on_startup.append(service.on_startup)
    app.on_shutdown.append(service.on_shutdown)
    app.on_cleanup.append(service.on_cleanup)
    add_routes(app, prefix)
    if dashboard:
        app.router.add_get(prefix + "/", _dashboard)
    return service


def create_app(**options: Any) -> web.Application:
    """A new ``web.Application`` with ``setup(app, **options)`` done."""
    app = web.Application()
    setup(app, **options)
    return app


async def _dashboard(request: web.Request) -> web.StreamResponse:
    """The dashboard page: static (it holds no data); its script reads the API with the token
    the user gives it (kept in the browser's session storage, or from ``#token=`` in the
    URL, which browsers never send to the server)."""
    page = resources.files(__package__).joinpath("static/dashboard.html").read_bytes()
    return web.Response(
        body=page, content_type="text/html", charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY",
                 "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                 "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"},
    )  # fmt: skip


def run_service(
    *,
    session: str,
    docker_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    allowed_images: Iterable[str] = (),
    allow: Iterable[str] = (),
    role: Literal["worker", "observer"] = "worker",
    print_url: bool = True,
    tracker_options: Mapping[str, Any] | None = None,
) -> None:
    """Run the service until SIGINT (Ctrl-C) or SIGTERM (``aiotracker serve``). Once it
    listens, prints the dashboard's URL with the port it got (``port=0``: a free one) and
    the token in its fragment; an address it cannot bind raises ``OSError``, nothing printed."""
    app = web.Application()
    service = setup(
        app, session=session, docker_url=docker_url, token=token,
        allowed_images=allowed_images, allow=allow, role=role, tracker_options=tracker_options,
    )  # fmt: skip

    async def serve() -> None:
        # web.run_app's steps, but the URL printed once it listens (run_app's on_startup
        # comes before the bind, and knows the port asked for, not the port bound), and a
        # signal that ends the wait instead of raising out of the loop: then the cleanup
        # answers pending long polls 503 before anything else is cancelled.
        runner = web.AppRunner(app, shutdown_timeout=5.0, handler_cancellation=True)
        await runner.setup()
        try:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await web.TCPSite(runner, host, port).start()
            if print_url:
                shown = f"[{host}]" if ":" in host else host
                bound = runner.addresses[0][1]
                print(f"aiotracker: session {session!r} served at http://{shown}:{bound}/"
                      f"#token={service.token}", flush=True)  # fmt: skip
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
