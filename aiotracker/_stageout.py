"""Stage-out: DRMAA2's ``stage_out_files`` {container path: host path}, copied out of the
container after it exits and before the job's terminal state is published.

The host path is what the source becomes: a file is written as that file, a directory as that
directory (merged into one that exists, file by file). Nothing is left half-written: the
engine's tar archive of the source is kept in a hidden file beside the target, unpacked into a
hidden directory there (``tarfile``'s ``data`` filter: no absolute paths, no ``..``, no device
nodes, no links out of the tree), and each file is renamed into place only when complete.

A hidden mark ``.<name>.<job12>.aiotracker-staging`` lies beside each target from the job's
start until its copy is over (done, or recorded as a fault): a tracker that opens after one
closed mid-job stages what is still marked. A source the job did not make is recorded in the
job's annotation (``JobInfo.faults``); its state is the job's own.

The file work is synchronous (``stage_file``, run in a worker thread); ``Stager`` does the
engine's part and the bookkeeping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO

import anyio
import anyio.to_thread

from ._cache import ACTIVE, TERMINAL, Change, StateCache
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import InvalidArgumentError, JobNotFoundError, TrackerError
from ._labels import MANAGED_LABEL, TEMPLATE_LABEL
from ._model import JobState, JobTemplate
from ._tasks import Tasks
from ._template_label import decode_template_label
from ._waiters import Wakeups

log = logging.getLogger("aiotracker")

MARK_SUFFIX = ".aiotracker-staging"


@dataclass(frozen=True, slots=True)
class StagePlan:
    """What to copy out of a job's container: (container path, absolute host path) pairs."""

    files: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.files)


def plan_stage_out(template: JobTemplate, cwd: str) -> StagePlan:
    """Check ``stage_out_files`` (before anything is created) and plan the copies.

    ``InvalidArgumentError`` for a container path that is not absolute (or is ``/``), a host
    path whose directory does not exist or cannot be written, and two sources with one target.
    """
    files: list[tuple[str, str]] = []
    seen: set[str] = set()
    # Typed as objects: the template may have been built from untyped data.
    items: Iterable[tuple[object, object]] = template.stage_out_files.items()
    for source, target in items:
        if not isinstance(source, str) or not isinstance(target, str):
            raise InvalidArgumentError(f"stage_out_files entries must be strings: {source!r}")
        if "\x00" in source or "\x00" in target:
            raise InvalidArgumentError("stage_out_files contains a NUL byte")
        if not source.startswith("/"):
            raise InvalidArgumentError(
                f"stage_out_files: container path {source!r} must be absolute"
            )
        source = posixpath.normpath(source)
        if source == "/":
            raise InvalidArgumentError("stage_out_files: the container's root cannot be staged")
        if not target:
            raise InvalidArgumentError(f"stage_out_files: no host path for {source!r}")
        absolute = os.path.normpath(os.path.join(cwd, target))
        parent = os.path.dirname(absolute) or "/"
        if not os.path.isdir(parent):
            raise InvalidArgumentError(
                f"stage_out_files: directory {parent!r} of {target!r} does not exist"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InvalidArgumentError(f"stage_out_files: directory {parent!r} is not writable")
        if absolute in seen:
            raise InvalidArgumentError(f"stage_out_files: two sources for {target!r}")
        seen.add(absolute)
        files.append((source, absolute))
    return StagePlan(tuple(files))


def _hidden(target: str, job_id: str, suffix: str) -> str:
    head, tail = os.path.split(target)
    return os.path.join(head, f".{tail}.{job_id[:12]}{suffix}")


def mark_path(target: str, job_id: str) -> str:
    """The mark that a job's stage-out into ``target`` is still to be done."""
    return _hidden(target, job_id, MARK_SUFFIX)


def marked(plan: StagePlan, job_id: str) -> StagePlan:
    """The part of ``plan`` still marked as not done (after a tracker closed mid-job)."""
    return StagePlan(tuple(f for f in plan.files if os.path.exists(mark_path(f[1], job_id))))


def write_marks(plan: StagePlan, job_id: str) -> list[str]:
    """Mark every target as to be done; returns the faults of those that could not be."""
    faults = []
    for _, target in plan.files:
        try:
            os.close(os.open(mark_path(target, job_id), os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError as exc:
            faults.append(f"stage-out to {target}: cannot mark it: {exc.strerror}")
    return faults


def unmark(target: str, job_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(mark_path(target, job_id))


def archive_path(target: str, job_id: str) -> str:
    """Where the engine's archive of a source is kept until it is unpacked."""
    return _hidden(target, job_id, ".aiotracker-stage.tar")


def stage_file(archive: str, source: str, target: str, job_id: str) -> None:
    """Unpack ``archive`` (the engine's tar of ``source``) so that ``target`` becomes the
    source; ``OSError`` or ``tarfile.TarError`` if it cannot (the target is then as it was,
    or, for a directory, holds the files renamed into it before the failure)."""
    work = _hidden(target, job_id, ".aiotracker-stage")
    shutil.rmtree(work, ignore_errors=True)
    os.mkdir(work, 0o700)
    try:
        with tarfile.open(archive, "r:") as tar:
            tar.extractall(work, filter=_within_root)
        entries = os.listdir(work)
        if len(entries) != 1:
            raise tarfile.TarError(f"the engine's archive of {source} holds {len(entries)} roots")
        top = os.path.join(work, entries[0])
        if os.path.islink(top):
            raise tarfile.TarError(f"{source} is a symbolic link: its target is not staged")
        if os.path.isdir(top):
            if os.path.lexists(target) and not os.path.isdir(target):
                raise IsADirectoryError(f"{source} is a directory and {target} is not")
            if not os.path.lexists(target):
                os.rename(top, target)
            else:
                _merge(top, target)
        else:
            if os.path.isdir(target) and not os.path.islink(target):
                raise IsADirectoryError(f"{target} is a directory and {source} is not")
            os.replace(top, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _within_root(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's ``data`` filter, and links that stay inside the archive's one root entry
    (the source): a link that points at or above it would lead a later merge out of the
    target (``data`` only keeps links inside the directory unpacked into)."""
    member = tarfile.data_filter(member, dest)
    if member.issym() or member.islnk():
        root = member.name.split("/", 1)[0]
        base = posixpath.dirname(member.name) if member.issym() else ""
        pointed = posixpath.normpath(posixpath.join(base, member.linkname))
        if not pointed.startswith(root + "/"):
            raise tarfile.TarError(f"{member.name} links out of the staged tree")
    return member


def _merge(tree: str, target: str) -> None:
    """Move ``tree``'s contents into the directory ``target``, each file replaced whole;
    a link found in the target where the tree has a directory is replaced, never followed."""
    if os.path.islink(target):
        raise IsADirectoryError(f"{target} is a symbolic link: not merged into")
    for root, dirs, files in os.walk(tree):
        into = os.path.join(target, os.path.relpath(root, tree))
        for name in dirs:
            path = os.path.join(into, name)
            if os.path.islink(os.path.join(root, name)):
                files.append(name)  # a link to a directory: moved as a link, not walked
                continue
            if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
                os.unlink(path)
            os.makedirs(path, exist_ok=True)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            path = os.path.join(into, name)
            if os.path.isdir(path) and not os.path.islink(path):
                raise IsADirectoryError(f"{path} is a directory")
            os.replace(os.path.join(root, name), path)


class Stager:
    """Copies jobs' stage-out files after their exit; the cache holds their terminal state
    back (``begin_stage``) until ``stage_done``."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        tasks: Tasks,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._tasks = tasks
        self._publish = publish
        self._armed: dict[str, StagePlan] = {}  # jobs whose exit starts a stage-out
        self._running: set[str] = set()

    def arm(self, job_id: str, plan: StagePlan, *, mark: bool = True) -> None:
        """Before the job starts (or, at a reopen, for one that ran meanwhile): its terminal
        state waits for its stage-out, which begins at its exit."""
        if not plan or job_id in self._running:
            return
        self._cache.begin_stage(job_id)
        if mark:
            for fault in write_marks(plan, job_id):
                self._cache.add_fault(job_id, fault)
        self._armed[job_id] = plan
        self.job_exited(job_id)  # it may have ended already (a reopen)

    def disarm(self, job_id: str) -> None:
        """The job never ran (its start was refused, or failed): nothing to stage."""
        plan = self._armed.pop(job_id, None)
        if plan is None:
            return
        for _, target in plan.files:
            unmark(target, job_id)
        self._publish(self._cache.stage_done(job_id))

    def cancel(self, job_id: str) -> None:
        """Another tracker took the job over: its stage-out is theirs (the marks stay)."""
        if self._armed.pop(job_id, None) is not None:
            self._publish(self._cache.stage_done(job_id))

    def job_exited(self, job_id: str) -> None:
        """The job exited; once its end is known for good (not a die a restart policy may
        follow), its files are copied."""
        plan = self._armed.get(job_id)
        job = self._cache.get(job_id)
        if plan is None:
            return
        if job is None:
            del self._armed[job_id]
            return
        if job.final is None and job.state not in TERMINAL:
            return  # not its end (yet): a restart policy, or an inspect still to come
        del self._armed[job_id]
        self._running.add(job_id)
        self._tasks.spawn(self._stage, job_id, plan)

    async def _stage(self, job_id: str, plan: StagePlan) -> None:
        try:
            for source, target in plan.files:
                fault = await self._copy(job_id, source, target)
                if fault is not None:
                    log.warning("job %s: %s", job_id[:12], fault)
                    self._cache.add_fault(job_id, fault)
                unmark(target, job_id)
        finally:
            self._running.discard(job_id)
            self._publish(self._cache.stage_done(job_id))

    async def _copy(self, job_id: str, source: str, target: str) -> str | None:
        """One source to its target; the fault to record, or None."""
        archive = archive_path(target, job_id)
        try:
            writer: _Writer | None = None
            try:
                # Written in chunks from the loop, as the copier writes output files.
                with open(archive, "wb") as out, engine_errors("archive", job_id):  # noqa: ASYNC230
                    writer = _Writer(out)
                    await self._engine.copy_out(job_id, source, writer)
            except TrackerError as exc:
                if writer is not None and writer.error is not None:  # our disk, not the engine
                    raise writer.error from exc
                if isinstance(exc, JobNotFoundError):
                    return f"stage-out of {source}: the container is gone"
                if isinstance(exc, InvalidArgumentError):
                    return f"stage-out of {source}: not found in the container"
                return f"stage-out of {source}: {exc}"
            await anyio.to_thread.run_sync(stage_file, archive, source, target, job_id)
        except (OSError, tarfile.TarError) as exc:
            return f"stage-out of {source} to {target}: {exc}"
        finally:
            with contextlib.suppress(OSError):
                os.unlink(archive)
        return None


class _Writer:
    """Writes the archive's chunks; remembers a local file error (a full disk), which the
    engine boundary would report as a broken connection."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.error: OSError | None = None

    def __call__(self, chunk: bytes) -> None:
        try:
            self._out.write(chunk)
        except OSError as exc:
            self.error = exc
            raise


def refuse_with_rm(template: JobTemplate) -> None:
    """The engine removes an ``rm`` job's container at its exit: nothing is left to copy."""
    if template.stage_out_files and str(template.extensions.get("rm", "")).lower() == "true":
        raise InvalidArgumentError("stage_out_files cannot be combined with the 'rm' extension")


def stage_recovery(labels: Mapping[str, str], state: JobState, job_id: str) -> StagePlan | None:
    """At opening or at a takeover: the part of a job's stage-out still to do (its targets
    still marked), for a job that has started; None if nothing is."""
    label = labels.get(TEMPLATE_LABEL)
    if MANAGED_LABEL not in labels or not label or state not in (*ACTIVE, *TERMINAL):
        return None
    try:
        template = decode_template_label(label)
    except InvalidArgumentError:
        return None
    files: list[tuple[str, str]] = []
    for source, target in template.stage_out_files.items():
        try:  # each on its own: one target that cannot be written stops none of the others
            files += plan_stage_out(
                template.replace(stage_out_files={source: target}), os.getcwd()
            ).files
        except InvalidArgumentError:
            continue
    plan = marked(StagePlan(tuple(files)), job_id)
    return plan or None
