"""The exceptions of aiotracker: one root, the most specific class wins.

::

    TrackerError
    ├── InvalidArgumentError (ValueError)
    │   ├── JobNameInUseError
    │   ├── JobNotFoundError
    │   ├── ImageNotFoundError
    │   └── ImagePullError
    ├── InvalidStateError
    │   └── TrackerClosedError
    │       └── InvalidSessionError
    ├── UnsupportedOperationError
    ├── WaitTimeoutError (TimeoutError)
    ├── DrmCommunicationError
    ├── EngineError
    └── InternalError

Errors about one job carry its id as ``job_id`` (``None`` where no job is concerned); an
error translated from the engine keeps the engine's error as ``__cause__``.
"""

from __future__ import annotations


class TrackerError(Exception):
    """The root of every exception aiotracker raises on purpose."""

    job_id: str | None

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class InvalidArgumentError(TrackerError, ValueError):
    """An argument is malformed or names something that does not exist.

    Raised before anything is created: a bad job template, extension value, path, timeout,
    array bound or job-control action.
    """


class JobNameInUseError(InvalidArgumentError):
    """A job of this session already has the job name (``job_id`` names that job)."""

    job_name: str

    def __init__(self, message: str, *, job_name: str, job_id: str | None = None) -> None:
        super().__init__(message, job_id=job_id)
        self.job_name = job_name


class JobNotFoundError(InvalidArgumentError):
    """The id names no job of this tracker's session.

    Raised for ids that never existed, belong to another session or to a container that is
    not a job, and for jobs that were deleted (also to a ``wait`` pending on a deleted job).
    """


class ImageNotFoundError(InvalidArgumentError):
    """The job category names an image that is not present on the engine (with the ``pull``
    extension ``never``, the default) or that its registry does not have."""

    image: str

    def __init__(self, message: str, *, image: str, job_id: str | None = None) -> None:
        super().__init__(message, job_id=job_id)
        self.image = image


class ImagePullError(InvalidArgumentError):
    """The registry refused to give the image: credentials missing, wrong or not allowed
    to read it (the message is the registry's). A registry that does not answer is an
    ``EngineError``; an image it does not have, ``ImageNotFoundError``."""

    image: str

    def __init__(self, message: str, *, image: str, job_id: str | None = None) -> None:
        super().__init__(message, job_id=job_id)
        self.image = image


class InvalidStateError(TrackerError):
    """The job is not in a state that allows the operation.

    Raised by ``job_control`` (resume a running job, suspend a finished one), by
    ``delete_job`` on an unfinished job, and by ``wait`` when the job reached a terminal
    state other than the ones waited for: it can never get there.
    """


class TrackerClosedError(InvalidStateError):
    """The tracker is closed, or was closed while the call was pending."""


class InvalidSessionError(TrackerClosedError):
    """A job or monitoring session is used after its ``close``, or closed a second time
    (DRMAA2's InvalidSessionException)."""


class UnsupportedOperationError(TrackerError):
    """The operation is part of DRMAA2 but this tracker cannot do it on Docker."""


class WaitTimeoutError(TrackerError, TimeoutError):
    """A ``wait`` ran out of time before the job reached a wanted state."""


class DrmCommunicationError(TrackerError):
    """The Docker engine cannot be reached, or the connection to it broke.

    Raised when opening a tracker on an engine that does not answer, by any call that needs
    the engine while it is away, and to pending waits once the engine has been gone for
    longer than the tracker's ``engine_timeout``.
    """


class EngineError(TrackerError):
    """The engine failed to carry out a call for a reason that is not the job's own.

    An engine 5xx such as a full disk, a port already allocated or containerd being down:
    the template is fine and the same call may work later (unlike ``InvalidArgumentError``).
    """


class OutputOverrunError(TrackerError):
    """A reader of ``stream_output`` fell further behind the job's output than its buffer
    holds and was cut off (the copy, the file and the other readers never wait for it).

    The message says how many bytes it had been given; ``stream_output(..., tail=N)`` starts
    again from the last N lines.
    """


class OutputStreamError(TrackerError):
    """``stream_output`` could not deliver the whole output: the engine's stream ended before
    the job did and its log could not fill the gap, or the log was rotated away."""


class InternalError(TrackerError):
    """The engine answered in a way aiotracker does not understand; a bug to report."""
