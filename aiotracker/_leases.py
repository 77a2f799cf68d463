"""Leases: which tracker of a session launches an array and writes a job's output.

Built only of what the engine makes atomic, with no server: a lease is a container named after
its owner id (``lease_name``), running ``cat`` on a stdin its holder keeps attached. Create is
atomic (a second create of the name gets 409), and when the holder goes (it closed, or its
process died, even by SIGKILL) the engine closes the stdin, ``cat`` exits, and every tracker
sees the lease's ``die``. Jobs carry the owner id of the tracker that made them
(``OWNER_LABEL``); the holder of that owner's lease launches their arrays and writes their
output. When a lease dies while its jobs are unfinished, the open trackers race to create it
again; the one that wins holds it from then on and takes the jobs over (launching, and output
completed from the log). A tracker opened later does the same for leases it finds dead.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable

import anyio
import anyio.abc

from ._cache import TERMINAL, StateCache
from ._engine.base import ContainerEvent, Engine
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
from ._labels import LEASE_LABEL, LEASE_OWNER_LABEL, SESSION_LABEL, lease_name, session_tag
from ._tasks import BACKOFF_MIN, Tasks, next_backoff, shielded

log = logging.getLogger("aiotracker")

_LIVE = ("running", "paused", "restarting")
UNLEASED = "unleased-"
# Pauses between removals of a dead lease that another tracker is removing too (~1.9 s in all).
_CLEAR_DELAYS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Leases:
    """The leases this tracker holds (its own and adopted ones) and the takeover of dead ones."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        session: str,
        tasks: Tasks,
        *,
        labels: dict[str, str],
        timeout: float,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._session = session
        self._tasks = tasks
        self._labels = labels
        self._timeout = timeout
        self.own = uuid.uuid4().hex[:12]
        self.label = f"{LEASE_LABEL}={session_tag(session)}"
        self.held: dict[str, str] = {}  # owner -> lease container id
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._adopting: set[str] = set()
        self._lock = anyio.Lock()
        self._no_lease = False
        self._own_made = False
        self.closing = False
        self.on_adopted: Callable[[str], None] = lambda owner: None
        self.on_lost: Callable[[str], None] = lambda owner: None
        self.takeovers = 0
        self._ended: dict[str, str] = {}  # owner -> its ended lease, as seen at opening

    def holds(self, owner: str | None) -> bool:
        """True if this tracker is responsible for jobs of ``owner``: a lease it holds, its own
        jobs made with no lease (``unleased-<id>``), or jobs made before leases (None)."""
        return owner is None or owner in self.held or owner == self.unleased

    @property
    def unleased(self) -> str:
        """The owner put on this tracker's jobs when it can make no lease: no takeover."""
        return f"{UNLEASED}{self.own}"

    # -- our own lease ------------------------------------------------------------------

    async def ensure_own(self, image: str) -> str | None:
        """Hold our own lease (made at the first submission, with that job's image); returns
        the owner id to put on jobs, or None if no lease can be made (the image has no
        ``cat``): such jobs are this tracker's alone, with no takeover."""
        if self.own in self.held:
            return self.own
        if self._no_lease:
            return self.unleased
        async with self._lock:
            if (
                self.own not in self.held
                and not self._no_lease
                and not await self._acquire(self.own, image)
            ):
                log.warning("no lease could be made with image %r: no takeover", image)
        if self.own in self.held:
            return self.own
        return self.unleased if self._no_lease else None

    async def held_elsewhere(self, owner: str) -> bool:
        """True if another tracker, alive, holds ``owner``'s lease."""
        if owner in self.held:
            return False
        try:
            with engine_errors("inspect"):
                details = await self._engine.inspect(lease_name(owner, self._session))
        except JobNotFoundError:
            return False
        return details.status in _LIVE

    # -- acquiring and holding ----------------------------------------------------------

    async def _acquire(self, owner: str, image: str) -> bool:
        """Create ``owner``'s lease (clearing a dead one first); False if another holds it."""
        name = lease_name(owner, self._session)
        old = None
        try:
            if owner != self.own or self._own_made:  # a new id of ours has no lease yet
                with engine_errors("inspect"):
                    old = await self._engine.inspect(name)
        except JobNotFoundError:
            pass
        if old is not None and (old.status in _LIVE or not await self._clear(old.container_id)):
            return False
        config = {
            "Image": image, "Entrypoint": ["cat"], "Cmd": [], "OpenStdin": True,
            "StdinOnce": True, "AttachStdin": True, "Tty": False,
            # cat as PID 1 ignores SIGTERM: a stop (a daemon shutdown) would wait 10 s for it.
            "StopSignal": "SIGKILL", "StopTimeout": 1,
            # The session label too: the session's one event stream carries lease events.
            "Labels": {**self._labels, SESSION_LABEL: self._session,
                       LEASE_LABEL: session_tag(self._session), LEASE_OWNER_LABEL: owner},
            # No network, and none of Docker's network machinery (no sandbox, no endpoint, no
            # prestart hook): less work per lease, and out of Docker 20.10's libnetwork
            # deadlock between concurrent exits (moby/moby#42545).
            "NetworkDisabled": True,
            "HostConfig": {"NetworkMode": "none", "LogConfig": {"Type": "none"}},
        }  # fmt: skip
        try:
            # Shielded: a create cut short may still be made by the engine; the id removes it.
            with shielded(self._timeout) as scope, engine_errors("create", image=image):
                cid = await self._engine.create(config, name)
        except JobNameInUseError:
            return False  # another tracker won the race
        if owner == self.own:
            self._own_made = True
        if scope.cancelled_caught or self.closing:
            with (
                shielded(self._timeout),
                contextlib.suppress(TrackerError),
                engine_errors("remove", cid),
            ):
                await self._engine.remove(cid, force=True)
            return False
        try:
            await self._tasks.start(self._hold, owner, cid)
        except BaseException as exc:
            with (
                shielded(self._timeout),
                contextlib.suppress(TrackerError),
                engine_errors("remove", cid),
            ):
                await self._engine.remove(cid, force=True)
            if not isinstance(exc, TrackerError):
                raise
            log.warning("lease %s not taken: %s", owner, exc)
            if owner == self.own and isinstance(exc, InvalidArgumentError):
                self._no_lease = True  # the image cannot run ``cat``: it never will
            return False
        return True

    async def _clear(self, cid: str) -> bool:
        """Remove a dead lease; False if it is held again. Another tracker's clean-up may be
        removing it too (Docker answers 409 "removal of container ... is already in
        progress"): asked again, briefly, until it is gone."""
        for delay in (0.0, *_CLEAR_DELAYS):
            await anyio.sleep(delay)
            try:
                with engine_errors("remove", cid):
                    await self._engine.remove(cid)
                return True
            except JobNotFoundError:
                return True
            except InvalidStateError:
                try:
                    with engine_errors("inspect", cid):
                        details = await self._engine.inspect(cid)
                except JobNotFoundError:
                    return True
                if details.status in _LIVE:
                    return False  # started again meanwhile: held
        return False

    async def _hold(self, owner: str, cid: str, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Hold the lease's stdin (attached before the start) for as long as the tracker."""
        started = False
        with anyio.CancelScope() as scope:
            self._scopes[owner] = scope
            try:
                with engine_errors("attach", cid):
                    async with self._engine.hold_stdin(cid):
                        with engine_errors("start", cid):
                            await self._engine.start(cid)
                        self.held[owner] = cid
                        started = True
                        task_status.started()
                        await anyio.sleep_forever()
            except Exception:
                if not started:
                    raise
                log.exception("holding lease %s failed", owner)  # its die event follows
            finally:
                self._scopes.pop(owner, None)
                if self.closing:
                    self.held.pop(owner, None)
                else:
                    self._drop(owner)

    def _drop(self, owner: str) -> None:
        """We no longer hold ``owner``'s lease (once, whoever notices first)."""
        if self.held.pop(owner, None) is not None:
            log.warning("lease %s lost", owner)
            self.on_lost(owner)

    def _unfinished(self, owner: str) -> bool:
        return any(j.owner == owner and j.state not in TERMINAL for j in self._cache)

    # -- watching and taking over -------------------------------------------------------

    def on_event(self, event: ContainerEvent) -> None:
        """A lease event: a lease that died is taken over if its jobs are unfinished."""
        if event.action not in ("die", "destroy"):
            return
        owner = event.attributes.get(LEASE_OWNER_LABEL)
        if not owner:
            return
        if self.held.get(owner) == event.container_id and owner in self._scopes:
            self._scopes[owner].cancel()  # ours died under us: we no longer hold it
            self._drop(owner)
        self.consider(owner)

    def consider(self, owner: str) -> None:
        """Try to take ``owner``'s lease over if some of its jobs are unfinished."""
        if owner in self.held or owner in self._adopting or owner.startswith(UNLEASED):
            return
        if self._unfinished(owner):
            self._adopting.add(owner)
            self._tasks.spawn(self._adopt, owner)

    async def _adopt(self, owner: str) -> None:
        """Take ``owner``'s lease over; an engine failure is tried again (backing off) while
        the lease is dead, its jobs unfinished and we open: no later event would ask again."""
        backoff = BACKOFF_MIN
        try:
            while True:
                try:
                    if await self.take_now(owner):
                        self.on_adopted(owner)
                    return
                except (DrmCommunicationError, EngineError, InternalError) as exc:
                    if self.closing or owner in self.held or not self._unfinished(owner):
                        return
                    log.warning("taking lease %s over failed (%s); retrying", owner, exc)
                    await anyio.sleep(backoff)
                    backoff = next_backoff(backoff)
        finally:
            self._adopting.discard(owner)

    async def _image_of(self, owner: str) -> str:
        for job in list(self._cache):
            if job.owner == owner:
                with contextlib.suppress(JobNotFoundError), engine_errors("inspect", job.job_id):
                    return (await self._engine.inspect(job.job_id)).image
        return ""

    async def live_owners(self, *, note_ended: bool = False) -> set[str]:
        """The owners whose leases are held now (one listing); ``note_ended`` (at opening):
        the ended leases are noted for ``clear_ended``."""
        with engine_errors("list"):
            leases = await self._engine.list_containers(self.label)
        if note_ended:
            self._ended = {
                o: s.container_id
                for s in leases
                if s.state in ("exited", "dead") and (o := s.labels.get(LEASE_OWNER_LABEL))
            }
        return {o for s in leases if s.state in _LIVE and (o := s.labels.get(LEASE_OWNER_LABEL))}

    async def clear_ended(self) -> None:
        """Remove the ended leases noted at opening whose jobs have all ended: nobody takes
        them over, and each would stay behind for good (a tracker closed or killed with work
        left, which ended while no tracker was open). Not one only created (its maker may be
        about to start it); the id, not the name, so that a lease made again is not hit."""
        ended, self._ended = self._ended, {}
        for owner, cid in ended.items():
            if owner in self.held or owner in self._adopting or self._unfinished(owner):
                continue
            with contextlib.suppress(TrackerError), engine_errors("remove", cid):
                await self._engine.remove(cid)

    async def take_now(self, owner: str) -> bool:
        """Try to take ``owner``'s dead lease over now; True if we won it (or hold it)."""
        if owner in self.held:
            return True
        image = await self._image_of(owner)
        if not image or not await self._acquire(owner, image):
            return False
        self.takeovers += 1
        log.warning("took over lease %s", owner)
        return True

    async def adopt_dead(self) -> None:
        """At opening: take over the leases whose holders are gone and whose jobs are not done."""
        live = await self.live_owners()
        for owner in {j.owner for j in self._cache if j.owner is not None} - live:
            self.consider(owner)

    # -- releasing ----------------------------------------------------------------------

    def finished(self) -> list[str]:
        """The lease containers held whose jobs are all finished (removed at closing; the
        others are let go when the tracker's tasks end: their ``cat`` exits, and another
        tracker takes them over)."""
        return [cid for owner, cid in self.held.items() if not self._unfinished(owner)]

    async def remove(self, lease_ids: list[str]) -> None:
        with shielded(self._timeout):
            for cid in lease_ids:
                with contextlib.suppress(TrackerError), engine_errors("remove", cid):
                    await self._engine.remove(cid, force=True)
