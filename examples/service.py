"""A runnable service: aiotracker's JSON API and dashboard in an aiohttp app of your own.

    AIOTRACKER_TOKEN=$(openssl rand -hex 16) .venv/bin/python examples/service.py

then open the printed URL (the token is in its fragment, which the browser keeps to itself).
The app's own route ``/hello`` shows how the tracker is at hand in handlers.
"""

from __future__ import annotations

import os

from aiohttp import web

import aiotracker.web

HOST = os.environ.get("AIOTRACKER_HOST", "127.0.0.1")
PORT = int(os.environ.get("AIOTRACKER_PORT", "8080"))


async def hello(request: web.Request) -> web.Response:
    tracker = request.app[aiotracker.web.SERVICE].tracker
    return web.json_response({"session": tracker.job_session, "jobs": len(tracker)})


def main() -> None:
    app = web.Application()
    service = aiotracker.web.setup(
        app,
        session=os.environ.get("AIOTRACKER_SESSION", "aiotracker-demo"),
        token=os.environ.get("AIOTRACKER_TOKEN"),  # None: a random one, printed below
        allowed_images=["aiotracker/busybox:*"],
    )
    app.router.add_get("/hello", hello)

    def announce(_: str) -> None:  # run_app calls it once the socket listens
        print(f"serving http://{HOST}:{PORT}/#token={service.token}", flush=True)

    web.run_app(app, host=HOST, port=PORT, print=announce, shutdown_timeout=5)


if __name__ == "__main__":
    main()
