"""An extra Docker engine of the tests' own: its own data root, exec root, socket and pid.

``ExtraEngine`` runs ``dockerd`` (which starts its own containerd under the exec root) with no
bridge, no iptables and no forwarding, so nothing it runs gets a network. A test may stop and
start it (by its pid, never by name); ``destroy()`` stops it, kills anything left under its
exec root, unmounts what it mounted and removes its directories. The main engine is never
touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import TEST_IMAGE

_PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


async def ping(socket_path: str, timeout: float = 1.0) -> bool:
    """True if an engine answers ``GET /_ping`` with 200 on the unix socket."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            try:
                writer.write(_PING)
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.transport.abort()
    except (OSError, TimeoutError):
        return False
    return status.startswith(b"HTTP/1.1 200")


class ExtraEngine:
    """One dockerd of the tests' own, under a short directory in /tmp.

    ``extra_args`` go to dockerd after the usual ones (say ``--tlsverify ...`` and a second
    ``--host tcp://127.0.0.1:<port>``); the unix socket stays, and ``wait_ready`` pings it.
    """

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        # Unix socket paths are limited to 107 bytes: containerd's socket lives under exec root.
        self.root = Path(tempfile.mkdtemp(prefix="aitd.", dir="/tmp"))
        self.data_root = self.root / "d"
        self.exec_root = self.root / "e"
        self.pidfile = self.root / "p"
        self.socket = str(self.root / "s")
        self.log = self.root / "dockerd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _argv(self) -> list[str]:
        return [
            "dockerd",
            "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--ip-forward=false", "--ip-masq=false",
            "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile), "--host", self.url, *self.extra_args,
        ]  # fmt: skip

    def spawn(self) -> None:
        """Start dockerd (same arguments every time); ``wait_ready`` says when it answers."""
        assert self._proc is None, "already running"
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        self.starts += 1

    async def wait_ready(self, timeout: float = 90.0, interval: float = 0.02) -> float:
        """Poll ``/_ping`` until the engine answers; returns ``time.monotonic()`` of the answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self._proc.returncode}: {self.tail()}")
            if await ping(self.socket):
                return time.monotonic()
            await asyncio.sleep(interval)
        raise TimeoutError(f"dockerd did not answer within {timeout} s: {self.tail()}")

    def start(self, timeout: float = 90.0) -> None:
        """Spawn and block until the engine answers."""
        self.spawn()
        asyncio.run(self.wait_ready(timeout))

    async def stop(self, timeout: float = 90.0) -> None:
        """SIGTERM our dockerd by its pid and wait until it has exited (it stops its jobs)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        except TimeoutError:
            proc.kill()
            await asyncio.to_thread(proc.wait)
            raise
        finally:
            self._proc = None

    def stop_sync(self, timeout: float = 90.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """Run the docker CLI against this engine; returns stdout."""
        done = subprocess.run(
            ["docker", "-H", self.url, *args],
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def load_image(self, image: str = TEST_IMAGE) -> None:
        """Copy an image from the main engine (docker save | docker -H ... load)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        assert save.stdout is not None
        try:
            load = subprocess.run(
                ["docker", "-H", self.url, "load"], stdin=save.stdout,
                capture_output=True, check=False, timeout=300,
            )  # fmt: skip
        finally:
            save.stdout.close()
            save.wait(60)
        if save.returncode != 0 or load.returncode != 0:
            raise RuntimeError(f"cannot load {image}: {load.stderr.decode(errors='replace')}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the engine, kill what it left under its exec root, unmount, remove the root."""
        try:
            self.stop_sync(timeout=90)
        finally:
            self._kill_leftovers()
            self._unmount()
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """containerd, shims and job processes of this engine only (found by our exec root)."""
        marker = str(self.exec_root).encode()
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                cmdline = (pid_dir / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def _unmount(self) -> None:
        root = str(self.root) + "/"
        try:
            lines = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return
        points = sorted(
            {line.split()[4] for line in lines if line.split()[4].startswith(root)},
            key=len, reverse=True,
        )  # fmt: skip
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)
