"""DRMAA2's resource attributes against the real engine (issue 14): limits are real."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from aiotracker import (
    DockerTracker,
    InvalidArgumentError,
    JobState,
    JobTemplate,
    Machine,
    MonitoringSession,
    UnsupportedOperationError,
)
from tests.conftest import ENGINE
from tests.integration.test_tracker import session_containers

Make = Callable[..., JobTemplate]

# 64 MiB into a shell variable: past a 32 MiB limit with no swap, the OOM killer ends it.
HOG = 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo ${#x}'


def inspect(job_id: str) -> dict[str, object]:
    out = subprocess.run(
        ["docker", "inspect", job_id], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def _swap_limit() -> bool:
    out = subprocess.run(
        ["docker", "info", "--format", "{{.SwapLimit}}"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return out.stdout.strip() == "true"


@pytest.mark.skipif(
    not _swap_limit(), reason="the engine has no swap accounting: MemorySwap is dropped"
)
async def test_memory_limit_ends_a_hog_failed_with_the_oom(
    tracker: DockerTracker, template: Make
) -> None:
    """A job allocating past a 32 MiB VIRTUAL_MEMORY limit ends FAILED; its sub-state and
    annotation say the OOM killer ended it; the same job without the limit is DONE."""
    hog = await tracker.add_job(
        template("sh", "-c", HOG, resource_limits={"VIRTUAL_MEMORY": "32768"})
    )
    free = await tracker.add_job(template("sh", "-c", HOG))
    assert await tracker.wait(hog, timeout=60) is JobState.FAILED
    info = await tracker.job_info(hog)
    assert info.exit_status == 137
    if ENGINE == "docker":  # Podman 4.3's inspect says OOMKilled false (tests/.../PODMAN.md)
        assert info.sub_state == "oom_killed"
        assert "OOM" in info.annotation
    host = inspect(hog)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"]) == (32 << 20, 32 << 20)  # type: ignore[index]
    assert await tracker.wait(free, timeout=60) is JobState.DONE


async def test_cpu_limit_and_reservation_show_in_inspect(
    tracker: DockerTracker, template: Make
) -> None:
    """max_slots is NanoCpus, min_phys_memory the memory reservation."""
    job_id = await tracker.add_job(template("true", max_slots=1, min_phys_memory=16384))
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    host = inspect(job_id)["HostConfig"]
    assert host["NanoCpus"] == 1_000_000_000  # type: ignore[index]
    assert host["MemoryReservation"] == 16 << 20  # type: ignore[index]


@pytest.mark.docker_only(
    "Podman 4.3 given ulimits without nproc sets RLIMIT_NPROC above its service's hard limit "
    "and the start fails with EPERM (tests/integration/PODMAN.md)"
)
async def test_open_files_limit_is_the_jobs(tracker: DockerTracker, template: Make) -> None:
    """OPEN_FILES is the nofile ulimit the job itself sees."""
    job_id = await tracker.add_job(
        template("sh", "-c", "ulimit -n", resource_limits={"OPEN_FILES": "123"})
    )
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    logs = subprocess.run(
        ["docker", "logs", job_id], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert logs.strip() == "123"


async def test_another_machine_or_too_many_cpus_is_refused_and_nothing_made(
    tracker: DockerTracker, template: Make, session_name: str
) -> None:
    """Asking for arm64 on an x86-64 engine (or the other way round), or for more CPUs than
    it has, is InvalidArgumentError before anything is created; an attribute aiotracker does
    not honour is UnsupportedOperationError."""
    [machine] = await _machines()
    other = "arm64" if machine.architecture == "x64" else "x64"
    with pytest.raises(InvalidArgumentError, match=other):
        await tracker.add_job(template("true", machine_arch=other))
    with pytest.raises(InvalidArgumentError, match="CPUs"):
        await tracker.add_job(template("true", min_slots=machine.cores_per_socket + 1))
    with pytest.raises(UnsupportedOperationError):
        await tracker.add_job(template("true", queue_name="short"))
    assert session_containers(session_name) == []
    job_id = await tracker.add_job(template("true", machine_arch=machine.architecture))
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE


async def _machines() -> list[Machine]:
    async with MonitoringSession() as monitor:
        return list(await monitor.get_all_machines())
