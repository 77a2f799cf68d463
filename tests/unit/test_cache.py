"""The state cache, driven with hand-made event and inspect records: no engine, no I/O."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from aiotracker import (
    DrmCommunicationError,
    InvalidStateError,
    JobNotFoundError,
    JobState,
    TrackerClosedError,
)
from aiotracker._cache import Change, StateCache
from aiotracker._engine.base import ContainerDetails, ContainerEvent
from aiotracker._labels import (
    ARRAY_INDEX_LABEL,
    ARRAY_LABEL,
    AUTO_REMOVE_LABEL,
    HELD_SUFFIX,
    MANAGED_LABEL,
    RESTART_LABEL,
    TERMINATED_SUFFIX,
)
from aiotracker._waiters import Waiter, Wakeups

JOB = "a" * 64
OTHER = "b" * 64
T0 = 1_700_000_000_000_000_000  # a daemon time in ns
STARTED = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
FINISHED = datetime(2024, 1, 1, 12, 1, tzinfo=UTC)

DONE_OR_FAILED = frozenset({JobState.DONE, JobState.FAILED})


def event(
    action: str, t: int, job_id: str = JOB, name: str = "job", **attrs: str
) -> ContainerEvent:
    return ContainerEvent(job_id, action, T0 + t, {"name": name, **attrs})


def exited(exit_code: int, job_id: str = JOB, **changes: Any) -> ContainerDetails:
    record = ContainerDetails(
        container_id=job_id,
        name="job",
        status="exited",
        running=False,
        paused=False,
        restarting=False,
        oom_killed=False,
        dead=False,
        exit_code=exit_code,
        error="",
        created=STARTED,
        started_at=STARTED,
        finished_at=FINISHED,
        labels={},
    )
    return dataclasses.replace(record, **changes)


def running(job_id: str = JOB) -> ContainerDetails:
    return exited(0, job_id, status="running", running=True, finished_at=None)


def apply(cache: StateCache, *events: ContainerEvent) -> tuple[Wakeups, list[Change], bool]:
    """Apply events in order; return what the last one gave, resolving every wake-up."""
    result: tuple[Wakeups, list[Change], bool] = (Wakeups(), [], False)
    for e in events:
        result = cache.apply(e)
        result[0].resolve()
    return result


def running_cache() -> StateCache:
    cache = StateCache()
    apply(cache, event("create", 1), event("start", 2))
    return cache


def waiter(cache: StateCache, wanted: frozenset[JobState] | JobState, job_id: str = JOB) -> Waiter:
    states = wanted if isinstance(wanted, frozenset) else frozenset({wanted})
    w = cache.add_waiter(job_id, states, asyncio.get_running_loop())
    assert isinstance(w, Waiter)
    return w


def state(cache: StateCache, job_id: str = JOB) -> JobState:
    return cache.require(job_id).state


# -- events and inspects --------------------------------------------------------------------


def test_create_event_adds_a_queued_job() -> None:
    """A create event for an unknown container adds it QUEUED and reports the change."""
    cache = StateCache()
    wakeups, changes, inspect = cache.apply(event("create", 1))
    assert (list(wakeups), changes, inspect) == ([], [Change(JOB, None, JobState.QUEUED)], False)
    assert (state(cache), len(cache), JOB in cache) == (JobState.QUEUED, 1, True)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("job", JobState.QUEUED), (f"job{HELD_SUFFIX}", JobState.QUEUED_HELD),
     (f"job{TERMINATED_SUFFIX}", JobState.FAILED)],
    ids=["plain", "held", "terminated"],
)  # fmt: skip
def test_create_event_state_follows_the_name(name: str, expected: JobState) -> None:
    """The created job's state comes from the name's mark: queued, held or terminated."""
    cache = StateCache()
    apply(cache, event("create", 1, name=name))
    assert state(cache) is expected


def test_start_event_publishes_running() -> None:
    """A start event moves the job to RUNNING and reports the change."""
    cache = StateCache()
    apply(cache, event("create", 1))
    wakeups, changes, inspect = cache.apply(event("start", 2))
    assert (list(wakeups), changes, inspect) == ([], [Change(JOB, None, JobState.RUNNING)], False)
    assert state(cache) is JobState.RUNNING


def test_die_asks_for_an_inspect_and_publishes_nothing_yet() -> None:
    """A die needs the exit status: it asks for an inspect and the job still reads RUNNING."""
    cache = running_cache()
    wakeups, changes, inspect = cache.apply(event("die", 3, exitCode="1"))
    assert (list(wakeups), changes, inspect) == ([], [], True)
    assert state(cache) is JobState.RUNNING


@pytest.mark.parametrize(
    ("exit_code", "final"),
    [(0, JobState.DONE), (1, JobState.FAILED), (137, JobState.FAILED)],
    ids=["exit-0", "exit-1", "exit-137"],
)
def test_create_start_die_inspect_settle_publishes_the_end(exit_code: int, final: JobState) -> None:
    """create, start, die, then the inspect's settle publishes DONE on 0 and FAILED otherwise."""
    cache = running_cache()
    apply(cache, event("die", 3))
    seq = cache.seq(JOB)
    result = cache.settle(exited(exit_code), seq)
    assert result is not None
    wakeups, changes = result
    assert (list(wakeups), changes) == ([], [Change(JOB, None, final)])
    assert state(cache) is final


async def test_waiters_are_resolved_with_the_state() -> None:
    """Waiters for RUNNING and for DONE-or-FAILED each get their state when it is published."""
    cache = StateCache()
    apply(cache, event("create", 1))
    for_running = waiter(cache, JobState.RUNNING)
    for_end = waiter(cache, DONE_OR_FAILED)
    wakeups, _, _ = cache.apply(event("start", 2))
    assert list(wakeups) == [(for_running, JobState.RUNNING)]
    assert not for_running.future.done()  # the caller resolves, after the state is set
    wakeups.resolve()
    assert (for_running.future.result(), for_end.future.done()) == (JobState.RUNNING, False)
    cache.remove_waiter(for_running)  # as its owner does in `finally`
    apply(cache, event("die", 3))
    result = cache.settle(exited(0), cache.seq(JOB))
    assert result is not None
    assert list(result[0]) == [(for_end, JobState.DONE)]
    result[0].resolve()
    assert for_end.future.result() is JobState.DONE
    cache.remove_waiter(for_end)
    assert cache.waiter_count == 0


async def test_answered_waiter_left_registered_is_not_answered_twice() -> None:
    """A waiter whose owner has not yet removed it keeps its first answer through later changes."""
    cache = StateCache()
    apply(cache, event("create", 1))
    w = waiter(cache, JobState.RUNNING)
    apply(cache, event("start", 2), event("die", 3))
    result = cache.settle(exited(0), cache.seq(JOB))
    assert result is not None
    assert [type(outcome) for _, outcome in result[0]] == [InvalidStateError]
    result[0].resolve()
    assert w.future.result() is JobState.RUNNING


async def test_waiter_for_an_unreachable_state_fails_when_the_job_ends() -> None:
    """A waiter for SUSPENDED gets InvalidStateError naming the job when it ends DONE instead."""
    cache = running_cache()
    w = waiter(cache, JobState.SUSPENDED)
    apply(cache, event("die", 3))
    result = cache.settle(exited(0), cache.seq(JOB))
    assert result is not None
    result[0].resolve()
    error = w.future.exception()
    assert isinstance(error, InvalidStateError)
    assert error.job_id == JOB
    assert str(error) == f"job {JOB} ended DONE and can never reach SUSPENDED"


async def test_waiter_for_an_unwanted_non_terminal_state_keeps_waiting() -> None:
    """A state that is neither wanted nor terminal leaves the waiter pending."""
    cache = StateCache()
    apply(cache, event("create", 1))
    w = waiter(cache, DONE_OR_FAILED)
    wakeups, _, _ = apply(cache, event("start", 2), event("pause", 3))
    assert (list(wakeups), w.future.done(), state(cache)) == ([], False, JobState.SUSPENDED)


@pytest.mark.parametrize(
    ("current", "wanted"),
    [(JobState.DONE, {JobState.FAILED, JobState.DONE}), (JobState.DONE, {JobState.DONE}),
     (JobState.DONE, {JobState.DONE, JobState.UNDETERMINED})],
    ids=["go-done-in-failed-done", "go-done-in-done", "go-done-in-done-undetermined"],
)  # fmt: skip
async def test_wait_for_a_state_the_job_is_in_returns_it(
    current: JobState, wanted: set[JobState]
) -> None:
    """Go isInExpectedState true cases: a job already in a wanted state answers at once."""
    cache = StateCache()
    cache.add(JOB, current)
    loop = asyncio.get_running_loop()
    assert cache.add_waiter(JOB, frozenset(wanted), loop) is current
    assert cache.waiter_count == 0


@pytest.mark.parametrize(
    ("current", "wanted"),
    [(JobState.DONE, {JobState.FAILED, JobState.UNDETERMINED}),
     (JobState.FAILED, {JobState.DONE})],
    ids=["go-done-not-in-failed-undetermined", "go-failed-not-in-done"],
)  # fmt: skip
async def test_wait_for_a_state_an_ended_job_cannot_reach_raises(
    current: JobState, wanted: set[JobState]
) -> None:
    """Go isInExpectedState false cases: an ended job raises InvalidStateError at once."""
    cache = StateCache()
    cache.add(JOB, current)
    with pytest.raises(InvalidStateError, match=f"ended {current.name}") as info:
        cache.add_waiter(JOB, frozenset(wanted), asyncio.get_running_loop())
    assert (info.value.job_id, cache.waiter_count) == (JOB, 0)


async def test_wait_on_an_undetermined_job_registers_a_waiter() -> None:
    """Go (Undetermined; Done, Failed) is false; here the job is not ended, so the wait waits."""
    cache = StateCache()
    cache.add(JOB, JobState.UNDETERMINED)
    w = waiter(cache, DONE_OR_FAILED)
    assert (w.future.done(), cache.waiter_count) == (False, 1)
    cache.remove_waiter(w)


async def test_wait_for_an_unknown_job_raises_job_not_found() -> None:
    """A wait on an id the cache does not hold raises JobNotFoundError with that id."""
    cache = StateCache()
    with pytest.raises(JobNotFoundError) as info:
        cache.add_waiter("nope", DONE_OR_FAILED, asyncio.get_running_loop())
    assert info.value.job_id == "nope"


# -- late, repeated and out-of-order news ---------------------------------------------------


def test_stale_event_is_ignored() -> None:
    """An event older than the newest one applied changes nothing (a replay after reconnect)."""
    cache = running_cache()  # start at T0+2
    seq = cache.seq(JOB)
    for stale in (event("pause", 1), event("create", 0), event("die", 1)):
        wakeups, changes, inspect = cache.apply(stale)
        assert (list(wakeups), changes, inspect) == ([], [], False)
    assert (state(cache), cache.seq(JOB)) == (JobState.RUNNING, seq)


@pytest.mark.parametrize(("labels", "ends"), [
    ({MANAGED_LABEL: "1"}, True),
    ({MANAGED_LABEL: "1", RESTART_LABEL: "on-failure"}, False),
    ({}, False),
], ids=["no-restart-policy", "restart-policy", "not-made-by-aiotracker"])  # fmt: skip
async def test_a_die_older_than_a_listing_ends_a_job_that_cannot_run_again(
    labels: dict[str, str], ends: bool
) -> None:
    """A Swarm manager lists a task as running until its node reports the exit: a tracker
    opened meanwhile seeds RUNNING, then hears the die the node stamped before the listing.
    The die is news for a job that cannot run again; for others the listing stays newer."""
    cache = StateCache()
    cache.add(JOB, JobState.RUNNING, labels=labels, version_ns=T0 + 10, ever_started=True)
    w = waiter(cache, DONE_OR_FAILED)
    wakeups, _, needs_inspect = cache.apply(event("die", 5, exitCode="4"))
    wakeups.resolve()
    assert not needs_inspect
    assert w.future.done() is ends
    assert state(cache) is (JobState.FAILED if ends else JobState.RUNNING)
    if not ends:
        cache.remove_waiter(w)
    # Once it has ended, an older die is stale again.
    assert cache.apply(event("die", 4, exitCode="0"))[1] == []


def test_event_at_the_same_time_is_applied() -> None:
    """Two events in the same nanosecond are both news: the second is not stale."""
    cache = StateCache()
    apply(cache, event("create", 5), event("start", 5))
    assert state(cache) is JobState.RUNNING


def test_add_with_an_older_version_is_ignored() -> None:
    """A list entry older than the newest event does not overwrite the job's state."""
    cache = running_cache()
    wakeups, changes = cache.add(JOB, JobState.QUEUED, version_ns=T0 + 1)
    assert (list(wakeups), changes, state(cache)) == ([], [], JobState.RUNNING)


def test_settle_with_an_outdated_seq_returns_none() -> None:
    """An inspect sent before a later event was applied is not applied: settle returns None."""
    cache = running_cache()
    apply(cache, event("die", 3))
    seq = cache.seq(JOB)
    apply(cache, event("start", 4))  # a restart overtook the inspect
    assert cache.settle(exited(1), seq) is None
    assert state(cache) is JobState.RUNNING


def test_settle_with_the_current_seq_applies() -> None:
    """An inspect that no event overtook is applied."""
    cache = running_cache()
    apply(cache, event("die", 3))
    assert cache.settle(exited(2), cache.seq(JOB)) is not None
    assert state(cache) is JobState.FAILED


def test_settle_for_an_unknown_job_adds_it() -> None:
    """An inspect of a job not yet in the cache adds it, with its array labels."""
    cache = StateCache()
    result = cache.settle(running(OTHER), None)
    assert result is not None
    assert result[1] == [Change(OTHER, None, JobState.RUNNING)]
    job = cache.require(OTHER)
    assert (job.state, job.ever_started) == (JobState.RUNNING, True)


def test_settle_exit_uses_the_die_events_exit_code() -> None:
    """For a container already gone, the die's exit code decides DONE or FAILED."""
    cache = running_cache()
    _, changes = cache.settle_exit(JOB, 3)
    assert (changes, state(cache)) == ([Change(JOB, None, JobState.FAILED)], JobState.FAILED)
    assert cache.settle_exit("unknown", 0) == ([], [])


def test_unknown_container_event_asks_for_an_inspect() -> None:
    """A start or die of a container the cache does not hold asks for an inspect."""
    cache = StateCache()
    assert cache.apply(event("start", 1, job_id=OTHER))[2] is True
    assert cache.apply(event("die", 2, job_id=OTHER))[2] is True
    assert cache.apply(event("attach", 3, job_id=OTHER))[2] is False
    assert len(cache) == 0


def test_rename_releases_a_held_job_but_not_a_started_one() -> None:
    """A rename moves a never-started job by its new name; a started job's rename says nothing."""
    cache = StateCache()
    apply(cache, event("create", 1, name=f"job{HELD_SUFFIX}"))
    assert state(cache) is JobState.QUEUED_HELD
    apply(cache, event("rename", 2, name="job"))
    assert state(cache) is JobState.QUEUED
    apply(cache, event("start", 3), event("rename", 4, name=f"job{TERMINATED_SUFFIX}"))
    assert state(cache) is JobState.RUNNING


def test_start_after_die_waits_for_the_inspect() -> None:
    """A start event after a die does not publish RUNNING: only the inspect can tell."""
    cache = running_cache()
    apply(cache, event("die", 3))
    seq = cache.seq(JOB)
    _, changes, _ = cache.apply(event("start", 4))
    assert (changes, state(cache)) == ([], JobState.RUNNING)
    assert cache.settle(exited(1), seq) is None  # overtaken: the tracker asks again
    result = cache.settle(running(), cache.seq(JOB))
    assert result is not None
    assert (result[1], state(cache)) == ([], JobState.RUNNING)
    assert cache.require(JOB).exited is False


def test_mark_started_publishes_running_unless_a_die_came_first() -> None:
    """start returning moves a queued job to RUNNING, but not one whose die was already seen."""
    cache = StateCache()
    apply(cache, event("create", 1))
    assert cache.mark_started(JOB)[1] == [Change(JOB, None, JobState.RUNNING)]
    other = StateCache()
    apply(other, event("create", 1))
    other.require(JOB).exited = True  # the die event raced ahead of start's reply
    assert other.mark_started(JOB) == ([], [])
    assert state(other) is JobState.QUEUED


def test_mark_started_on_a_scheduling_engine_waits_for_the_start_event() -> None:
    """On an engine whose start only schedules the job (Swarm), start returning leaves it
    QUEUED (but known to be started, not held); its start event makes it RUNNING."""
    cache = StateCache()
    apply(cache, event("create", 1))
    assert cache.mark_started(JOB, running=False)[1] == []
    assert state(cache) is JobState.QUEUED
    assert cache.require(JOB).ever_started is True
    assert apply(cache, event("start", 2))[1] == [Change(JOB, None, JobState.RUNNING)]


def test_array_labels_give_array_id_and_index() -> None:
    """A create event's array labels make the job a task; array_jobs lists tasks by index."""
    cache = StateCache()
    apply(
        cache,
        event("create", 1, job_id=OTHER, **{ARRAY_LABEL: "arr", ARRAY_INDEX_LABEL: "2"}),
        event("create", 2, **{ARRAY_LABEL: "arr", ARRAY_INDEX_LABEL: "1"}),
        event("create", 3, job_id="c" * 64),
    )
    assert [(j.job_id, j.index) for j in cache.array_jobs("arr")] == [(JOB, 1), (OTHER, 2)]
    assert cache.require(JOB).array_id == "arr"


# -- output ---------------------------------------------------------------------------------


async def test_pending_output_delays_the_terminal_state() -> None:
    """With output pending, DONE is published only by output_done, and the waiter only then."""
    cache = running_cache()
    cache.begin_output(JOB)
    w = waiter(cache, JobState.DONE)
    apply(cache, event("die", 3))
    result = cache.settle(exited(0), cache.seq(JOB))
    assert result is not None
    assert (list(result[0]), result[1], state(cache)) == ([], [], JobState.RUNNING)
    wakeups, changes = cache.output_done(JOB)
    assert (list(wakeups), changes) == ([(w, JobState.DONE)], [Change(JOB, None, JobState.DONE)])
    wakeups.resolve()
    assert (w.future.result(), state(cache)) == (JobState.DONE, JobState.DONE)


def test_output_done_without_a_known_end_changes_nothing() -> None:
    """Output finishing before the exit status is known publishes nothing; settle then does."""
    cache = running_cache()
    cache.begin_output(JOB)
    assert cache.output_done(JOB) == ([], [])
    apply(cache, event("die", 3))
    result = cache.settle(exited(1), cache.seq(JOB))
    assert result is not None
    assert result[1] == [Change(JOB, None, JobState.FAILED)]


# -- destroy, removal of waiters, fail_all --------------------------------------------------


async def test_destroy_wakes_waiters_with_job_not_found() -> None:
    """A destroy forgets the job, reports it gone and fails its waiters with JobNotFoundError."""
    cache = running_cache()
    w = waiter(cache, DONE_OR_FAILED)
    wakeups, changes, inspect = cache.apply(event("destroy", 3))
    assert (changes, inspect, JOB in cache) == ([Change(JOB, None, None)], False, False)
    wakeups.resolve()
    error = w.future.exception()
    assert isinstance(error, JobNotFoundError)
    assert (error.job_id, str(error)) == (JOB, f"job {JOB} was deleted")
    cache.remove_waiter(w)
    assert cache.waiter_count == 0


def test_destroy_of_an_unknown_job_is_ignored() -> None:
    """A destroy of a container the cache does not hold changes nothing."""
    cache = running_cache()
    assert cache.apply(event("destroy", 3, job_id=OTHER)) == ([], [], False)
    assert len(cache) == 1


async def test_destroy_right_after_die_publishes_the_exit_first() -> None:
    """With AutoRemove, a destroy before the inspect still ends waiters with the die's state."""
    cache = StateCache()
    apply(cache, event("create", 1, **{AUTO_REMOVE_LABEL: "1"}), event("start", 2))
    w = waiter(cache, DONE_OR_FAILED)
    apply(cache, event("die", 3, exitCode="0"), event("destroy", 4))
    assert w.future.result() is JobState.DONE


async def test_destroy_after_die_of_a_removed_job_is_not_found() -> None:
    """A job removed by someone (rm -f: die, destroy) is gone: its waiters get JobNotFoundError."""
    cache = running_cache()
    w = waiter(cache, DONE_OR_FAILED)
    apply(cache, event("die", 3, exitCode="137"), event("destroy", 4))
    with pytest.raises(JobNotFoundError):
        w.future.result()


async def test_remove_waiter_is_idempotent() -> None:
    """Removing a waiter twice counts it once, cancels its future and leaves the others."""
    cache = running_cache()
    first = waiter(cache, JobState.DONE)
    second = waiter(cache, JobState.FAILED)
    assert cache.waiter_count == 2
    cache.remove_waiter(first)
    cache.remove_waiter(first)
    assert (cache.waiter_count, first.future.cancelled()) == (1, True)
    assert cache.require(JOB).waiters == [second]
    cache.remove_waiter(second)
    assert (cache.waiter_count, cache.require(JOB).waiters) == (
        0,
        None,
    )  # the list goes with the last waiter


async def test_remove_waiter_keeps_a_delivered_result() -> None:
    """Removing a waiter that was answered leaves its result, and the count returns to 0."""
    cache = StateCache()
    apply(cache, event("create", 1))
    w = waiter(cache, JobState.RUNNING)
    apply(cache, event("start", 2))
    cache.remove_waiter(w)
    assert (w.future.result(), cache.waiter_count) == (JobState.RUNNING, 0)


async def test_resolve_skips_a_waiter_that_gave_up() -> None:
    """A waiter cancelled (timed out) before its wake-up is skipped without error."""
    cache = running_cache()
    w = waiter(cache, JobState.SUSPENDED)
    w.future.cancel()
    wakeups, _, _ = cache.apply(event("pause", 3))
    assert list(wakeups) == [(w, JobState.SUSPENDED)]
    wakeups.resolve()
    assert w.future.cancelled()


async def test_fail_all_wakes_every_waiter() -> None:
    """fail_all(None, error) gives every waiter of every job that error."""
    cache = running_cache()
    apply(cache, event("create", 3, job_id=OTHER))
    waiters = [waiter(cache, JobState.DONE), waiter(cache, JobState.RUNNING, job_id=OTHER)]
    error = DrmCommunicationError("engine gone")
    wakeups = cache.fail_all(None, error)
    assert list(wakeups) == [(w, error) for w in waiters]
    wakeups.resolve()
    assert [w.future.exception() for w in waiters] == [error, error]
    for w in waiters:
        cache.remove_waiter(w)
    assert cache.waiter_count == 0


async def test_fail_all_for_some_jobs_leaves_the_others() -> None:
    """fail_all with job ids fails only those jobs' waiters."""
    cache = running_cache()
    apply(cache, event("create", 3, job_id=OTHER))
    mine = waiter(cache, JobState.DONE)
    theirs = waiter(cache, JobState.RUNNING, job_id=OTHER)
    error = TrackerClosedError("closed")
    cache.fail_all([OTHER], error).resolve()
    assert (mine.future.done(), theirs.future.exception()) == (False, error)
    cache.remove_waiter(mine)
    cache.remove_waiter(theirs)
    assert cache.waiter_count == 0


def test_forget_removes_the_job() -> None:
    """forget drops a job (deleted by this tracker) and reports it gone."""
    cache = running_cache()
    assert cache.forget(JOB)[1] == [Change(JOB, None, None)]
    assert (len(cache), cache.get(JOB), cache.seq(JOB)) == (0, None, None)
    assert cache.forget(JOB) == ([], [])


def test_job_repr_shows_short_id_and_state() -> None:
    """A cache entry's repr is short enough to read in a failing assertion."""
    assert repr(running_cache().require(JOB)) == "<Job aaaaaaaaaaaa… RUNNING>"


async def test_die_of_own_job_publishes_at_once() -> None:
    """aiotracker's job with no restart policy ends at its die, and no inspect is asked for."""
    cache = StateCache()
    apply(cache, event("create", 1, **{MANAGED_LABEL: "1"}), event("start", 2))
    w = waiter(cache, DONE_OR_FAILED)
    wakeups, _, needs_inspect = cache.apply(event("die", 3, exitCode="2"))
    wakeups.resolve()
    assert not needs_inspect
    assert w.future.result() is JobState.FAILED
    assert cache.require(JOB).state is JobState.FAILED


@pytest.mark.parametrize(
    "labels",
    [{MANAGED_LABEL: "1", RESTART_LABEL: "on-failure"}, {}],
    ids=["restart-policy", "not-made-by-aiotracker"],
)
async def test_die_that_may_not_be_final_waits_for_the_inspect(labels: dict[str, str]) -> None:
    """A die of a job with a restart policy, or of another tool's job, publishes nothing."""
    cache = StateCache()
    apply(cache, event("create", 1, **labels), event("start", 2))
    w = waiter(cache, DONE_OR_FAILED)
    apply(cache, event("die", 3, exitCode="0"))
    assert not w.future.done()
    assert cache.require(JOB).state is JobState.RUNNING


async def test_die_of_own_job_waits_for_its_output() -> None:
    """The die's end is held back while the output files are still being written."""
    cache = StateCache()
    apply(cache, event("create", 1, **{MANAGED_LABEL: "1"}), event("start", 2))
    cache.begin_output(JOB)
    w = waiter(cache, DONE_OR_FAILED)
    apply(cache, event("die", 3, exitCode="0"))
    assert not w.future.done()
    wakeups, _ = cache.output_done(JOB)
    wakeups.resolve()
    assert w.future.result() is JobState.DONE


def test_late_create_never_queues_a_started_job_again() -> None:
    """Podman delivers events late: a create that lands after the start changes nothing."""
    cache = StateCache()
    cache.add(JOB, JobState.QUEUED, labels={MANAGED_LABEL: "1"})
    cache.mark_started(JOB)[0].resolve()
    assert state(cache) is JobState.RUNNING
    apply(cache, event("create", 1))
    assert state(cache) is JobState.RUNNING
    apply(cache, event("start", 2), event("create", 3))
    assert state(cache) is JobState.RUNNING


async def test_inspect_never_moves_a_job_back_from_the_end_its_die_established() -> None:
    """Podman's inspect may read an exited job as "stopped" (or a stale "running"): the die
    of a job with no restart policy decided; the wait never hangs."""
    cache = StateCache()
    apply(cache, event("create", 1, **{MANAGED_LABEL: "1"}), event("start", 2))
    w = waiter(cache, DONE_OR_FAILED)
    apply(cache, event("die", 3, exitCode="0"))
    seq = cache.seq(JOB)
    assert cache.settle(running(), seq) is not None
    assert state(cache) is JobState.DONE
    assert w.future.result() is JobState.DONE
    result = cache.settle(exited(0), seq)
    assert result is not None
    assert state(cache) is JobState.DONE


def test_a_late_create_never_moves_a_known_job() -> None:
    """A create event that comes after a hold (Podman's events come up to 0.4 s late) does
    not make the held job QUEUED again (the launcher would start it)."""
    cache = StateCache()
    cache.add(JOB, JobState.QUEUED, labels={MANAGED_LABEL: "1"})
    cache.set_state(JOB, JobState.QUEUED_HELD, "rename")
    cache.apply(event("create", 5, name="job"))
    assert cache.require(JOB).state is JobState.QUEUED_HELD
