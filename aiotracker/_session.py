"""DRMAA2's job session over a tracker: ``JobSession``, and the session manager's
``list_job_sessions`` and ``destroy_job_session``.

A session is a name on the engine: the ``drmaa2_jobsession`` label of its jobs (shared with
drmaa2os). ``JobSession`` adds DRMAA2's calls and job objects to a ``DockerTracker`` and
delegates everything to it: the waits are the tracker's event-driven ``wait_any`` and
``wait_all`` (one registration per call, however many jobs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._connect import connected
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import (
    InvalidArgumentError,
    InvalidStateError,
    JobNotFoundError,
)
from ._filters import CACHED, matches, wanted
from ._jobs import STARTED, TERMINATED, ArrayJob, Job
from ._labels import LEASE_LABEL, SESSION_LABEL
from ._lifecycle import Lifecycle
from ._mapping import state_from_details, state_from_summary
from ._model import JobInfo, JobState, JobTemplate
from ._tasks import each
from ._tracker import DockerTracker


class JobSession(Lifecycle):
    """A DRMAA2 job session: run jobs and bulk jobs, find them, wait for any or all of them.

    ``JobSession("name", docker_url=...)`` opens a tracker of its own (any other keyword is a
    ``DockerTracker`` option) and closes it with the session; ``JobSession(tracker)`` works
    over an open tracker and leaves it open. Use ``async with`` (or ``open()`` and
    ``close()``); ``close()`` twice, or any of its calls after it, is ``InvalidSessionError``.
    The ``Job`` objects it handed out act through its tracker: they work while the tracker is
    open (``TrackerClosedError`` after). Closing never touches the jobs: they run on, and a
    later session of the name finds them.
    """

    def __init__(
        self, session: str | DockerTracker, *, docker_url: str | None = None, **options: Any
    ) -> None:
        if isinstance(session, DockerTracker):
            if docker_url is not None or options:
                raise InvalidArgumentError("a session over a tracker takes no engine options")
            self._tracker = session
        else:
            self._tracker = DockerTracker(session, docker_url=docker_url, **options)
        self._owns = not isinstance(session, DockerTracker)
        super().__init__()
        self.what = f"job session {self.session_name!r}"

    # -- life cycle ---------------------------------------------------------------------

    async def _opening(self) -> None:
        """Open the session (and its tracker, unless it is open already)."""
        if not self._tracker.is_open:
            self._owns = True  # opened here: closed here
            await self._tracker.open()

    async def _closing(self) -> None:
        """Disengage: the tracker closes if the session opened it; the jobs run on."""
        if self._owns:
            await self._tracker.aclose()

    def _open_tracker(self) -> DockerTracker:
        self._check()
        return self._tracker

    @property
    def session_name(self) -> str:
        return self._tracker.job_session

    @property
    def contact(self) -> str:
        """The engine's address (DRMAA2's contact string)."""
        return self._tracker.contact

    @property
    def tracker(self) -> DockerTracker:
        """The tracker under the session (for ``watch``, ``as_completed``, output streams)."""
        return self._tracker

    def __repr__(self) -> str:
        return f"<JobSession {self.session_name!r} {self._state}>"

    # -- jobs ---------------------------------------------------------------------------

    async def get_job_categories(self) -> list[str]:
        """The images jobs can run in (``job_category``)."""
        return await self._open_tracker().list_job_categories()

    async def run_job(self, template: JobTemplate, *, key: str | None = None) -> Job:
        """Submit a job (``DockerTracker.add_job``); returns it."""
        tracker = self._open_tracker()
        return Job(tracker, await tracker.add_job(template, key=key))

    async def run_bulk_jobs(
        self, template: JobTemplate, begin: int, end: int, step: int = 1, max_parallel: int = 0,
        *, key: str | None = None,
    ) -> ArrayJob:  # fmt: skip
        """Submit an array job (``DockerTracker.add_array_job``); returns it with its tasks."""
        tracker = self._open_tracker()
        array_id = await tracker.add_array_job(template, begin, end, step, max_parallel, key=key)
        return ArrayJob(tracker, array_id, await tracker.list_array_jobs(array_id))

    async def get_job(self, job_id: str) -> Job:
        """The job with this id or unique id prefix (``JobNotFoundError`` if it is not one
        of the session's)."""
        tracker = self._open_tracker()
        return Job(tracker, await tracker.resolve_id(job_id))

    async def get_job_array(self, array_id: str) -> ArrayJob:
        """The array job with this id (``JobNotFoundError``, an ``InvalidArgumentError``, if
        the session has no such array)."""
        tracker = self._open_tracker()
        return ArrayJob(tracker, array_id, await tracker.list_array_jobs(array_id))

    async def get_jobs(self, job_filter: JobInfo | None = None) -> list[Job]:
        """The session's jobs that match ``job_filter`` (None, or a ``JobInfo`` with no field
        set: all of them). Only the fields set count (``aiotracker._filters``); a filter on
        ``job_id`` and ``state`` alone is answered from the cache, others read each job's
        info (16 at a time). A job removed meanwhile is left out."""
        tracker = self._open_tracker()
        fields = wanted(job_filter)
        ids = await tracker.list_jobs()
        if "job_id" in fields:
            ids = [j for j in ids if j == fields["job_id"]]
        infos: dict[str, JobInfo]
        if fields.keys() <= CACHED:  # answered from the cache, as monitoring's from a listing
            undetermined = JobState.UNDETERMINED
            infos = {
                j: JobInfo(job_id=j, state=tracker.cached_state(j) or undetermined) for j in ids
            }
        else:
            infos = await each(tracker.job_info, ids)
        return [Job(tracker, j) for j in ids if j in infos and matches(infos[j], fields)]

    # -- waits --------------------------------------------------------------------------

    async def _ids(self, jobs: Iterable[Job | str]) -> tuple[list[str], dict[str, Job]]:
        """The full ids of ``jobs`` (Job objects of this session, or ids or id prefixes),
        each once, with the object to return for it."""
        if isinstance(jobs, str | Job | ArrayJob):
            raise InvalidArgumentError(
                "jobs must be a collection of Job objects (an ArrayJob's are in .jobs)"
            )
        tracker = self._open_tracker()
        objects: dict[str, Job] = {}
        for job in jobs:
            if isinstance(job, str):
                job = Job(tracker, await tracker.resolve_id(job))
            elif not isinstance(job, Job):
                raise InvalidArgumentError(f"not a Job: {job!r}")
            elif job.session_name != self.session_name:
                raise InvalidArgumentError(
                    f"job {job.job_id} is of session {job.session_name!r}, not "
                    f"{self.session_name!r}"
                )
            objects.setdefault(job.job_id, job)
        if not objects:
            raise InvalidArgumentError("no jobs to wait for")
        return list(objects), objects

    async def _wait_any(
        self, jobs: Iterable[Job | str], states: frozenset[JobState], timeout: float | None
    ) -> Job:
        ids, objects = await self._ids(jobs)
        job_id, _ = await self._tracker.wait_any(ids, *states, timeout=timeout)
        return objects[job_id]

    async def _wait_all(
        self, jobs: Iterable[Job | str], states: frozenset[JobState], timeout: float | None
    ) -> list[Job]:
        ids, objects = await self._ids(jobs)
        await self._tracker.wait_all(ids, *states, timeout=timeout)
        return [objects[job_id] for job_id in ids]

    async def wait_any_started(
        self, jobs: Iterable[Job | str], timeout: float | None = None
    ) -> Job:
        """The first of ``jobs`` to have started (RUNNING, SUSPENDED, DONE or FAILED: one
        that already ended returns at once). ``WaitTimeoutError`` after ``timeout`` s."""
        return await self._wait_any(jobs, STARTED, timeout)

    async def wait_any_terminated(
        self, jobs: Iterable[Job | str], timeout: float | None = None
    ) -> Job:
        """The first of ``jobs`` to end (DONE or FAILED)."""
        return await self._wait_any(jobs, TERMINATED, timeout)

    async def wait_all_started(
        self, jobs: Iterable[Job | str], timeout: float | None = None
    ) -> list[Job]:
        """Wait until every job has started (or ended); returns them in the order given."""
        return await self._wait_all(jobs, STARTED, timeout)

    async def wait_all_terminated(
        self, jobs: Iterable[Job | str], timeout: float | None = None
    ) -> list[Job]:
        """Wait until every job has ended; returns them in the order given."""
        return await self._wait_all(jobs, TERMINATED, timeout)


# -- the session manager -------------------------------------------------------------------


async def list_job_sessions(
    docker_url: str | None = None, *, engine: Engine | None = None
) -> list[str]:
    """The names of the job sessions on the engine: those with at least one job (sorted).

    One listing of the containers labelled with a session (jobs of aiotracker and drmaa2os).
    """
    async with connected(docker_url, engine) as eng:
        with engine_errors("list"):
            summaries = await eng.list_containers(SESSION_LABEL)
    return sorted(
        {s.labels[SESSION_LABEL] for s in summaries if LEASE_LABEL not in s.labels} - {""}
    )


async def destroy_job_session(
    name: str, docker_url: str | None = None, *, engine: Engine | None = None
) -> list[str]:
    """Remove every job of the session ``name`` (their containers); returns their ids.

    Only a session whose jobs have all ended (as the engine reads them) can be destroyed:
    ``InvalidStateError``, with nothing removed, while any is queued, held, running or
    suspended. ``JobNotFoundError`` (an ``InvalidArgumentError``) if the session has no jobs.
    Nothing is started or adopted on the way (no tracker is opened). A removal that fails
    does not stop the others; the first failure is raised once they are done.
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("a job session name is a non-empty string")
    async with connected(docker_url, engine) as eng:
        with engine_errors("list"):
            summaries = await eng.list_containers(f"{SESSION_LABEL}={name}")
        jobs = [s for s in summaries if LEASE_LABEL not in s.labels]
        if not jobs:
            raise JobNotFoundError(f"no job session {name!r} (it has no jobs)", job_id=None)
        listed = {s.container_id: state_from_summary(s.state, s.status, s.name) for s in jobs}

        async def read(job_id: str) -> JobState:
            with engine_errors("inspect", job_id):
                return state_from_details(await eng.inspect(job_id))

        unsure = [job_id for job_id, state in listed.items() if state is None]
        states = {**listed, **await each(read, unsure)}
        live = [j for j, state in states.items() if state is not None and not state.is_terminal]
        if live:
            raise InvalidStateError(
                f"job session {name!r} has {len(live)} job(s) that have not ended "
                f"({', '.join(j[:12] for j in live[:5])}{', ...' if len(live) > 5 else ''})"
            )

        async def remove(job_id: str) -> str:
            with engine_errors("remove", job_id):
                await eng.remove(job_id)
            return job_id

        gone = [j for j, state in states.items() if state is not None]  # None: gone meanwhile
        await each(remove, gone)
        return gone
