"""Which engine to talk to, and how: the Docker client configuration users already have.

Resolved once, when a tracker is made, in the docker CLI's order of precedence:

1. the ``docker_url`` argument;
2. ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` for TLS);
3. ``DOCKER_CONTEXT``, then the ``currentContext`` of ``$DOCKER_CONFIG/config.json``
   (``~/.docker`` by default): the context's endpoint and its TLS material
   (``contexts/meta/<sha256 of the name>/meta.json``, ``contexts/tls/<sha256>/docker/``);
4. the local socket (``/run/docker.sock``, then ``/var/run/docker.sock``).

``DOCKER_API_VERSION`` pins the API version (else the engine's, capped at the newest this
library knows). TLS follows the Go client: certificates from ``DOCKER_CERT_PATH`` (or
``~/.docker`` when only ``DOCKER_TLS_VERIFY`` is set), the server verified against ``ca.pem``
when ``DOCKER_TLS_VERIFY`` is non-empty; a context's ``SkipTLSVerify`` likewise. A missing
client certificate is not an error here: the engine refuses the handshake, and opening
raises ``DrmCommunicationError``. Pure file reading: no I/O with the engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# The newest API version whose behaviour this library knows (Docker 29); an engine that offers
# a newer one is spoken to in this one.
NEWEST_API = (1, 52)
_API_VERSION = re.compile(r"^v?(\d+)\.(\d+)$")


class EndpointError(ValueError):
    """The configuration names no engine this library can reach (a bad URL, an unknown
    context, unreadable TLS material)."""


class UnsupportedEndpointError(EndpointError):
    """A well-formed endpoint this library does not serve (``ssh://``)."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Paths of the TLS material ("" when absent) and whether the server is verified."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    verify: bool = True

    def context(self) -> ssl.SSLContext:
        """An SSL context for the client; ``EndpointError`` if a file cannot be loaded."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            if self.ca:
                ctx.load_verify_locations(cafile=self.ca)
            if self.cert and self.key:
                ctx.load_cert_chain(certfile=self.cert, keyfile=self.key)
        except (OSError, ssl.SSLError) as exc:
            raise EndpointError(f"cannot load the TLS material: {exc}") from exc
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An engine's address (``unix:///path`` or ``tcp://host:port``), its TLS, the pinned API
    version (``"1.41"``, or "" to follow the engine) and where the setting came from."""

    url: str
    tls: TLSConfig | None = None
    api_version: str = ""
    origin: str = "default"

    @property
    def http_url(self) -> str:
        """The base URL for HTTP requests (``https://`` with TLS)."""
        if self.url.startswith("unix://"):
            return "unix://localhost"
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{urlsplit(self.url).netloc}"


def resolve_endpoint(docker_url: str | None, env: Mapping[str, str] | None = None) -> Endpoint:
    """The engine to use (see the module's docstring); ``EndpointError`` if malformed."""
    env = os.environ if env is None else env
    api_version = _api_version(env.get("DOCKER_API_VERSION", ""))
    if docker_url is not None and not isinstance(docker_url, str):
        raise EndpointError(f"docker_url must be a string, got {docker_url!r}")
    if docker_url:
        return Endpoint(_check_url(docker_url, "docker_url"), _env_tls(env, docker_url),
                        api_version, "docker_url")  # fmt: skip
    if host := env.get("DOCKER_HOST", ""):
        return Endpoint(_check_url(host, "DOCKER_HOST"), _env_tls(env, host), api_version,
                        "DOCKER_HOST")  # fmt: skip
    config_dir = Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME") or "~").expanduser()
                      / ".docker")  # fmt: skip
    name = env.get("DOCKER_CONTEXT", "") or _current_context(config_dir)
    if name and name != "default":
        return _context(config_dir, name, api_version)
    for path in ("/run/docker.sock", "/var/run/docker.sock"):
        if os.path.exists(path):
            return Endpoint(f"unix://{path}", None, api_version, "default socket")
    return Endpoint("unix:///var/run/docker.sock", None, api_version, "default socket")


def _api_version(value: str) -> str:
    if not value:
        return ""
    match = _API_VERSION.match(value.strip())
    if match is None:
        raise EndpointError(f"DOCKER_API_VERSION {value!r} is not <major>.<minor>")
    return f"{int(match[1])}.{int(match[2])}"


def negotiate(pinned: str, engine_version: str, engine_min: str = "") -> str:
    """The API version to speak: the pinned one, else the engine's capped at ``NEWEST_API``
    (never below the engine's minimum)."""
    if pinned:
        return pinned
    offered = _as_tuple(engine_version) or NEWEST_API
    chosen = min(offered, NEWEST_API)
    lowest = _as_tuple(engine_min)
    if lowest is not None and chosen < lowest:
        chosen = lowest
    return f"{chosen[0]}.{chosen[1]}"


def _as_tuple(version: str) -> tuple[int, int] | None:
    match = _API_VERSION.match(version.strip()) if isinstance(version, str) else None
    return (int(match[1]), int(match[2])) if match else None


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise EndpointError(f"{what} {url!r} names no socket path")
        return url
    if parts.scheme == "ssh":
        raise UnsupportedEndpointError(
            f"{what} {url!r}: ssh:// engines are not supported (no SSH transport is "
            "installed); forward the engine's socket (ssh -L) and use unix:// or tcp://"
        )
    if parts.scheme in ("tcp", "http", "https"):
        try:
            port = parts.port
        except ValueError:
            raise EndpointError(f"{what} {url!r} has an invalid port") from None
        if not parts.hostname or port is None:
            raise EndpointError(f"{what} {url!r} is not tcp://<host>:<port>")
        return f"tcp://{parts.netloc}"
    raise EndpointError(f"{what} {url!r} is not unix://<path> or tcp://<host>:<port>")


def _env_tls(env: Mapping[str, str], url: str) -> TLSConfig | None:
    """TLS from the environment, for a TCP engine (as the Go client reads it)."""
    if url.startswith("unix://"):
        return None
    verify = bool(env.get("DOCKER_TLS_VERIFY", ""))
    cert_path = env.get("DOCKER_CERT_PATH", "")
    if url.startswith("https://") and not (verify or cert_path):
        return TLSConfig()  # https:// asks for TLS: the system's CAs
    if not verify and not cert_path:
        return None
    base = Path(cert_path or Path(env.get("HOME") or "~").expanduser() / ".docker")
    return _tls_from(base, verify=verify)


def _tls_from(directory: Path, *, verify: bool) -> TLSConfig:
    """The ca.pem, cert.pem and key.pem of a directory, those present."""
    ca, cert, key = (_present(directory / f) for f in ("ca.pem", "cert.pem", "key.pem"))
    return TLSConfig(ca, cert, key, verify)


def _present(path: Path) -> str:
    return str(path) if path.is_file() else ""


def _current_context(config_dir: Path) -> str:
    try:
        config = json.loads((config_dir / "config.json").read_bytes())
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as exc:
        raise EndpointError(f"cannot read {config_dir / 'config.json'}: {exc}") from exc
    name = config.get("currentContext", "") if isinstance(config, dict) else ""
    return name if isinstance(name, str) else ""


def _context(config_dir: Path, name: str, api_version: str) -> Endpoint:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta_path = config_dir / "contexts" / "meta" / digest / "meta.json"
    try:
        meta = json.loads(meta_path.read_bytes())
        docker = meta["Endpoints"]["docker"]
        host = docker["Host"]
    except FileNotFoundError:
        raise EndpointError(f"docker context {name!r} does not exist ({meta_path})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EndpointError(f"docker context {name!r} is malformed ({meta_path}): {exc}") from exc
    url = _check_url(str(host), f"docker context {name!r}")
    tls = None
    if url.startswith("tcp://"):
        found = _tls_from(config_dir / "contexts" / "tls" / digest / "docker",
                          verify=not docker.get("SkipTLSVerify", False))  # fmt: skip
        if found.ca or found.cert or not found.verify or str(host).startswith("https://"):
            tls = found
    return Endpoint(url, tls, api_version, f"docker context {name!r}")
