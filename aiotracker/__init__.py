"""aiotracker: an asyncio-native DRMAA2 job tracker for Docker, driven by the event stream.

::

    async with DockerTracker("my-session") as tracker:
        job_id = await tracker.add_job(JobTemplate(job_category="busybox", remote_command="true"))
        state = await tracker.wait(job_id)

or with DRMAA2's session layer::

    async with JobSession("my-session") as session:
        job = await session.run_job(JobTemplate(job_category="busybox", remote_command="true"))
        await job.wait_terminated()
"""

from ._exceptions import (
    DrmCommunicationError,
    EngineError,
    ImageNotFoundError,
    ImagePullError,
    InternalError,
    InvalidArgumentError,
    InvalidSessionError,
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
from ._jobs import ArrayJob, Job
from ._model import JobControlAction, JobInfo, JobState, JobTemplate, Machine, StateChange
from ._monitoring import JobView, MonitoringSession
from ._pull import PullProgress
from ._session import JobSession, destroy_job_session, list_job_sessions
from ._swarm import SwarmMonitoringSession, SwarmTracker
from ._tracker import DockerTracker, TrackerStatistics

__all__ = [
    # the tracker
    "DockerTracker",
    "SwarmTracker",
    "SwarmMonitoringSession",
    "TrackerStatistics",
    # DRMAA2's sessions and job objects
    "ArrayJob",
    "Job",
    "JobSession",
    "JobView",
    "MonitoringSession",
    "destroy_job_session",
    "list_job_sessions",
    # the DRMAA2 model
    "JobControlAction",
    "JobInfo",
    "JobState",
    "JobTemplate",
    "Machine",
    "PullProgress",
    "StateChange",
    # exceptions
    "DrmCommunicationError",
    "EngineError",
    "ImageNotFoundError",
    "ImagePullError",
    "InternalError",
    "JobNameInUseError",
    "InvalidArgumentError",
    "InvalidSessionError",
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
