"""Image pulls (the ``pull`` extension): the pure parts (registries, references, the docker
config's credentials, helpers) and the tracker's part through the fake engine's registry (one
pull shared by concurrent submissions, progress, refusals that leave nothing behind). The real
registry's side is in tests/integration/test_pull.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from pathlib import Path

import anyio
import pytest

from aiotracker import (
    DockerTracker,
    ImageNotFoundError,
    ImagePullError,
    InvalidArgumentError,
    JobState,
    PullProgress,
)
from aiotracker._config import pull_policy
from aiotracker._engine.docker import pull_reference
from aiotracker._engine.fake import FakeEngine
from aiotracker._pull import DOCKER_HUB, auth_entry, credentials, encode_auth, registry_of
from tests.unit.test_races import SESSION, hold_lease, job

IMAGE = "127.0.0.1:5000/team/tool:1.0"


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def header(value: str | None) -> dict[str, str] | None:
    return None if value is None else json.loads(base64.urlsafe_b64decode(value))


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("busybox", DOCKER_HUB),
        ("library/busybox:1", DOCKER_HUB),
        ("docker.io/library/busybox", DOCKER_HUB),
        ("127.0.0.1:5000/x", "127.0.0.1:5000"),
        ("localhost/x:y", "localhost"),
        ("ghcr.io/o/x@sha256:" + "a" * 64, "ghcr.io"),
        ("team/tool", DOCKER_HUB),
    ],
)
def test_registry_of_an_image(image: str, registry: str) -> None:
    """The first component is a registry only if it looks like a host, as the CLI decides."""
    assert registry_of(image) == registry


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", ("busybox", "latest")),
        ("busybox:1.36", ("busybox", "1.36")),
        ("127.0.0.1:5000/x", ("127.0.0.1:5000/x", "latest")),
        ("127.0.0.1:5000/x:t", ("127.0.0.1:5000/x", "t")),
        ("x@sha256:" + "b" * 64, ("x", "sha256:" + "b" * 64)),
    ],
)
def test_pull_reference_never_asks_for_every_tag(image: str, expected: tuple[str, str]) -> None:
    """An empty tag would pull every tag of the repository: ``latest`` is said outright."""
    assert pull_reference(image) == expected


def test_pull_policy_values() -> None:
    assert pull_policy({}) == "never"
    assert pull_policy({"pull": "missing"}) == "missing"
    with pytest.raises(InvalidArgumentError, match="never, missing or always"):
        pull_policy({"pull": "sometimes"})


def test_auth_entry_forms() -> None:
    """``auth`` (base64 user:password), username/password and identitytoken; keys written as
    URLs match the bare registry; another registry's entry is not used."""
    config = {"auths": {"https://127.0.0.1:5000/v1/": {"auth": basic("u", "p:w")},
                        "other.io": {"username": "a", "password": "b"},
                        "tok.io": {"identitytoken": "T"}}}  # fmt: skip
    assert auth_entry(config, "127.0.0.1:5000") == {
        "username": "u", "password": "p:w", "serveraddress": "127.0.0.1:5000"
    }  # fmt: skip
    assert auth_entry(config, "other.io")["username"] == "a"  # type: ignore[index]
    assert auth_entry(config, "tok.io") == {"identitytoken": "T", "serveraddress": "tok.io"}
    assert auth_entry(config, "nowhere.io") is None
    with pytest.raises(InvalidArgumentError, match="not base64"):
        auth_entry({"auths": {"x.io": {"auth": "!!!"}}}, "x.io")


async def test_credentials_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$DOCKER_CONFIG/config.json`` is read as the CLI reads it; no file, no credentials."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert await credentials(IMAGE) is None
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"127.0.0.1:5000": {"auth": basic("alice", "s3cret")}}})
    )
    assert header(await credentials(IMAGE)) == {
        "username": "alice", "password": "s3cret", "serveraddress": "127.0.0.1:5000"
    }  # fmt: skip
    assert await credentials("busybox") is None


async def test_credentials_from_a_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``credHelpers`` entry runs ``docker-credential-<name> get`` with the registry on its
    stdin; its answer wins over ``auths``; ``<token>`` means an identity token."""
    helper = tmp_path / "docker-credential-test"
    helper.write_text(
        "#!/bin/sh\nread reg\n"
        'if [ "$reg" = tok.io ]; then echo \'{"Username":"<token>","Secret":"T"}\'; exit; fi\n'
        'echo "{\\"Username\\":\\"h-$reg\\",\\"Secret\\":\\"pw\\"}"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({
        "credHelpers": {"127.0.0.1:5000": "test", "tok.io": "test"},
        "auths": {"127.0.0.1:5000": {"auth": basic("file", "x")}},
    }))  # fmt: skip
    assert header(await credentials(IMAGE))["username"] == "h-127.0.0.1:5000"  # type: ignore[index]
    assert header(await credentials("tok.io/x")) == {
        "identitytoken": "T",
        "serveraddress": "tok.io",
    }
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "missing-helper"}))
    with pytest.raises(InvalidArgumentError, match="docker-credential-missing-helper"):
        await credentials(IMAGE)


# -- the tracker, on the fake engine's registry ---------------------------------------------


def pulling(image: str = IMAGE, policy: str = "missing") -> dict[str, object]:
    return {"job_category": image, "extensions": {"pull": policy}}


async def test_ten_submissions_share_one_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten concurrent submissions of an absent image: one pull (held until all ten wait for
    it), every job then runs; progress reaches the callback and ends with ``done``."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    engine = FakeEngine()
    engine.registry[IMAGE] = None
    seen: list[PullProgress] = []
    gate = engine.hold("pull", after=False)
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2, on_pull=seen.append) as t:
        ids: list[str] = []

        async def submit() -> None:
            ids.append(await t.add_job(job("true", **pulling())))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(submit)
            with anyio.fail_after(2):
                await gate.arrived.wait()
            await engine.drain()
            assert engine.calls["image_present"] == 10
            gate.release()
        assert engine.calls["pull"] == 1
        assert len(ids) == 10
        assert all(t.cached_state(i) is JobState.RUNNING for i in ids)
        # Present now: the next submission asks, and pulls nothing.
        await t.add_job(job("true", **pulling()))
        assert engine.calls["pull"] == 1
    assert [p.status for p in seen] == ["Pulling fs layer", "Downloading", "Pull complete",
                                        "present"]  # fmt: skip
    assert seen[1].current == 512
    assert seen[1].total == 1024
    assert seen[-1].done
    assert not seen[-1].error


async def test_always_pulls_and_never_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``always`` pulls a present image; ``never`` (the default) refuses an absent one with
    ImageNotFoundError and asks no registry."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    engine = FakeEngine()
    engine.registry[IMAGE] = None
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as t:
        await hold_lease(t)
        with pytest.raises(ImageNotFoundError):
            await t.add_job(job("true", job_category=IMAGE))
        assert engine.calls["pull"] == 0
        await t.add_job(job("true", **pulling(policy="always")))
        await t.add_job(job("true", **pulling(policy="always")))
        assert engine.calls["pull"] == 2


async def test_refusals_leave_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong credentials: ImagePullError naming the image; an image the registry lacks:
    ImageNotFoundError; no container is left either way, and the tracker goes on."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"127.0.0.1:5000": {"auth": basic("alice", "wrong")}}})
    )
    engine = FakeEngine()
    engine.registry[IMAGE] = encode_auth(
        {"username": "alice", "password": "right", "serveraddress": "127.0.0.1:5000"}
    )
    seen: list[PullProgress] = []
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2, on_pull=seen.append) as t:
        await hold_lease(t)
        with pytest.raises(ImagePullError, match="no basic auth credentials") as refused:
            await t.add_job(job("true", **pulling()))
        assert refused.value.image == IMAGE
        with pytest.raises(ImageNotFoundError, match="manifest unknown"):
            await t.add_array_job(job("true", **pulling("127.0.0.1:5000/nope")), 1, 3)
        assert len(t) == 0
        assert await t.add_job(job("true"))
    assert [p.image for p in seen if p.done] == [IMAGE, "127.0.0.1:5000/nope"]
    assert "no basic auth credentials" in seen[0].error


async def test_a_cancelled_submission_does_not_stop_the_shared_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first of two submissions is cancelled while the pull runs: the pull goes on and
    the second gets its job."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    engine = FakeEngine()
    engine.registry[IMAGE] = None
    gate = engine.hold("pull")
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as t:
        await hold_lease(t)
        first = asyncio.ensure_future(t.add_job(job("true", **pulling())))
        with anyio.fail_after(2):
            await gate.arrived.wait()
        second = asyncio.ensure_future(t.add_job(job("true", **pulling())))
        await engine.drain()
        first.cancel()
        await asyncio.sleep(0.01)
        gate.release()
        job_id = await asyncio.wait_for(second, 2)
        assert t.cached_state(job_id) is JobState.RUNNING
        assert engine.calls["pull"] == 1
        with pytest.raises(asyncio.CancelledError):
            await first
