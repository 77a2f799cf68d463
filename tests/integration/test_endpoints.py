"""Endpoints (issue "client configuration"): a real ``--tlsverify`` engine on ``127.0.0.1``.

One extra dockerd (``_dockerd.ExtraEngine``) listens on its own unix socket and on
``tcp://127.0.0.1:<free port>`` with ``--tlsverify``; its certificates (a CA, a server
certificate for 127.0.0.1, a client certificate, an expired one, an unrelated CA) are made by
the test with the openssl CLI (``_tls.py``). The tracker reaches it through ``DOCKER_HOST`` +
``DOCKER_TLS_VERIFY`` + ``DOCKER_CERT_PATH`` and through a context made with the docker CLI
(current in ``$DOCKER_CONFIG/config.json``, or named by ``DOCKER_CONTEXT``); bad TLS material,
plain HTTP to the TLS port and a listener that never answers each fail the opening with
``DrmCommunicationError`` in bounded time; 40 output streams over TLS do not starve API calls.

Every test sets the whole client environment itself (so the runner's own ``DOCKER_*`` cannot
leak in) and checks that its jobs ran on the TLS engine, not the main one. Every container
carries the run's label and is removed after each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiotracker import DockerTracker, DrmCommunicationError, JobState, JobTemplate
from aiotracker._labels import SESSION_LABEL
from tests.conftest import RUN_LABEL, RUN_TOKEN
from tests.integration._cli import MAIN_SOCKET, gather_bounded
from tests.integration._dockerd import ExtraEngine
from tests.integration._tls import TLSFiles, cert_dir, free_port, make_tls

Make = Callable[..., JobTemplate]

pytestmark = pytest.mark.docker_only(
    "every test drives a dockerd of its own (ExtraEngine) listening with --tlsverify on "
    "127.0.0.1, whatever the engine under test; Podman 4.3's service has no TLS listener "
    "(`podman system service` has no TLS options) and its image cannot be `docker load`ed "
    "into that dockerd under its short name (it is saved as localhost/aiotracker/busybox)"
)

_CLIENT_VARS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT",
                "DOCKER_CONFIG", "DOCKER_API_VERSION")  # fmt: skip
FAIL_TIMEOUT = 5.0  # engine_timeout of the trackers that must fail
FAIL_BOUND = 10.0  # ... and the seconds they may take to say so


@dataclass(frozen=True, slots=True)
class TLSEngine:
    engine: ExtraEngine
    tls: TLSFiles
    port: int

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print a measurement into the test output, past pytest's capture."""
    with capsys.disabled():
        print(f"\n[endpoints] {text}")


def docker_cli(*args: str, config: Path | None = None) -> str:
    """The docker CLI (``--config`` given: that client configuration); stdout."""
    argv = ["docker", *(["--config", str(config)] if config else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSEngine]:
    """A dockerd with ``--tlsverify`` on 127.0.0.1:<free port> (and its unix socket), the test
    image loaded; the docker CLI must reach it with the client certificate."""
    if shutil.which("dockerd") is None or shutil.which("openssl") is None or os.geteuid() != 0:
        pytest.fail("the TLS engine tests need root, dockerd and openssl")
    tls = make_tls(tmp_path_factory.mktemp("tls"))
    port = free_port()
    engine = ExtraEngine([*tls.dockerd_args(), "--host", f"tcp://127.0.0.1:{port}"])
    try:
        engine.start()
        engine.load_image()
        version = subprocess.run(
            ["docker", "--tlsverify", "--tlscacert", str(tls.ca), "--tlscert",
             str(tls.client_cert), "--tlskey", str(tls.client_key), "-H",
             f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, check=False, timeout=60, env=_without_client_vars(),
        )  # fmt: skip
        assert version.returncode == 0, f"the docker CLI cannot reach it: {version.stderr}"
        yield TLSEngine(engine, tls, port)
    finally:
        engine.destroy()


def _without_client_vars() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DOCKER_* of the runner's; an empty DOCKER_CONFIG (no context) unless a test sets one."""
    for name in _CLIENT_VARS:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    return monkeypatch


@pytest.fixture(autouse=True)
def remove_containers(tls_engine: TLSEngine) -> Iterator[None]:
    """Remove every container of this run from the TLS engine after each test (all of its
    containers are this run's: check that none is left)."""
    yield
    engine = tls_engine.engine
    ids = engine.docker("ps", "-aq", "--filter", f"label={RUN_LABEL}={RUN_TOKEN}").split()
    if ids:
        engine.docker("rm", "-f", "-v", *ids)
    assert engine.docker("ps", "-aq").split() == [], "containers without the run's label"


def use_variables(env: pytest.MonkeyPatch, host: str, cert_path: Path | None) -> None:
    env.setenv("DOCKER_HOST", host)
    if cert_path is not None:
        env.setenv("DOCKER_TLS_VERIFY", "1")
        env.setenv("DOCKER_CERT_PATH", str(cert_path))


# -- helpers --------------------------------------------------------------------------------------


async def run_echo(tracker: DockerTracker, template: Make, out: Path) -> None:
    """A job that echoes into ``out``: DONE, and the file holds its line."""
    job = await tracker.add_job(template("echo", "hi", output_path=str(out)))
    assert await tracker.wait(job, timeout=60) is JobState.DONE
    assert out.read_text() == "hi\n"


def session_containers(session: str, host: str) -> list[str]:
    """Ids of the session's containers (its lease's too) on the engine at ``host``, asked with
    none of the client variables a test set."""
    done = subprocess.run(
        ["docker", "-H", host, "ps", "-aq", "--filter", f"label={SESSION_LABEL}={session}"],
        capture_output=True, text=True, check=True, timeout=60, env=_without_client_vars(),
    )  # fmt: skip
    return done.stdout.split()


def assert_on_tls_engine(tls_engine: TLSEngine, session_name: str) -> None:
    """The session's containers are on the TLS engine, none on the main one."""
    assert session_containers(session_name, tls_engine.engine.url) != []
    assert session_containers(session_name, f"unix://{MAIN_SOCKET}") == []


async def open_fails(
    session_name: str, labels: dict[str, str], timeout: float = FAIL_TIMEOUT
) -> tuple[DrmCommunicationError, float]:
    """Opening a tracker (from the environment) raises DrmCommunicationError: it and the
    seconds it took. Another exception, an opening that succeeds or one that hangs, fails."""
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(4 * FAIL_BOUND):
            async with DockerTracker(session_name, labels=labels, engine_timeout=timeout):
                pass
    except DrmCommunicationError as exc:
        return exc, time.monotonic() - t0
    except TimeoutError:
        pytest.fail(f"opening hung for {4 * FAIL_BOUND} s")
    pytest.fail("the tracker opened")


def make_context(config: Path, name: str, host: str, tls: TLSFiles | None = None) -> None:
    """``docker context create`` in the client configuration ``config``."""
    spec = f"host={host}"
    if tls is not None:
        spec += f",ca={tls.ca},cert={tls.client_cert},key={tls.client_key}"
    docker_cli("context", "create", name, "--docker", spec, config=config)


def current_context(config: Path) -> str:
    return str(json.loads((config / "config.json").read_text()).get("currentContext", ""))


def own_connections(port: int) -> int:
    """This process's established TCP connections to 127.0.0.1:<port> (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    remote = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == remote and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


class Gate:
    """A FIFO the jobs block on (``WAIT`` reads a line) until ``release(n)``; held open
    read-write here, so a blocked read sees no end of file until ``close()``."""

    WAIT = "read x < /gate/go"

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        os.mkfifo(directory / "go")
        self.mount = {str(directory): "/gate"}
        self._fd = os.open(directory / "go", os.O_RDWR)

    def release(self, count: int) -> None:
        os.write(self._fd, b"\n" * count)

    def close(self) -> None:
        os.close(self._fd)


@contextlib.asynccontextmanager
async def silent_listener() -> AsyncIterator[int]:
    """A TCP listener on 127.0.0.1 that accepts and never says a byte: its port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in held:
            writer.transport.abort()
        await server.wait_closed()


# -- connecting -----------------------------------------------------------------------------------


async def test_variables_reach_the_tls_engine(
    tls_engine: TLSEngine, client_env: pytest.MonkeyPatch, session_name: str,
    labels: dict[str, str], template: Make, tmp_path: Path,
) -> None:  # fmt: skip
    """DOCKER_HOST=tcp://127.0.0.1:<port>, DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH: the tracker
    opens over TLS with the client certificate and runs a job there."""
    use_variables(client_env, tls_engine.host, tls_engine.tls.cert_path)
    async with DockerTracker(session_name, labels=labels, engine_timeout=10) as tracker:
        await run_echo(tracker, template, tmp_path / "out")
    assert_on_tls_engine(tls_engine, session_name)


async def test_current_context_made_with_the_cli_is_honoured(
    tls_engine: TLSEngine, client_env: pytest.MonkeyPatch, session_name: str,
    labels: dict[str, str], template: Make, tmp_path: Path,
) -> None:  # fmt: skip
    """``docker context create`` + ``docker context use``: with DOCKER_CONFIG and no
    DOCKER_HOST, the tracker reaches the context's TLS engine with its certificates."""
    config = tmp_path / "docker-config"
    make_context(config, "tlsctx", tls_engine.host, tls_engine.tls)
    docker_cli("context", "use", "tlsctx", config=config)
    assert current_context(config) == "tlsctx"
    client_env.setenv("DOCKER_CONFIG", str(config))
    async with DockerTracker(session_name, labels=labels, engine_timeout=10) as tracker:
        await run_echo(tracker, template, tmp_path / "out")
    assert_on_tls_engine(tls_engine, session_name)


async def test_docker_context_variable_beats_the_current_context(
    tls_engine: TLSEngine, client_env: pytest.MonkeyPatch, session_name: str,
    labels: dict[str, str], template: Make, tmp_path: Path,
) -> None:  # fmt: skip
    """DOCKER_CONTEXT=tlsctx wins over a config whose current context is another one (a port
    nobody listens on, so following it would fail)."""
    config = tmp_path / "docker-config"
    make_context(config, "tlsctx", tls_engine.host, tls_engine.tls)
    make_context(config, "elsewhere", f"tcp://127.0.0.1:{free_port()}")
    docker_cli("context", "use", "elsewhere", config=config)
    assert current_context(config) == "elsewhere"
    client_env.setenv("DOCKER_CONFIG", str(config))
    client_env.setenv("DOCKER_CONTEXT", "tlsctx")
    async with DockerTracker(session_name, labels=labels, engine_timeout=10) as tracker:
        await run_echo(tracker, template, tmp_path / "out")
    assert_on_tls_engine(tls_engine, session_name)


# -- failing clearly ------------------------------------------------------------------------------


# What each refusal's message must say (lower case, one of them), besides the engine's address.
# The engine does not tell why it refuses a client certificate: Go sends "bad certificate" (a
# TLS 1.3 engine may say "certificate required" when there is none).
_REFUSALS = {
    "wrong-ca": ("certificate verify failed",),
    "no-client-cert": ("bad certificate", "certificate required"),
    "expired-client-cert": ("bad certificate", "certificate expired"),
    "plain-http": ("http request to an https server",),
}


@pytest.mark.parametrize("case", list(_REFUSALS))
async def test_refused_tls_fails_the_opening_clearly(
    case: str, tls_engine: TLSEngine, client_env: pytest.MonkeyPatch, session_name: str,
    labels: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A server certificate of another CA, no client certificate, an expired client
    certificate, plain HTTP to the TLS port: DrmCommunicationError within a few seconds,
    saying what went wrong and where; nothing is left on the engine."""
    tls = tls_engine.tls
    cert_paths = {
        "wrong-ca": (tls.wrong_ca, tls.client_cert, tls.client_key),
        "no-client-cert": (tls.ca, None, None),
        "expired-client-cert": (tls.ca, tls.expired_cert, tls.expired_key),
    }
    cert_path = cert_dir(tmp_path / "certs", *cert_paths[case]) if case in cert_paths else None
    use_variables(client_env, tls_engine.host, cert_path)
    error, elapsed = await open_fails(session_name, labels)
    message = str(error)
    report(capsys, f"{case}: DrmCommunicationError in {elapsed:.2f} s: {message}")
    assert elapsed < FAIL_BOUND, f"{case}: {elapsed:.2f} s to fail"
    assert f"127.0.0.1:{tls_engine.port}" in message, message
    assert any(words in message.lower() for words in _REFUSALS[case]), message
    assert tls_engine.engine.docker("ps", "-aq").split() == []


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_silent_listener_fails_the_opening_within_the_timeout(
    tls: bool, tls_engine: TLSEngine, client_env: pytest.MonkeyPatch, session_name: str,
    labels: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A tcp:// peer that accepts and never answers (no TLS handshake, no HTTP answer): the
    opening fails with DrmCommunicationError after about engine_timeout, never hangs."""
    timeout = 2.0
    async with silent_listener() as port:
        use_variables(client_env, f"tcp://127.0.0.1:{port}",
                      tls_engine.tls.cert_path if tls else None)  # fmt: skip
        error, elapsed = await open_fails(session_name, labels, timeout=timeout)
    report(capsys, f"silent listener ({'tls' if tls else 'plain'}): DrmCommunicationError in "
           f"{elapsed:.2f} s (engine_timeout {timeout}): {error}")  # fmt: skip
    assert timeout * 0.9 <= elapsed < 2 * timeout + 1, f"{elapsed:.2f} s"


# -- bounds ---------------------------------------------------------------------------------------


async def test_tls_output_streams_do_not_starve_api_calls(
    tls_engine: TLSEngine, client_env: pytest.MonkeyPatch, session_name: str,
    labels: dict[str, str], template: Make, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Over TLS with connection_limit=4, 40 jobs streaming their output (all blocked on a gate,
    so that the 40 streams are surely open) do not delay a quick job's add_job and wait; the
    tracker's connections stay within 40 output streams + 2 (the event stream, the lease's
    stdin) + the API pool (+1: aiohttp may replace an idle keep-alive connection)."""
    limit, n = 4, 40
    use_variables(client_env, tls_engine.host, tls_engine.tls.cert_path)
    gate = Gate(tmp_path / "gate")
    try:
        async with DockerTracker(
            session_name, labels=labels, connection_limit=limit, engine_timeout=20
        ) as tracker:
            outs = [tmp_path / f"out-{i}" for i in range(n)]
            templates = [
                template("sh", "-c", f"echo start {i}; {gate.WAIT}; echo end {i}",
                         output_path=str(out), stage_in_files=gate.mount)
                for i, out in enumerate(outs)
            ]  # fmt: skip
            t_add = time.monotonic()
            jobs = await gather_bounded([functools.partial(tracker.add_job, t)
                                         for t in templates], 16)  # fmt: skip
            add_s = time.monotonic() - t_add
            waits = [asyncio.create_task(tracker.wait(j, timeout=120)) for j in jobs]
            assert {await tracker.job_state(j) for j in jobs} == {JobState.RUNNING}
            streams_open = own_connections(tls_engine.port)
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(20):
                    quick = await tracker.add_job(
                        template("echo", "quick", output_path=str(tmp_path / "quick"))
                    )
                    assert await tracker.wait(quick) is JobState.DONE
            except TimeoutError:
                pytest.fail("add_job + wait of a quick job took over 20 s beside 40 streams")
            quick_s = time.monotonic() - t0
            most = max(streams_open, own_connections(tls_engine.port))
            gate.release(n)
            states = await asyncio.gather(*waits)
    finally:
        gate.close()
    report(capsys, f"tls://, {n} output streams: {n} add_job in {add_s:.2f} s, quick job in "
           f"{quick_s:.2f} s; {streams_open} connections to the engine while blocked, "
           f"at most {most} seen")  # fmt: skip
    assert (tmp_path / "quick").read_text() == "quick\n"
    assert states == [JobState.DONE] * n
    for i, out in enumerate(outs):
        assert out.read_text() == f"start {i}\nend {i}\n"
    assert quick_s < 5, f"the quick job took {quick_s:.2f} s beside {n} streams"
    assert streams_open >= n + 1, f"only {streams_open} connections: the streams were not open"
    assert most <= n + 2 + limit + 1, f"{most} connections to the engine"
