"""Image pulls against a real registry on 127.0.0.1 (issue 14): the test image pushed there
and removed from the engine, then submitted with the ``pull`` extension."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from aiotracker import (
    DockerTracker,
    ImageNotFoundError,
    ImagePullError,
    JobState,
    JobTemplate,
    PullProgress,
)
from tests.conftest import TEST_IMAGE
from tests.integration._registry import PASSWORD, USER, Registry
from tests.integration.test_tracker import session_containers

Make = Callable[..., JobTemplate]


def docker(*args: str, config: Path | None = None, stdin: str | None = None) -> str:
    command = ["docker", *(["--config", str(config)] if config else []), *args]
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def write_config(directory: Path, host: str, password: str = PASSWORD) -> Path:
    """A docker config with the registry's credentials, as ``docker login`` writes one (the
    login itself is left out: Podman's compat /auth insists on TLS)."""
    directory.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


def present(image: str) -> bool:
    try:
        docker("image", "inspect", image)
    except RuntimeError:
        return False
    return True


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    reg = Registry()
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def pushed(registry: Registry, tmp_path: Path) -> Iterator[str]:
    """The test image under a new name in the registry, absent from the engine."""
    image = f"{registry.host}/aiotracker/pulled-{uuid.uuid4().hex[:8]}:v1"
    config = write_config(tmp_path / "push-config", registry.host)
    docker("tag", TEST_IMAGE, image)
    try:
        docker("push", image, config=config)
    finally:
        docker("rmi", image)
    assert not present(image)
    try:
        yield image
    finally:
        if present(image):
            docker("rmi", "-f", image)


@pytest.fixture
def credentials(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The registry's credentials in the docker config the tracker reads."""
    config = write_config(tmp_path / "docker-config", registry.host)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


async def test_missing_image_is_pulled_and_the_job_runs(
    session_name: str, labels: dict[str, str], template: Make, pushed: str,
    credentials: Path, tmp_path: Path,
) -> None:  # fmt: skip
    """``pull=missing``: the image is pulled with the config's credentials, the job runs it
    and its output is right; the progress callback saw the engine's steps, then ``done``."""
    seen: list[PullProgress] = []
    out = tmp_path / "out"
    async with DockerTracker(session_name, labels=labels, on_pull=seen.append) as tracker:
        job_id = await tracker.add_job(
            template("sh", "-c", "echo pulled", job_category=pushed, output_path=str(out),
                     extensions={"pull": "missing"})
        )  # fmt: skip
        assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    assert out.read_text() == "pulled\n"
    assert present(pushed)
    statuses = [p.status for p in seen]
    assert any(s.startswith(("Pulling", "Copying", "Download", "Pull")) for s in statuses[:-1])
    assert seen[-1] == PullProgress(pushed, "present", done=True)


async def test_ten_concurrent_submissions_share_one_pull(
    session_name: str, labels: dict[str, str], template: Make, pushed: str,
    credentials: Path, registry: Registry,
) -> None:  # fmt: skip
    """Ten submissions of the absent image at once: the tracker pulls it once (one pull ends
    ``present``), and all ten jobs are DONE."""
    seen: list[PullProgress] = []
    async with DockerTracker(session_name, labels=labels, on_pull=seen.append) as tracker:
        ids: list[str] = []

        async def submit() -> None:
            ids.append(await tracker.add_job(
                template("true", job_category=pushed, extensions={"pull": "missing"})
            ))  # fmt: skip

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(submit)
        states = [await tracker.wait(i, timeout=60) for i in ids]
        assert tracker._rt.puller.pulls == 1
    assert states == [JobState.DONE] * 10
    assert sum(p.done for p in seen) == 1


async def test_a_wrong_password_is_a_clear_error_and_leaves_nothing(
    tracker: DockerTracker, template: Make, pushed: str, registry: Registry,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Credentials the registry refuses: ImagePullError naming the image; no container, no
    image; the tracker goes on."""
    config = write_config(tmp_path / "bad-config", registry.host, password="wrong")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    with pytest.raises(ImagePullError) as refused:
        await tracker.add_job(template("true", job_category=pushed, extensions={"pull": "missing"}))
    assert refused.value.image == pushed
    assert not present(pushed)
    assert session_containers(tracker.job_session) == []
    job_id = await tracker.add_job(template("true"))
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE


async def test_an_image_the_registry_lacks_is_image_not_found(
    tracker: DockerTracker, template: Make, registry: Registry, credentials: Path
) -> None:
    """A name the registry never had: ImageNotFoundError, nothing made."""
    missing = f"{registry.host}/aiotracker/never-pushed:v1"
    with pytest.raises(ImageNotFoundError) as refused:
        await tracker.add_job(template("true", job_category=missing, extensions={"pull": "always"}))
    assert refused.value.image == missing
    assert session_containers(tracker.job_session) == []
