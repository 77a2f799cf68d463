"""Image pulls: the ``pull`` extension (``never``, ``missing``, ``always``), registry
credentials as the docker CLI finds them, and one pull per image however many submissions
ask for it at once.

Credentials come from ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``):
a credential helper for the registry (``credHelpers``, else ``credsStore``), run as
``docker-credential-<name> get``, else the ``auths`` entry (``auth`` = base64 of
``user:password``, or ``username``/``password``, or ``identitytoken``). Docker Hub's key is
``https://index.docker.io/v1/``, as the CLI writes it. The parsing is pure (``auth_entry``,
``registry_of``, ``helper_of``); ``Puller`` does the rest.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from ._config import PullPolicy
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import InvalidArgumentError
from ._tasks import Tasks

log = logging.getLogger("aiotracker")

DOCKER_HUB = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB})
_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One step of an image pull, as the engine reports it (``DockerTracker(on_pull=...)``).

    ``status`` is the engine's word ("Pulling fs layer", "Downloading", "Pull complete",
    "Digest: ...", "Status: Downloaded newer image for ..."); ``layer`` the layer it is about
    ("" for the image); ``current``/``total`` bytes where the engine tells them (else 0).
    ``done`` is set on the last one, when the image is present (or the pull failed:
    ``error`` then says why).
    """

    image: str
    status: str
    layer: str = ""
    current: int = 0
    total: int = 0
    done: bool = False
    error: str = ""


def registry_of(image: str) -> str:
    """The registry an image reference names (its first component if that is a host: it has
    a dot or a port, or is ``localhost``); Docker Hub's key otherwise."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB if first in _HUB_NAMES else first
    return DOCKER_HUB


def _key(server: str) -> str:
    """A config key or registry as a bare host[:port] (the CLI also accepts URLs there)."""
    if server in _HUB_NAMES:
        return DOCKER_HUB
    server = re.sub(r"^[a-z]+://", "", server)
    return server.split("/", 1)[0]


def auth_entry(config: Mapping[str, Any], registry: str) -> dict[str, str] | None:
    """The ``auths`` credentials of ``registry`` in a parsed config.json, as the engine's
    X-Registry-Auth wants them; None if there are none. ``InvalidArgumentError`` for an
    ``auth`` value that is not base64 of ``user:password``."""
    auths = config.get("auths")
    if not isinstance(auths, Mapping):
        return None
    wanted = _key(registry)
    for server, entry in auths.items():
        if not isinstance(entry, Mapping) or _key(str(server)) != wanted:
            continue
        if entry.get("identitytoken"):
            return {"identitytoken": str(entry["identitytoken"]), "serveraddress": registry}
        username, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                text = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise InvalidArgumentError(
                    f"the docker config's auth for {server!r} is not base64 text"
                ) from None
            username, sep, password = text.partition(":")
            if not sep:
                raise InvalidArgumentError(
                    f"the docker config's auth for {server!r} is not user:password"
                )
        if username:
            return {"username": str(username), "password": str(password or ""),
                    "serveraddress": registry}  # fmt: skip
    return None


def helper_of(config: Mapping[str, Any], registry: str) -> str | None:
    """The credential helper the config names for ``registry`` (``credHelpers``, then
    ``credsStore``)."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, Mapping):
        for server, name in helpers.items():
            if _key(str(server)) == _key(registry) and isinstance(name, str) and name:
                return name
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def encode_auth(auth: Mapping[str, str]) -> str:
    """The X-Registry-Auth header: base64url of the JSON credentials."""
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode()).decode()


def config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _read_config() -> dict[str, Any]:
    path = config_path()
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"the docker config {path} cannot be read: {exc}") from exc
    return raw if isinstance(raw, dict) else {}


async def _from_helper(helper: str, registry: str) -> dict[str, str] | None:
    """``docker-credential-<helper> get``, the registry on its stdin (the CLI's protocol)."""
    program = f"docker-credential-{helper}"
    try:
        with anyio.fail_after(_HELPER_TIMEOUT):
            result = await anyio.run_process([program, "get"], input=registry.encode(), check=False)
    except (OSError, TimeoutError) as exc:
        raise InvalidArgumentError(f"credential helper {program} failed: {exc}") from exc
    if result.returncode != 0:
        text = result.stdout.decode(errors="replace").strip()
        if "credentials not found" in text.lower():
            return None
        raise InvalidArgumentError(f"credential helper {program} failed: {text}")
    try:
        answer = json.loads(result.stdout)
        username, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(f"credential helper {program} answered no credentials") from exc
    if username == "<token>":
        return {"identitytoken": secret, "serveraddress": registry}
    return {"username": username, "password": secret, "serveraddress": registry}


async def credentials(image: str) -> str | None:
    """The X-Registry-Auth value for pulling ``image``, as the docker CLI would send it; None
    where the config has none (an anonymous pull)."""
    config = await anyio.to_thread.run_sync(_read_config)
    registry = registry_of(image)
    helper = helper_of(config, registry)
    auth = await _from_helper(helper, registry) if helper else None
    if auth is None:
        auth = auth_entry(config, registry)
    return encode_auth(auth) if auth is not None else None


class Puller:
    """Makes images present before their jobs are created: one pull per image at a time,
    shared by every submission that wants it (a cancelled one does not stop it for the rest)."""

    def __init__(
        self,
        engine: Engine,
        tasks: Tasks,
        on_progress: Callable[[PullProgress], None] | None = None,
    ) -> None:
        self._engine = engine
        self._tasks = tasks
        self._on_progress = on_progress
        self._pulls: dict[str, asyncio.Future[None]] = {}
        self.pulls = 0  # pulls made (for statistics and tests)

    async def ensure(self, image: str, policy: PullPolicy) -> None:
        """Pull ``image`` if the policy asks: ``always``, or ``missing`` and it is absent.

        ``ImageNotFoundError`` if the registry has no such image, ``ImagePullError`` if it
        refuses the credentials (or wants some), ``DrmCommunicationError``/``EngineError`` if
        the engine fails.
        """
        if policy == "never":
            return
        if policy == "missing" and image not in self._pulls:
            with engine_errors("image", image=image):
                if await self._engine.image_present(image):
                    return
        pull = self._pulls.get(image)
        if pull is None:
            pull = self._pulls[image] = asyncio.get_running_loop().create_future()
            pull.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._tasks.spawn(self._pull, image, pull)
        await asyncio.shield(pull)

    async def _pull(self, image: str, done: asyncio.Future[None]) -> None:
        try:
            auth = await credentials(image)
            self.pulls += 1
            with engine_errors("pull", image=image):
                await self._engine.pull(image, auth, lambda raw: self._progress(image, raw))
        except Exception as exc:  # the submissions waiting for it get it
            self._report(PullProgress(image, "failed", done=True, error=str(exc)))
            done.set_exception(exc)
        except BaseException:
            done.cancel()  # the tracker closes
            raise
        else:
            self._report(PullProgress(image, "present", done=True))
            done.set_result(None)
        finally:
            self._pulls.pop(image, None)

    def _progress(self, image: str, raw: Mapping[str, Any]) -> None:
        detail = raw.get("progressDetail")
        if not isinstance(detail, Mapping):
            detail = {}
        status, layer = str(raw.get("status") or ""), str(raw.get("id") or "")
        current, total = _count(detail.get("current")), _count(detail.get("total"))
        self._report(PullProgress(image, status, layer, current, total))

    def _report(self, progress: PullProgress) -> None:
        if self._on_progress is None:
            return
        try:
            self._on_progress(progress)
        except Exception:  # the caller's callback: its bug must not stop the pull
            log.exception("the on_pull callback failed")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
