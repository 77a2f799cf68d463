"""The in-memory engine's Docker semantics: events, replay, statuses, output, faults."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from aiotracker._engine.base import ContainerEvent, Engine, EngineCallError, EngineConnectionError
from aiotracker._engine.fake import FakeEngine

IMAGE = "aiotracker/busybox:latest"


def config(restart: str = "", auto_remove: bool = False, **labels: str) -> dict[str, Any]:
    host = {"AutoRemove": auto_remove, "RestartPolicy": {"Name": restart or "no"}}
    return {"Image": IMAGE, "Cmd": ["true"], "Labels": labels, "HostConfig": host}


class Sub:
    """What one ``stream_events`` call saw: events, when it connected, how it ended."""

    def __init__(self) -> None:
        self.seen: list[ContainerEvent | str] = []
        self.error: BaseException | None = None
        self.connected = anyio.Event()

    @property
    def events(self) -> list[ContainerEvent]:
        return [e for e in self.seen if isinstance(e, ContainerEvent)]

    def connect(self) -> None:
        self.seen.append("connected")
        self.connected.set()

    async def run(self, engine: FakeEngine, labels: Sequence[str], since: int | None) -> None:
        try:
            await engine.stream_events(labels, since, self.connect, self.seen.append)
        except EngineConnectionError as exc:
            self.error = exc


@asynccontextmanager
async def running() -> AsyncIterator[TaskGroup]:
    """A task group for streams, cancelled at the end (fixtures run teardown in another task)."""
    async with anyio.create_task_group() as group:
        yield group
        group.cancel_scope.cancel()


async def subscribe(
    tg: TaskGroup, engine: FakeEngine, labels: Sequence[str] = (), since: int | None = None
) -> Sub:
    sub = Sub()
    tg.start_soon(sub.run, engine, labels, since)
    await sub.connected.wait()
    return sub


async def test_satisfies_the_engine_protocol() -> None:
    """mypy accepts the fake as an Engine and open() reads the fake clock."""
    engine: Engine = FakeEngine()
    info = await engine.open()
    assert (info.host_name, info.system_time_ns, info.api_version) == (
        "fake-host", 1_700_000_000 * 10**9, "1.41")  # fmt: skip
    assert engine.url == "fake://"


async def test_lifecycle_events_in_order() -> None:
    """create, start and die arrive in order, 1000 ns apart, with Docker's attributes."""
    async with running() as tg:
        engine = FakeEngine()
        sub = await subscribe(tg, engine)
        cid = await engine.create(config(job="a"), "job1")
        await engine.start(cid)
        engine.exit(cid, 3)
        await engine.drain()
        assert sub.seen[0] == "connected"
        assert [e.action for e in sub.events] == ["create", "start", "die"]
        assert [e.time_ns for e in sub.events] == [
            engine.clock_ns - 2000 + i * 1000 for i in range(3)
        ]
        attributes = {"job": "a", "name": "job1", "image": IMAGE, "exitCode": "3"}
        assert sub.events[2].attributes == attributes
        d = await engine.inspect(cid)
        assert (d.status, d.exit_code, d.running, d.name) == ("exited", 3, False, "job1")
        assert d.created < d.started_at < d.finished_at  # type: ignore[operator]
        assert (await engine.info()).system_time_ns == sub.events[2].time_ns
        assert len(cid) == 64


async def test_since_replay_is_inclusive_without_duplicates() -> None:
    """since replays from the boundary event on, then on_connected, then live, each once."""
    async with running() as tg:
        engine = FakeEngine()
        cid = await engine.create(config(), None)
        await engine.start(cid)
        since = engine.clock_ns  # the start event's time
        sub = await subscribe(tg, engine, since=since)
        none = await subscribe(tg, engine)
        engine.exit(cid)
        await engine.drain()
        assert [e if isinstance(e, str) else e.action for e in sub.seen] == [
            "start", "connected", "die"]  # fmt: skip
        assert sub.events[0].time_ns == since
        assert [e.action for e in none.events] == ["die"]


async def test_label_filter_and_actions() -> None:
    """Every label must match ("k" or "k=v"), and only EVENT_ACTIONS are delivered."""
    async with running() as tg:
        engine = FakeEngine()
        sub = await subscribe(tg, engine, labels=["job", "team=x"])
        match = await engine.create(config(job="1", team="x"), None)
        await engine.create(config(job="2", team="y"), None)
        await engine.create(config(team="x"), None)
        await engine.start(match)
        await engine.kill(match)  # a kill event, then die
        await engine.disable_restart(match)  # an update event
        await engine.drain()
        assert [(e.container_id, e.action) for e in sub.events] == [
            (match, "create"), (match, "start"), (match, "die")]  # fmt: skip


async def test_ring_keeps_the_last_256_events() -> None:
    """Replay covers only the engine-wide ring of the last 256 events."""
    async with running() as tg:
        engine = FakeEngine()
        events = [engine.emit("f" * 64, "start", n=str(n)) for n in range(300)]
        sub = await subscribe(tg, engine, since=events[0].time_ns)
        assert [e.attributes["n"] for e in sub.events] == [str(n) for n in range(44, 300)]


async def test_error_statuses() -> None:
    """Conflicts are 409, unknown things 404, unpausing a running container 500."""
    engine = FakeEngine()
    cid, _ = await engine.create(config(), "one"), await engine.create(config(), "two")

    async def check(call: Awaitable[object], status: int, text: str) -> None:
        with pytest.raises(EngineCallError) as info:
            await call
        assert info.value.status == status
        assert text in info.value.message

    await check(engine.create(config(), "one"), 409, 'The container name "/one" is already in use')
    await check(engine.create({"Image": "nope"}, None), 404, "No such image: nope")
    await check(engine.start("nothing"), 404, "No such container: nothing")
    await check(engine.pause(cid), 409, "is not running")
    await check(engine.unpause(cid), 500, "is not paused")
    await check(engine.kill(cid), 409, "is not running")
    await engine.start(cid)
    await engine.start(cid)  # a 304 is not an error
    await engine.pause(cid)
    await check(engine.pause(cid), 409, "is already paused")
    await check(engine.remove(cid), 409, "You cannot remove a paused container")
    await check(engine.rename(cid, "two"), 409, "is already in use")
    await check(engine.rename(cid, "one"), 400, "same name")
    await engine.remove(cid, force=True)
    assert engine.calls["remove"] == 2


async def test_refused_start_leaves_created_with_127() -> None:
    """A refused start raises, sets Error and 127, keeps created and emits nothing."""
    async with running() as tg:
        engine = FakeEngine()
        cid = await engine.create(config(), "bad")
        sub = await subscribe(tg, engine)
        engine.refuse_start("bad", message="no such file")
        with pytest.raises(EngineCallError, match="no such file"):
            await engine.start(cid)
        d = await engine.inspect(cid)
        assert (d.status, d.exit_code, d.error) == ("created", 127, "no such file")
        assert sub.events == []


async def test_attach_frames_then_end_at_exit() -> None:
    """Attached frames arrive in order, and the reader ends when the container exits."""
    engine = FakeEngine()
    cid = await engine.create(config(), None)
    async with engine.attach_output(cid) as read:
        assert engine.open_attaches == 1
        await engine.start(cid)
        engine.write_output(cid, 1, b"out")
        engine.write_output(cid, 2, b"err")
        engine.exit(cid)
        assert [await read(), await read(), await read()] == [(1, b"out"), (2, b"err"), None]
    assert engine.open_attaches == 0


async def test_logs_replay_and_exited_attach() -> None:
    """logs=True replays first; attaching to an exited container gives the replay then None."""
    engine = FakeEngine()
    cid = await engine.create(config(), None)
    await engine.start(cid)
    engine.write_output(cid, 1, b"early")
    async with engine.attach_output(cid, logs=True) as read:
        engine.write_output(cid, 1, b"late")
        assert [await read(), await read()] == [(1, b"early"), (1, b"late")]
        engine.cut_attach(cid)
        engine.write_output(cid, 2, b"lost")
        assert await read() is None
    engine.exit(cid)
    async with engine.attach_output(cid, logs=True) as read:
        assert [await read() for _ in range(4)] == [(1, b"early"), (1, b"late"), (2, b"lost"), None]
    async with engine.read_logs(cid) as read:
        assert [await read() for _ in range(4)] == [(1, b"early"), (1, b"late"), (2, b"lost"), None]
    await engine.feed_stdin(cid, io.BytesIO(b"input"))
    assert engine.container(cid).stdin == b"input"


async def test_fail_injection_by_container() -> None:
    """fail() raises for the next calls about the matched container only, then stops."""
    engine = FakeEngine()
    one, two = await engine.create(config(), "one"), await engine.create(config(), "two")
    engine.fail("inspect", times=2, match="one")
    engine.fail("start", EngineCallError(500, "boom"))
    await engine.inspect(two)
    for _ in range(2):
        with pytest.raises(EngineConnectionError, match="injected"):
            await engine.inspect(one[:12])
    await engine.inspect(one)
    with pytest.raises(EngineCallError, match="boom"):
        await engine.start(two)
    assert engine.container(two).status == "created"
    assert engine.calls["inspect"] == 4
    assert engine.call_log[-1] == ("start", two)
    with pytest.raises(ValueError, match="unknown operation"):
        engine.fail("stop")


async def test_hold_before_and_after() -> None:
    """hold() blocks before acting, or after acting: a stale inspect after a newer die."""
    async with running() as tg:
        engine = FakeEngine()
        cid = await engine.create(config(), None)
        await engine.start(cid)
        before = engine.hold("kill")
        tg.start_soon(engine.kill, cid)
        await before.arrived.wait()
        assert engine.container(cid).status == "running"
        before.release()
        await anyio.wait_all_tasks_blocked()
        assert engine.container(cid).exit_code == 137
        await engine.start(cid)
        after = engine.hold("inspect", after=True)
        results: list[str] = []

        async def inspect() -> None:
            results.append((await engine.inspect(cid)).status)

        tg.start_soon(inspect)
        await after.arrived.wait()
        engine.exit(cid, 1)
        after.release()
        await anyio.wait_all_tasks_blocked()
        assert results == ["running"]
        assert engine.container(cid).status == "exited"
        gate = engine.hold("unpause")

        async def unpause() -> None:
            with pytest.raises(KeyError):
                await engine.unpause(cid)
            results.append("failed")

        tg.start_soon(unpause)
        await gate.arrived.wait()
        gate.fail(KeyError("gate"))
        await anyio.wait_all_tasks_blocked()
        assert results[-1] == "failed"


async def test_cut_down_and_close() -> None:
    """Cut, down and closed engines break streams and refuse calls with EngineConnectionError."""
    async with running() as tg:
        engine = FakeEngine()
        sub = await subscribe(tg, engine)
        engine.cut_streams()
        await anyio.wait_all_tasks_blocked()
        assert isinstance(sub.error, EngineConnectionError)
        assert engine.open_streams == 0
        sub = await subscribe(tg, engine)
        engine.set_down(True)
        await anyio.wait_all_tasks_blocked()
        assert sub.error is not None
        assert engine.open_streams == 0
        with pytest.raises(EngineConnectionError):
            await engine.image_tags()
        engine.set_down(False)
        assert await engine.image_tags() == [IMAGE]
        await engine.aclose()
        await engine.aclose()
        with pytest.raises(EngineConnectionError):
            await engine.info()
        await engine.open()
        assert await engine.list_containers("x") == []


async def test_auto_remove_and_force_remove() -> None:
    """AutoRemove emits die then destroy; force-removing a running one kills it first."""
    async with running() as tg:
        engine = FakeEngine()
        sub = await subscribe(tg, engine)
        auto = await engine.create(config(auto_remove=True), None)
        await engine.start(auto)
        engine.exit(auto, 7)
        other = await engine.create(config(), None)
        await engine.start(other)
        await engine.remove(other, force=True)
        await engine.drain()
        assert [(e.action, e.attributes.get("exitCode")) for e in sub.events] == [
            ("create", None), ("start", None), ("die", "7"), ("destroy", None),
            ("create", None), ("start", None), ("die", "137"), ("destroy", None)]  # fmt: skip
        with pytest.raises(EngineCallError) as info:
            await engine.inspect(auto)
        assert info.value.status == 404


async def test_id_prefix_and_name_resolution() -> None:
    """Ids resolve exactly, by unique prefix or by name; a shared prefix is a 500."""
    engine = FakeEngine()
    ids = [await engine.create(config(), f"c{n}") for n in range(17)]
    first: dict[str, list[str]] = {}
    for cid in ids:  # 17 ids, 16 hex digits: two share their first digit
        first.setdefault(cid[0], []).append(cid)
    shared = next(group for group in first.values() if len(group) > 1)
    with pytest.raises(EngineCallError, match="multiple IDs found") as info:
        await engine.inspect(shared[0][0])
    assert info.value.status == 500
    assert (await engine.inspect(ids[3][:20])).name == "c3"
    assert (await engine.inspect("c5")).container_id == ids[5]
    await engine.rename("c5", "renamed")
    assert engine.container("renamed").id == ids[5]


async def test_list_status_text_oom_and_restart_policy() -> None:
    """list shows Docker's status words; oom comes before die; a restart policy restarts."""
    async with running() as tg:
        engine = FakeEngine()
        sub = await subscribe(tg, engine)
        ids = [await engine.create(config(job=str(n)), f"j{n}") for n in range(4)]
        restarting = await engine.create(config(restart="on-failure", job="r"), "r")
        for cid in [*ids[1:], restarting]:
            await engine.start(cid)
        await engine.pause(ids[2])
        engine.exit(ids[3], 3, oom=True)
        engine.exit(restarting, 1)
        summaries = {s.name: (s.state, s.status) for s in await engine.list_containers("job")}
        assert summaries == {
            "j0": ("created", "Created"), "j1": ("running", "Up 1 second"),
            "j2": ("paused", "Up 1 second (Paused)"), "j3": ("exited", "Exited (3) 1 second ago"),
            "r": ("restarting", "Restarting (1) 1 second ago")}  # fmt: skip
        assert [s.name for s in await engine.list_containers("job=1")] == ["j1"]
        details = await engine.inspect(ids[3])
        assert details.oom_killed
        assert details.exit_code == 3
        engine.restart(restarting)
        await engine.disable_restart(restarting)
        engine.exit(restarting, 1)
        await engine.drain()
        assert engine.container(restarting).status == "exited"
        actions = [e.action for e in sub.events if e.container_id in (ids[3], restarting)]
        assert actions[-7:] == ["start", "start", "oom", "die", "die", "start", "die"]
