"""The client configuration: docker_url, DOCKER_* variables and contexts, in the CLI's order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aiotracker import DockerTracker, InvalidArgumentError, UnsupportedOperationError
from aiotracker._engine.endpoint import (
    EndpointError,
    TLSConfig,
    UnsupportedEndpointError,
    negotiate,
    resolve_endpoint,
)


def make_context(config: Path, name: str, host: str, *, tls: bool = False,
                 skip_verify: bool = False) -> Path:  # fmt: skip
    """A context as `docker context create` writes it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    tls_dir = config / "contexts" / "tls" / digest / "docker"
    if tls:
        tls_dir.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            (tls_dir / f).write_text("x")
    return tls_dir


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "docker-config"
    path.mkdir()
    make_context(path, "remote", "tcp://10.0.0.9:2376", tls=True)
    make_context(path, "other", "unix:///run/other.sock")
    (path / "config.json").write_text(json.dumps({"currentContext": "other"}))
    return path


def test_precedence_follows_the_docker_cli(config: Path) -> None:
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "remote",
           "DOCKER_HOST": "unix:///run/host.sock"}  # fmt: skip
    assert resolve_endpoint("unix:///run/arg.sock", env).url == "unix:///run/arg.sock"
    assert resolve_endpoint(None, env).url == "unix:///run/host.sock"
    del env["DOCKER_HOST"]
    remote = resolve_endpoint(None, env)
    assert (remote.url, remote.origin) == ("tcp://10.0.0.9:2376", "docker context 'remote'")
    del env["DOCKER_CONTEXT"]
    assert resolve_endpoint(None, env).url == "unix:///run/other.sock"  # currentContext
    env["DOCKER_CONTEXT"] = "default"
    assert resolve_endpoint(None, env).origin == "default socket"


def test_context_tls_material_is_used(config: Path) -> None:
    remote = resolve_endpoint(None, {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "remote"})
    assert remote.tls is not None
    assert remote.tls.verify
    assert remote.tls.ca.endswith("/docker/ca.pem")
    assert remote.http_url == "https://10.0.0.9:2376"


def test_context_that_skips_verification(tmp_path: Path) -> None:
    make_context(tmp_path, "lax", "tcp://127.0.0.1:1", skip_verify=True)
    lax = resolve_endpoint(None, {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "lax"})
    assert lax.tls == TLSConfig("", "", "", verify=False)


def test_plain_tcp_context_has_no_tls(tmp_path: Path) -> None:
    make_context(tmp_path, "plain", "tcp://127.0.0.1:2375")
    plain = resolve_endpoint(None, {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "plain"})
    assert plain.tls is None
    assert plain.http_url == "http://127.0.0.1:2375"


def test_unknown_or_broken_context_is_a_clear_error(config: Path, tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="'nope' does not exist"):
        resolve_endpoint(None, {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "nope"})
    broken = tmp_path / "broken"
    (broken / "contexts" / "meta" / hashlib.sha256(b"b").hexdigest()).mkdir(parents=True)
    (broken / "contexts" / "meta" / hashlib.sha256(b"b").hexdigest() / "meta.json").write_text("{")
    with pytest.raises(EndpointError, match="malformed"):
        resolve_endpoint(None, {"DOCKER_CONFIG": str(broken), "DOCKER_CONTEXT": "b"})


def test_tls_from_the_environment(tmp_path: Path) -> None:
    for f in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / f).write_text("x")
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(tmp_path)}  # fmt: skip
    tls = resolve_endpoint(None, env).tls
    assert tls == TLSConfig(str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"),
                            str(tmp_path / "key.pem"), verify=True)  # fmt: skip
    del env["DOCKER_TLS_VERIFY"]  # a cert path alone: TLS, the server not verified (Go client)
    assert resolve_endpoint(None, env).tls == TLSConfig(
        str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"),
        verify=False,
    )  # fmt: skip
    del env["DOCKER_CERT_PATH"]
    assert resolve_endpoint(None, env).tls is None
    env["DOCKER_TLS_VERIFY"] = "1"
    env["HOME"] = str(tmp_path / "home")  # the default cert path: ~/.docker, absent here
    assert resolve_endpoint(None, env).tls == TLSConfig(verify=True)
    # A unix socket never uses TLS.
    assert resolve_endpoint("unix:///run/x.sock", env).tls is None


def test_missing_client_certificate_is_not_an_error_until_the_handshake(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(tmp_path)}  # fmt: skip
    assert resolve_endpoint(None, env).tls == TLSConfig(str(tmp_path / "ca.pem"), verify=True)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ssh://me@host", UnsupportedEndpointError),
        ("tcp://host", EndpointError),
        ("tcp://host:port", EndpointError),
        ("unix://", EndpointError),
        ("ftp://x:1", EndpointError),
    ],
)
def test_bad_urls(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        resolve_endpoint(url, {})


def test_tracker_maps_endpoint_errors_to_its_own_exceptions(config: Path) -> None:
    with pytest.raises(UnsupportedOperationError, match="ssh"):
        DockerTracker("s", docker_url="ssh://me@host")
    with pytest.raises(InvalidArgumentError):
        DockerTracker("s", docker_url="tcp://host")


def test_unreadable_tls_material_is_refused_at_construction(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(tmp_path)}  # fmt: skip
    tls = resolve_endpoint(None, env).tls
    assert tls is not None
    with pytest.raises(EndpointError, match="TLS material"):
        tls.context()


def test_api_version_pinned_or_negotiated() -> None:
    assert resolve_endpoint("unix:///x", {"DOCKER_API_VERSION": "1.43"}).api_version == "1.43"
    with pytest.raises(EndpointError):
        resolve_endpoint("unix:///x", {"DOCKER_API_VERSION": "latest"})
    assert negotiate("1.43", "1.41") == "1.43"  # pinned: as the user says
    assert negotiate("", "1.41") == "1.41"
    assert negotiate("", "1.54") == "1.52"  # newer than known: the newest known
    assert negotiate("", "1.54", "1.53") == "1.53"  # but never below the engine's minimum
    assert negotiate("", "") == "1.52"
