"""The launcher's queue against the real engine (issue 14): with ``max_running``, queued
jobs and array tasks start by priority, then submission order, never more than the bound."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from aiotracker import DockerTracker, JobState, JobTemplate

Make = Callable[..., JobTemplate]


async def test_priorities_reorder_queued_jobs(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """max_running=1, a running blocker, then jobs of priority 0, 9, 4 and an array of
    priority 6 submitted in that order: they start 9, the array's tasks in index order, 4,
    then 0 (the engine's StartedAt says so), one at a time (no run overlaps another)."""
    async with DockerTracker(session_name, labels=labels, max_running=1) as tracker:
        blocker = await tracker.add_job(template("sleep", "1"))
        assert await tracker.wait(blocker, JobState.RUNNING, timeout=60) is JobState.RUNNING
        low = await tracker.add_job(template("sleep", "0.2", priority=0))
        high = await tracker.add_job(template("sleep", "0.2", priority=9))
        mid = await tracker.add_job(template("sleep", "0.2", priority=4))
        array_id = await tracker.add_array_job(template("sleep", "0.2", priority=6), 1, 2)
        assert {await tracker.job_state(j) for j in (low, high, mid)} == {JobState.QUEUED}
        tasks = await tracker.list_array_jobs(array_id)
        expected = [blocker, high, *tasks, mid, low]
        for job_id in expected:
            assert await tracker.wait(job_id, timeout=60) is JobState.DONE
        infos = [await tracker.job_info(j) for j in expected]
    spans = []
    for info in infos:
        assert info.dispatch_time is not None
        assert info.finish_time is not None
        spans.append((info.dispatch_time, info.finish_time))
    starts = [start for start, _ in spans]
    assert starts == sorted(starts), "started out of priority order"
    for (_, finish), (start, _) in itertools.pairwise(spans):
        assert start >= finish, "two jobs ran at once under max_running=1"
