"""aiotracker: an asyncio-native DRMAA2 job tracker for Docker, driven by the event stream.

::

    async with DockerTracker("my-session") as tracker:
        job_id = await tracker.add_job(JobTemplate(job_category="busybox", remote_command="true"))
        state = await tracker.wait(job_id)
"""

from ._exceptions import (
    DrmCommunicationError,
    EngineError,
    ImageNotFoundError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    JobNameInUseError,
    JobNotFoundError,
    OutputOverrunError,
    OutputStreamError,
    TrackerClosedError,
    TrackerError,
    UnsupportedOperationError,
    WaitTimeoutError,
)
from ._model import JobControlAction, JobInfo, JobState, JobTemplate, StateChange
from ._tracker import DockerTracker, TrackerStatistics

__all__ = [
    # the tracker
    "DockerTracker",
    "TrackerStatistics",
    # the DRMAA2 model
    "JobControlAction",
    "JobInfo",
    "JobState",
    "JobTemplate",
    "StateChange",
    # exceptions
    "DrmCommunicationError",
    "EngineError",
    "ImageNotFoundError",
    "InternalError",
    "JobNameInUseError",
    "InvalidArgumentError",
    "InvalidStateError",
    "JobNotFoundError",
    "OutputOverrunError",
    "OutputStreamError",
    "TrackerClosedError",
    "TrackerError",
    "UnsupportedOperationError",
    "WaitTimeoutError",
]

__version__ = "0.1.0"
