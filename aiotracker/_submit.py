"""Submission: a template checked and mapped, its container created and started, or rolled
back so that nothing is left behind.

``prepare`` does every check that needs no engine (the template, its paths, made absolute
once); ``create`` is shielded (a create cut short may still be carried out by the engine) but
bounded; ``start`` attaches the output first (nothing is missed), opens the input, then
starts. A start refused for the job's own reason ends the job FAILED with a fault; a start
that fails for the engine's reason is raised, and ``submit`` removes the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import anyio
import anyio.lowlevel

from ._cache import Change, StateCache
from ._config import ArrayTask, PullPolicy, create_config, pull_policy
from ._copier import OutputCopier
from ._engine.base import ContainerDetails, Engine, EngineInfo
from ._errors import engine_errors
from ._exceptions import (
    DrmCommunicationError,
    EngineError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    JobNameInUseError,
    JobNotFoundError,
    TrackerError,
)
from ._existing import ExistingJobs
from ._labels import (
    HELD_SUFFIX,
    KEY_LABEL,
    OWNER_LABEL,
    START_AT_LABEL,
    SUBMITTED_LABEL,
    TEMPLATE_LABEL,
    base_name,
    container_name,
    key_hash,
    validate_job_name,
)
from ._mapping import task_name
from ._model import JobState, JobTemplate
from ._output import OutputPlan, absolute_paths, check_input_path, check_stage_in, plan_output
from ._pull import Puller
from ._stageout import StagePlan, Stager, plan_stage_out, refuse_with_rm
from ._tasks import Tasks, shielded
from ._template_label import decode_template_label
from ._waiters import Wakeups

# DRMAA2's parametric index placeholder: replaced by the task index in an array task's paths.
INDEX_PLACEHOLDER = "$DRMAA2_INDEX$"

# Errors of an engine call that may work if tried again later (not the job's fault).
RETRYABLE = (DrmCommunicationError, EngineError, InternalError)


@dataclass(frozen=True, slots=True)
class Launch:
    """What starting a job needs besides its container: where output goes, what stdin reads,
    what is copied out of it at its exit."""

    plan: OutputPlan
    input_path: str
    stage: StagePlan = field(default_factory=StagePlan)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A job checked and mapped, ready to be created."""

    config: dict[str, Any]
    name: str
    launch: Launch
    hold: bool
    start_at_ns: int = 0  # DRMAA2's start_time (Unix ns): the tracker's timer starts it
    pull: PullPolicy = "never"  # the pull extension: whether the image is pulled first

    def waits(self) -> bool:
        """Held, or with a start time: made now, not started here (a timed job is started by
        the tracker's timer alone, at once if its time has passed: never two starters)."""
        return self.hold or self.start_at_ns != 0


class Submitter:
    """Makes jobs: prepare, create, start, roll back."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        tasks: Tasks,
        copier: OutputCopier,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
        *,
        stager: Stager | None = None,
        puller: Puller | None = None,
        session: str,
        labels: Mapping[str, str],
        engine_timeout: float,
        owner: Callable[[str], Awaitable[str | None]] | None = None,
        owner_live: Callable[[str], Awaitable[bool]] | None = None,
        engine_info: Callable[[], EngineInfo | None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._engine_info = engine_info  # its machine: CPUs, architecture, OS
        self._cache = cache
        self._tasks = tasks
        self._copier = copier
        self._stager = stager
        self._puller = puller
        self._publish = publish
        self._session = session
        self._labels = dict(labels)
        self._timeout = engine_timeout
        self._host = socket.gethostname()
        self._user = _user()
        self._owner = owner  # the lease to put on new jobs (made with their image)
        self._owner_live = owner_live
        self._inflight: dict[str, asyncio.Future[str]] = {}  # container name -> its submission
        self.unowned: set[str] = set()  # jobs made here with no lease (a transient failure)
        # Queue a created job for the launcher instead of starting it (``max_running``): True
        # if it did (set by the runtime, which knows who may start it).
        self.queue: Callable[[str, Launch | None], bool] = lambda job_id, launch: False
        self._names = ExistingJobs(engine, cache, publish, session=session, timeout=engine_timeout)

    def prepare(
        self, template: JobTemplate, array_task: ArrayTask | None = None, key: str | None = None,
        *, submitted_ns: int | None = None,
    ) -> Prepared:  # fmt: skip
        """Everything checked and computed before a container is made (no engine call).

        The container's name is unique to the job within the engine: from the job name and
        the session (names are per session), else from the idempotency ``key`` (a second
        create with it finds the first job), else random.
        """
        cwd = os.getcwd()
        if array_task is not None:
            # Each task: its own TASK_ID and name, and DRMAA2's index placeholder in its paths.
            index = array_task.index
            template = template.replace(
                job_environment={**template.job_environment, "TASK_ID": str(index)},
                job_name=task_name(template.job_name, index),
                **{
                    field: getattr(template, field).replace(INDEX_PLACEHOLDER, str(index))
                    for field in ("output_path", "error_path", "input_path")
                },
                stage_out_files={
                    source: target.replace(INDEX_PLACEHOLDER, str(index))
                    if isinstance(target, str)
                    else target
                    for source, target in template.stage_out_files.items()
                },
            )
        if template.job_name:
            validate_job_name(template.job_name)
        refuse_with_rm(template)
        launch = _launch(template, cwd)
        check_stage_in(template, cwd)
        template = absolute_paths(template, cwd)
        labels = dict(self._labels)
        labels[SUBMITTED_LABEL] = str(submitted_ns if submitted_ns is not None else time.time_ns())
        if key is not None:
            labels[KEY_LABEL] = key
        config = create_config(
            self._session, template, cwd=cwd, labels=labels,
            submission_host=self._host, submitter=self._user, array_task=array_task,
            engine=self._engine_info(),
        )  # fmt: skip
        if template.job_name:
            name = container_name(template.job_name, self._session)
        elif key is not None:
            suffix = f"-{array_task.index}" if array_task is not None else ""
            name = f"aiotracker-key-{key_hash(self._session, key)}{suffix}"
        else:
            name = f"aiotracker-{uuid.uuid4().hex[:16]}"
        if template.submit_as_hold:
            name += HELD_SUFFIX
        start_at = int(config["Labels"].get(START_AT_LABEL, 0))
        policy = pull_policy(template.extensions)
        return Prepared(config, name, launch, template.submit_as_hold, start_at, policy)

    async def submit(self, job: Prepared) -> str:
        """Create and (unless held) start one job. On a failure or a cancellation before the
        start, nothing is left; a job that has started is never removed. With a key, a job
        that exists already is returned (and started, if a cut-short call never did)."""
        inflight = self._inflight.get(job.name)
        if inflight is not None:  # the same key's submission is under way here: its outcome
            return await asyncio.shield(inflight)
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[job.name] = done
        try:
            job_id = await self._submit(job)
        except BaseException as exc:
            done.set_exception(exc)
            raise
        else:
            done.set_result(job_id)
            return job_id
        finally:
            self._inflight.pop(job.name, None)

    async def _submit(self, job: Prepared) -> str:
        found = await self._names.find([job])
        if found is not None:
            job_id = found.container_id
            details = await self._names.inspect(job_id)
            self._publish(self._cache.settle(details))
            await self._finish_existing(job_id, job, details)
            return job_id
        await self._pull(job)
        job_id, existed = await self.create(job.config, job.name)
        if existed:
            await self._finish_existing(job_id, job)
            return job_id
        try:
            reason = None
            if not job.waits() and not self.queue(job_id, job.launch):
                reason = await self.start(job_id, job.launch)
        except BaseException:
            if not self._started(job_id):
                await self.discard(job_id)
            raise
        if reason is not None:
            await self.discard(job_id)
            raise reason
        return job_id

    def _started(self, job_id: str) -> bool:
        job = self._cache.get(job_id)
        return job is not None and job.ever_started

    async def _finish_existing(
        self, job_id: str, job: Prepared, details: ContainerDetails | None = None
    ) -> None:
        """A retry found its job: start it if the first call was cut short before the start."""
        state = self._cache.require(job_id).state
        if job.waits() or state is not JobState.QUEUED or self._started(job_id):
            return
        if details is None:
            details = await self._names.inspect(job_id)
        owner = details.labels.get(OWNER_LABEL)
        if owner is not None and self._owner_live is not None and await self._owner_live(owner):
            return  # its submitter (another tracker, alive) starts it
        if details.status == "created" and not details.error and not self.queue(job_id, job.launch):
            reason = await self.start(job_id, job.launch)
            if reason is not None:
                raise reason

    async def create_array(self, prepared: list[Prepared]) -> list[str] | str:
        """Create every task in index order, or none: on a failure the made ones go.

        Returns the tasks' ids, or, for a retry with a key whose array exists, its array id.
        """
        made: list[str] = []
        found = await self._names.find(prepared)
        if found is not None:  # a retry with the same key: the array exists
            self._publish(self._cache.settle(await self._names.inspect(found.container_id)))
            return self._names.array_of(found.container_id)
        await self._pull(prepared[0])
        try:
            for job in prepared:
                job_id, existed = await self.create(job.config, job.name)
                if existed:  # a retry with the same key: the array exists
                    return self._names.array_of(job_id)
                made.append(job_id)
        except BaseException:
            await self.discard(*reversed(made))
            raise
        return made

    async def _pull(self, job: Prepared) -> None:
        """The job's image, pulled first if its ``pull`` extension asks (shared with every
        submission of the same image under way)."""
        if self._puller is not None:
            await self._puller.ensure(job.config["Image"], job.pull)

    async def create(self, config: dict[str, Any], name: str) -> tuple[str, bool]:
        """Create a job's container; the caller removes it if anything after this fails.

        Returns (job id, existed): a name already taken by a job of this session with the same
        idempotency key is that job; any other clash is ``JobNameInUseError``.
        """
        unowned = False
        if self._owner is not None and OWNER_LABEL not in config["Labels"]:
            owner = await self._owner(config["Image"])
            if owner is not None:
                config["Labels"][OWNER_LABEL] = owner
            unowned = owner is None
        await anyio.lowlevel.checkpoint()  # a pending cancellation stops us before, not during
        # Shielded: a create cut short may still be carried out by the engine, after any attempt
        # to remove it; waiting for the answer (a few ms) gives the id to remove.
        with shielded(self._timeout) as scope:
            try:
                with engine_errors("create", image=config["Image"]):
                    job_id = await self._engine.create(config, name)
            except JobNameInUseError:
                return await self._names.clash(config, name), True
        if scope.cancelled_caught:  # an engine that hangs on create
            with shielded(self._timeout), contextlib.suppress(TrackerError):
                await self.remove(name)
            raise DrmCommunicationError(f"the engine did not create {name} in time")
        state = JobState.QUEUED_HELD if name.endswith(HELD_SUFFIX) else JobState.QUEUED
        if unowned:  # no lease could be made this time: this tracker acts for it alone
            self.unowned.add(job_id)
        self._publish(self._cache.add(job_id, state, labels=config["Labels"]))
        return job_id, False

    async def remove(self, job_id: str) -> None:
        with engine_errors("remove", job_id):
            await self._engine.remove(job_id, force=True)

    async def discard(self, *job_ids: str) -> None:
        """Remove half-made jobs, all within one ``engine_timeout`` (a hung engine does not
        hang the caller), and forget them."""

        async def remove(job_id: str) -> None:
            with contextlib.suppress(TrackerError):
                await self.remove(job_id)

        with shielded(self._timeout):
            async with anyio.create_task_group() as tg:
                for job_id in job_ids:
                    tg.start_soon(remove, job_id)
        for job_id in job_ids:
            self._publish(self._cache.forget(job_id))

    async def start(
        self, job_id: str, launch: Launch, may_start: Callable[[], bool] | None = None
    ) -> InvalidArgumentError | None:
        """Attach the output, open the input, start. Returns the reason if the job itself
        cannot start (it is then FAILED, with a fault); raises if the engine failed."""
        started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        ok = False
        try:
            source: IO[bytes] | None = None
            if launch.input_path:
                try:
                    source = open(launch.input_path, "rb")  # noqa: SIM115, ASYNC230
                except OSError as exc:
                    error = InvalidArgumentError(
                        f"input_path {launch.input_path!r}: {exc.strerror}", job_id=job_id
                    )
                    self._publish(self._cache.start_failed(job_id, str(error)))
                    return error
            try:
                if launch.plan.wanted:
                    await self._tasks.start(
                        self._copier.copy, job_id, launch.plan, "attach", started
                    )
                if source is not None:
                    self._tasks.spawn(self._copier.feed_input, job_id, source)
                    source = None
            finally:
                if source is not None:
                    source.close()
            if self._stager is not None:
                self._stager.arm(job_id, launch.stage)
            if may_start is not None and not may_start():
                raise InvalidStateError(f"job {job_id} is no longer ours to start", job_id=job_id)
            job = self._cache.get(job_id)
            if job is not None and (job.final is not None or job.refused or job.ever_started):
                # Terminated (its end held back while its output was being attached), refused,
                # or started meanwhile: not started again.
                raise InvalidStateError(f"job {job_id} is no longer queued", job_id=job_id)
            try:
                # Shielded: cut short, the engine may start it anyway; the answer tells.
                with shielded(self._timeout) as scope, engine_errors("start", job_id):
                    await self._engine.start(job_id)
                if scope.cancelled_caught:
                    raise DrmCommunicationError("the engine did not answer the start in time")
            except RETRYABLE:
                # The answer was lost (or the engine failed): did it start all the same?
                if not await self._did_start(job_id):
                    raise
            ok = True
        except InvalidArgumentError as exc:
            self._publish(self._cache.start_failed(job_id, str(exc)))
            return exc
        finally:
            # Not started: the copier closes without leaving a file, nothing is staged.
            started.set_result(ok)
            if not ok and self._stager is not None:
                self._stager.disarm(job_id)
        self._publish(self._cache.mark_started(job_id, running=self._engine.starts_at_once))
        return None

    async def _did_start(self, job_id: str) -> bool:
        with shielded(self._timeout), contextlib.suppress(TrackerError):
            details = await self._names.inspect(job_id)
            return details.started_at is not None or details.status != "created"
        return False

    async def launch_of(self, job_id: str) -> Launch:
        """How to start a job made earlier (held, or found at opening): from its label."""
        return launch_from(await self._names.inspect(job_id))


def launch_from(details: ContainerDetails) -> Launch:
    """How to start a job, from the template label its container carries."""
    label = details.labels.get(TEMPLATE_LABEL)
    if label is None:
        job_id = details.container_id
        raise JobNotFoundError(f"job {job_id} has no job template label", job_id=job_id)
    return _launch(decode_template_label(label), os.getcwd())


def _launch(template: JobTemplate, cwd: str) -> Launch:
    """Where a template's output goes and what its stdin reads (checked)."""
    plan = plan_output(template, cwd)
    input_path = check_input_path(template.input_path, cwd) if template.input_path else ""
    return Launch(plan, input_path, plan_stage_out(template, cwd))


async def rename_mark(
    engine: Engine, job_id: str, suffix: str, *, require_created: bool = True
) -> None:
    """Put a mark (held, terminated, or none) in the name of a job that has not started.

    Docker has no held or cancelled state for a created container and labels cannot change,
    but names can: a mark in the name survives the tracker. ``InvalidStateError`` if the job
    has started meanwhile.
    """
    with engine_errors("inspect", job_id):
        details = await engine.inspect(job_id)
    if require_created and details.status != "created":
        raise InvalidStateError(f"job {job_id} has started", job_id=job_id)
    with engine_errors("rename", job_id):
        await engine.rename(job_id, base_name(details.name) + suffix)


def _user() -> str:
    """Who submits (DRMAA2's job owner): the login name, else the uid."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
