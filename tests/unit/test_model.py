"""The DRMAA2 model: JobTemplate normalisation, JobState, the exception tree, the facade."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import aiotracker
from aiotracker import (
    DrmCommunicationError,
    ImageNotFoundError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    JobControlAction,
    JobInfo,
    JobNotFoundError,
    JobState,
    JobTemplate,
    TrackerClosedError,
    TrackerError,
    UnsupportedOperationError,
    WaitTimeoutError,
    _model,
)

# -- JobTemplate ----------------------------------------------------------------------------


def make_template(**fields: Any) -> JobTemplate:
    """A template from fields named at run time (parametrized by field name)."""
    return JobTemplate(**fields)


SEQUENCE_FIELDS = ("args", "email", "candidate_machines")
MAPPING_FIELDS = (
    "job_environment",
    "stage_in_files",
    "stage_out_files",
    "resource_limits",
    "extensions",
)


@pytest.mark.parametrize("name", SEQUENCE_FIELDS)
def test_template_stores_a_list_as_a_tuple(name: str) -> None:
    """A list given for a sequence field is stored as a tuple with the same items."""
    template = make_template(**{name: ["a", "b"]})
    assert getattr(template, name) == ("a", "b")
    assert type(getattr(template, name)) is tuple


@pytest.mark.parametrize("name", SEQUENCE_FIELDS)
def test_template_does_not_split_a_bare_string(name: str) -> None:
    """A bare string for a sequence field becomes a one-element tuple, not its characters."""
    assert getattr(make_template(**{name: "hello"}), name) == ("hello",)


@pytest.mark.parametrize("name", SEQUENCE_FIELDS)
def test_template_stores_none_as_an_empty_tuple(name: str) -> None:
    """None for a sequence field reads as unset: an empty tuple."""
    assert getattr(make_template(**{name: None}), name) == ()


@pytest.mark.parametrize("name", SEQUENCE_FIELDS)
def test_template_does_not_follow_changes_to_the_callers_list(name: str) -> None:
    """Appending to the list passed in leaves the template's sequence as it was."""
    given = ["a"]
    template = make_template(**{name: given})
    given.append("b")
    assert getattr(template, name) == ("a",)


@pytest.mark.parametrize("name", MAPPING_FIELDS)
def test_template_copies_the_callers_mapping(name: str) -> None:
    """Changing or clearing the dict passed in leaves the template's mapping as it was."""
    given = {"k": "v"}
    template = make_template(**{name: given})
    given["k"] = "changed"
    given["new"] = "x"
    assert getattr(template, name) == {"k": "v"}
    given.clear()
    assert getattr(template, name) == {"k": "v"}


@pytest.mark.parametrize("name", MAPPING_FIELDS)
def test_template_stores_none_as_an_empty_mapping(name: str) -> None:
    """None for a mapping field reads as unset: an empty dict."""
    assert getattr(make_template(**{name: None}), name) == {}


def test_template_defaults_are_unset() -> None:
    """A template made with no arguments has the DRMAA2 "unset" value in every field."""
    template = JobTemplate()
    assert (template.remote_command, template.args, template.job_category) == ("", (), "")
    assert (template.submit_as_hold, template.min_slots, template.start_time) == (False, 0, None)
    assert (template.extensions, template.job_environment) == ({}, {})


def test_templates_built_from_list_and_tuple_are_equal() -> None:
    """Equality compares content: a list and a tuple of the same arguments give equal templates."""
    a = JobTemplate(remote_command="sh", args=["-c", "true"], job_environment={"A": "1"})
    b = JobTemplate(remote_command="sh", args=("-c", "true"), job_environment={"A": "1"})
    assert a == b


@pytest.mark.parametrize(
    "change",
    [
        {"remote_command": "other"},
        {"args": ("x",)},
        {"job_environment": {"A": "2"}},
        {"extensions": {"user": "nobody"}},
        {"submit_as_hold": True},
        {"start_time": datetime(2024, 1, 1, tzinfo=UTC)},
    ],
    ids=["remote_command", "args", "job_environment", "extensions", "submit_as_hold", "start_time"],
)
def test_templates_differing_in_one_field_are_not_equal(change: dict[str, object]) -> None:
    """A template differs from one with any single field changed."""
    base = JobTemplate(remote_command="sh", args=["-c"], job_environment={"A": "1"})
    assert base != base.replace(**change)


def test_template_is_not_hashable() -> None:
    """A template holds mappings, so hashing it raises TypeError."""
    with pytest.raises(TypeError):
        hash(JobTemplate())


def test_template_is_frozen() -> None:
    """Assigning to a field of a template raises FrozenInstanceError."""
    template = JobTemplate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.job_name = "x"  # type: ignore[misc]


def test_template_replace_returns_a_normalised_copy() -> None:
    """replace() changes only the named fields, normalises them and leaves the original alone."""
    original = JobTemplate(remote_command="sleep", args=["1"])
    changed = original.replace(args=["2", "3"], job_name="j")
    assert (changed.remote_command, changed.args, changed.job_name) == ("sleep", ("2", "3"), "j")
    assert (original.args, original.job_name) == (("1",), "")


def test_job_info_defaults() -> None:
    """A JobInfo with only an id is UNDETERMINED, with no exit status, one slot and no times."""
    info = JobInfo(job_id="abc")
    assert (info.state, info.exit_status, info.slots, info.terminating_signal) == (
        JobState.UNDETERMINED,
        None,
        1,
        "",
    )
    assert (info.submission_time, info.dispatch_time, info.finish_time) == (None, None, None)
    assert info.wallclock_time is None


def test_job_info_compares_by_value() -> None:
    """Two JobInfos with the same fields are equal; a different wallclock makes them differ."""
    a = JobInfo(job_id="x", wallclock_time=timedelta(seconds=1))
    assert a == JobInfo(job_id="x", wallclock_time=timedelta(seconds=1))
    assert a != JobInfo(job_id="x", wallclock_time=timedelta(seconds=2))


# -- JobState, JobControlAction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (JobState.UNDETERMINED, False),
        (JobState.QUEUED, False),
        (JobState.QUEUED_HELD, False),
        (JobState.RUNNING, False),
        (JobState.SUSPENDED, False),
        (JobState.REQUEUED, False),
        (JobState.REQUEUED_HELD, False),
        (JobState.DONE, True),
        (JobState.FAILED, True),
    ],
    ids=lambda v: v.name if isinstance(v, JobState) else str(v),
)
def test_job_state_is_terminal(state: JobState, terminal: bool) -> None:
    """Only DONE and FAILED are terminal."""
    assert state.is_terminal is terminal


def test_job_state_has_the_nine_drmaa2_states() -> None:
    """JobState holds exactly the nine DRMAA2 states, in the standard's order."""
    assert [s.name for s in JobState] == [
        "UNDETERMINED",
        "QUEUED",
        "QUEUED_HELD",
        "RUNNING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUED_HELD",
        "DONE",
        "FAILED",
    ]


def test_job_state_repr_names_the_member() -> None:
    """repr(JobState.DONE) is "JobState.DONE", short enough for assertion messages."""
    assert repr(JobState.DONE) == "JobState.DONE"


def test_job_control_actions_are_the_drmaa2_strings() -> None:
    """The control actions compare equal to the strings drmaa2os takes."""
    assert [str(a) for a in JobControlAction] == [
        "suspend",
        "resume",
        "hold",
        "release",
        "terminate",
    ]
    assert JobControlAction("terminate") is JobControlAction.TERMINATE


# -- exceptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (InvalidArgumentError, TrackerError),
        (InvalidArgumentError, ValueError),
        (JobNotFoundError, InvalidArgumentError),
        (ImageNotFoundError, InvalidArgumentError),
        (InvalidStateError, TrackerError),
        (TrackerClosedError, InvalidStateError),
        (UnsupportedOperationError, TrackerError),
        (WaitTimeoutError, TrackerError),
        (WaitTimeoutError, TimeoutError),
        (DrmCommunicationError, TrackerError),
        (InternalError, TrackerError),
        (TrackerError, Exception),
    ],
    ids=lambda c: c.__name__,
)
def test_exception_tree(cls: type[BaseException], base: type[BaseException]) -> None:
    """Each exception derives from the class the module docstring draws above it."""
    assert issubclass(cls, base)


@pytest.mark.parametrize(
    ("cls", "not_base"),
    [
        (JobNotFoundError, InvalidStateError),
        (InvalidStateError, ValueError),
        (DrmCommunicationError, TimeoutError),
        (WaitTimeoutError, ValueError),
    ],
    ids=lambda c: c.__name__,
)
def test_exception_tree_has_no_extra_edges(
    cls: type[BaseException], not_base: type[BaseException]
) -> None:
    """Exceptions do not derive from classes outside their branch of the tree."""
    assert not issubclass(cls, not_base)


def test_exception_carries_the_job_id() -> None:
    """job_id is an attribute, None unless given, and the message is the exception's text."""
    err = JobNotFoundError("no job 'abc'", job_id="abc")
    assert (err.job_id, str(err)) == ("abc", "no job 'abc'")
    assert InvalidArgumentError("bad").job_id is None


def test_image_not_found_carries_the_image() -> None:
    """ImageNotFoundError names the missing image as an attribute."""
    err = ImageNotFoundError("no image", image="busybox:nope", job_id="j")
    assert (err.image, err.job_id) == ("busybox:nope", "j")


def test_wait_timeout_is_caught_as_timeout_error() -> None:
    """Code that catches the builtin TimeoutError also catches WaitTimeoutError."""
    with pytest.raises(TimeoutError) as info:
        raise WaitTimeoutError("too slow", job_id="j")
    assert info.value.job_id == "j"  # type: ignore[attr-defined]


def test_invalid_argument_is_caught_as_value_error() -> None:
    """Code that catches ValueError also catches InvalidArgumentError and its subclasses."""
    with pytest.raises(ValueError, match="no such job"):
        raise JobNotFoundError("no such job", job_id="x")


# -- the public facade ----------------------------------------------------------------------


def test_facade_reexports_the_model() -> None:
    """aiotracker.JobTemplate and JobState are the classes of the private model module."""
    assert aiotracker.JobTemplate is _model.JobTemplate
    assert aiotracker.JobState.DONE is _model.JobState.DONE


def test_facade_all_names_exist() -> None:
    """Every name in aiotracker.__all__ is an attribute of the package."""
    missing = [name for name in aiotracker.__all__ if not hasattr(aiotracker, name)]
    assert missing == []


def test_package_imports_in_a_fresh_interpreter() -> None:
    """`python -c "import aiotracker; print(...)"` prints the template class and JobState.DONE
    (a StrEnum: printed as its value)."""
    code = "import aiotracker; print(aiotracker.JobTemplate, aiotracker.JobState.DONE)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "<class 'aiotracker._model.JobTemplate'> done\n"
