"""Existing jobs of a submission: what makes keys idempotent and job names unique per session.

A keyed or named submission first looks for its job (one listing, whatever marks its name
carries now); a create that finds its name taken (409) resolves the clash: the same key's job,
or ``JobNameInUseError`` naming the session's job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._cache import Change, StateCache
from ._engine.base import ContainerDetails, ContainerSummary, Engine
from ._errors import engine_errors
from ._exceptions import EngineError, JobNameInUseError, JobNotFoundError
from ._labels import KEY_LABEL, SESSION_LABEL, base_name, job_name_of
from ._waiters import Wakeups

if TYPE_CHECKING:
    from ._submit import Prepared


class ExistingJobs:
    """Finds a submission's job among the session's, by key or by name."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
        *,
        session: str,
        timeout: float,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._publish = publish
        self._session = session
        self._timeout = timeout

    async def find(self, jobs: list[Prepared]) -> ContainerSummary | None:
        """The session's job with this submission's key (or one of its job names), whatever
        marks its name carries now (held, terminated): one listing, only for keyed or named
        submissions. A name in use without the same key is ``JobNameInUseError``."""
        labels = jobs[0].config["Labels"]
        key = labels.get(KEY_LABEL)
        names = {base_name(j.name) for j in jobs if job_name_of(j.name, self._session)}
        if key is None and not names:
            return None
        label = f"{KEY_LABEL}={key}" if key is not None else f"{SESSION_LABEL}={self._session}"
        with engine_errors("list"):
            summaries = await self._engine.list_containers(label)
        mine = [s for s in summaries if s.labels.get(SESSION_LABEL) == self._session]
        if key is not None:
            same = [s for s in mine if s.labels.get(KEY_LABEL) == key]
            return min(same, key=lambda s: s.name) if same else None
        for s in mine:
            if base_name(s.name) in names:
                raise _in_use(job_name_of(s.name, self._session), s.container_id)
        return None

    async def inspect(self, job_id: str) -> ContainerDetails:
        with engine_errors("inspect", job_id):
            return await self._engine.inspect(job_id)

    def array_of(self, job_id: str) -> str:
        array_id = self._cache.require(job_id).array_id
        if array_id is None:
            raise JobNameInUseError(
                f"the key is in use by job {job_id}, not by an array", job_name="", job_id=job_id
            )
        return array_id

    async def clash(self, config: dict[str, Any], name: str) -> str:
        """The name is taken: the same key's job (idempotent), or JobNameInUseError."""
        labels = config["Labels"]
        job_name = job_name_of(name, self._session)
        details = None
        with anyio.move_on_after(self._timeout):
            while details is None:
                try:
                    with engine_errors("inspect"):
                        details = await self._engine.inspect(name)
                except JobNotFoundError:  # another create of it is still under way
                    await anyio.sleep(0.05)
        if details is None:
            raise EngineError(f"the name {name!r} is taken, but by no container: retry")
        if details.labels.get(SESSION_LABEL) != self._session:
            raise JobNameInUseError(
                f"container name {name!r} is in use outside this session", job_name=job_name
            )
        key = labels.get(KEY_LABEL)
        if key is not None and details.labels.get(KEY_LABEL) == key:
            self._publish(self._cache.settle(details))
            return details.container_id
        raise _in_use(job_name, details.container_id)


def _in_use(job_name: str, job_id: str) -> JobNameInUseError:
    return JobNameInUseError(
        f"job name {job_name!r} is in use by job {job_id} of this session",
        job_name=job_name, job_id=job_id,
    )  # fmt: skip
