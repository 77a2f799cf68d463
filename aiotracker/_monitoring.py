"""DRMAA2's monitoring session: the engine's machine, queues and every container on it, read
only. No tracker: one engine connection, one call per question, no event stream."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from ._checks import clock_offset, utcnow
from ._connect import docker_engine
from ._engine.base import ContainerSummary, Engine
from ._errors import engine_errors
from ._exceptions import InvalidArgumentError, UnsupportedOperationError
from ._filters import CACHED, engine_filters, matches, wanted
from ._labels import LEASE_LABEL, SESSION_LABEL, job_name_of
from ._lifecycle import Lifecycle
from ._mapping import job_info_from_details, machine_from_info, state_from_summary
from ._model import JobInfo, JobState, Machine
from ._tasks import each, shielded


class JobView:
    """A read-only view of a container on the engine (``get_all_jobs``): its id, session (""
    for a container of no session), name and the state it had when listed. Its info and
    state can be read again; controlling it is ``UnsupportedOperationError`` (a job is
    controlled through its own job session)."""

    __slots__ = ("_listed", "_monitor", "job_id", "job_name", "session_name", "state")

    def __init__(self, monitor: MonitoringSession, summary: ContainerSummary) -> None:
        self._monitor = monitor
        self.job_id = summary.container_id
        self.session_name = summary.labels.get(SESSION_LABEL, "")
        self.job_name = job_name_of(summary.name, summary.labels.get(SESSION_LABEL))
        listed = state_from_summary(summary.state, summary.status, summary.name)
        self.state = listed or JobState.UNDETERMINED
        self._listed = listed is not None  # else only its info can tell

    async def get_info(self) -> JobInfo:
        return await self._monitor.job_info(self.job_id)

    async def get_state(self) -> JobState:
        return (await self.get_info()).state

    def _refuse(self, what: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(
            f"{what}: a monitoring session's jobs are read only (use their job session)",
            job_id=self.job_id,
        )

    async def suspend(self) -> None:
        raise self._refuse("suspend")

    async def resume(self) -> None:
        raise self._refuse("resume")

    async def hold(self) -> None:
        raise self._refuse("hold")

    async def release(self) -> None:
        raise self._refuse("release")

    async def terminate(self) -> None:
        raise self._refuse("terminate")

    async def reap(self) -> None:
        raise self._refuse("reap")

    def __repr__(self) -> str:
        return f"<JobView {self.job_id[:12]}… {self.state.name} session={self.session_name!r}>"


class MonitoringSession(Lifecycle):
    """A DRMAA2 monitoring session over one engine: ``get_all_machines``, ``get_all_queues``
    and ``get_all_jobs``. Use ``async with`` (or ``open()`` and ``close()``; ``close()``
    twice is ``InvalidSessionError``)."""

    what = "the monitoring session"

    def __init__(
        self, docker_url: str | None = None, *, engine_timeout: float = 30.0,
        engine: Engine | None = None,
    ) -> None:  # fmt: skip
        if not engine_timeout > 0:
            raise InvalidArgumentError("engine_timeout must be positive")
        self._timeout = engine_timeout
        self._engine = engine or docker_engine(
            docker_url, connection_limit=8, timeout=engine_timeout
        )
        super().__init__()
        self._host = ""
        self._clock_offset = timedelta(0)

    async def _opening(self) -> None:
        try:
            with engine_errors("connect"):
                info = await self._engine.open()
        except BaseException:
            with shielded(self._timeout):
                await self._engine.aclose()
            raise
        self._host = info.host_name
        self._clock_offset = clock_offset(info.system_time_ns)

    async def _closing(self) -> None:
        with shielded(self._timeout):
            await self._engine.aclose()

    def _open_engine(self) -> Engine:
        self._check()
        return self._engine

    @property
    def contact(self) -> str:
        return self._engine.url

    async def get_all_machines(self, names: Sequence[str] | None = None) -> list[Machine]:
        """The engine's machine; with ``names``, only if its name is among them (an empty
        list matches nothing; drmaa2os returns the machine only when it is *not* named)."""
        engine = self._open_engine()
        if isinstance(names, str):
            raise InvalidArgumentError("names must be a collection of machine names")
        with engine_errors("info"):
            info = await engine.info()
        machine = machine_from_info(info)
        return [machine] if names is None or machine.name in names else []

    async def get_all_queues(self, names: Sequence[str] | None = None) -> list[str]:
        """Docker has no queues: always empty."""
        self._check()
        return []

    async def get_all_jobs(self, job_filter: JobInfo | None = None) -> list[JobView]:
        """Every container on the engine (of any session, or none; not the leases of
        aiotracker's trackers) as a read-only job, newest first; ``job_filter`` as
        ``JobSession.get_jobs``'s. The engine filters by id, state and name where it can;
        fields beyond ``job_id`` and ``state`` read each remaining container's info."""
        engine = self._open_engine()
        fields = wanted(job_filter)
        filters = engine_filters(fields)
        if filters is None:
            return []
        with engine_errors("list"):
            summaries = await engine.list_containers(None, filters=filters)
        views = {
            s.container_id: JobView(self, s) for s in summaries if LEASE_LABEL not in s.labels
        }  # a lease (a tracker's liveness signal) is no job
        # A list entry tells most states; the rest, and any filter on more than the id and
        # the state, take the container's info (16 at a time).
        unsure = [v.job_id for v in views.values() if not v._listed]
        if not fields.keys() <= CACHED:
            unsure = list(views)
        infos = await each(self.job_info, unsure)
        kept = []
        for view in views.values():
            if view.job_id in unsure:
                if view.job_id not in infos:
                    continue  # removed meanwhile
                view.state = infos[view.job_id].state
                if not matches(infos[view.job_id], fields):
                    continue
            elif not matches(JobInfo(job_id=view.job_id, state=view.state), fields):
                continue
            kept.append(view)
        return kept

    async def job_info(self, job_id: str) -> JobInfo:
        """One container's info (the engine's view, without any tracker's)."""
        engine = self._open_engine()
        with engine_errors("inspect", job_id):
            details = await engine.inspect(job_id)
        now = utcnow() + self._clock_offset  # the engine's clock, as its times are
        return job_info_from_details(details, engine_host=self._host, now=now)
