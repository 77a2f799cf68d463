"""A registry of the tests' own (Debian's ``docker-registry``, distribution 2.8) on 127.0.0.1,
with htpasswd authentication, where the engine under test can reach it.

Docker reaches the host's loopback, where the registry then listens; the Podman service of
``scripts/podman-engine.sh`` lives in a network namespace of its own, so there the registry is
started inside that namespace (``nsenter --net``) on port 5000, which the service was told
speaks plain HTTP (``scripts/podman-engine.sh`` writes a ``registries.conf.d`` drop-in before it
starts the service: Podman reads it once). Docker takes 127.0.0.0/8 as plain HTTP by itself.
The registry is stopped by its pid; its storage is a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import ENGINE

USER, PASSWORD = "alice", "s3cret-pw"
PODMAN_PIDFILE = os.environ.get("AIOTRACKER_PODMAN_PIDFILE", "/run/podman-test/podman.pid")


def _install() -> None:
    if shutil.which("docker-registry") and shutil.which("htpasswd") and shutil.which("ip"):
        return
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "docker-registry", "apache2-utils", "iproute2"],
        check=True, capture_output=True, timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """One registry process: ``host`` is its ``127.0.0.1:<port>`` as image names write it."""

    def __init__(self) -> None:
        _install()
        self.root = Path(tempfile.mkdtemp(prefix="aitr."))
        self.log = self.root / "registry.log"
        self.netns: str | None = None
        if ENGINE == "podman":
            self.netns = f"/proc/{Path(PODMAN_PIDFILE).read_text().strip()}/ns/net"
        # In the service's own namespace no other program listens: the port it was told of.
        self.port = 5000 if self.netns else _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def _in_netns(self, *command: str) -> list[str]:
        return ["nsenter", f"--net={self.netns}", *command] if self.netns else list(command)

    def start(self) -> None:
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, timeout=30
        ).stdout
        (self.root / "htpasswd").write_bytes(htpasswd)
        (self.root / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: info, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}'}}\n"
            f"auth: {{htpasswd: {{realm: aiotracker-test, path: {self.root / 'htpasswd'}}}}}\n"
        )
        if self.netns:
            subprocess.run(self._in_netns("ip", "link", "set", "lo", "up"), check=True, timeout=30)
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(
                self._in_netns("docker-registry", "serve", str(self.root / "config.yml")),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while "listening on" not in self.log.read_text(errors="replace"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the registry did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def requests(self, fragment: str) -> int:
        """How many requests the registry logged whose line holds ``fragment``."""
        return sum(
            1 for line in self.log.read_text(errors="replace").splitlines()
            if "response completed" in line and fragment in line
        )  # fmt: skip

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
