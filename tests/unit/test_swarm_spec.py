"""Table tests of the pure Swarm translation (``_engine.swarm_spec``): no daemon.

Both directions are covered: a container create config, as the real ``create_config`` builds
it from a ``JobTemplate``, into the body of ``POST /services/create`` (or ``EngineCallError``
501 for what Swarm cannot run); and the answers of ``GET /services/{id}`` and ``GET /tasks``
back into the container terms of the engine boundary (``TaskView``, ``ContainerDetails``,
``ContainerSummary``). The raw dicts are shaped as the Docker Engine API sends them: Go's
``omitempty`` drops a zero ``ExitCode``, an empty ``Err`` and an unassigned ``NodeID``.

Tests marked ``xfail(strict=True)`` assert the correct behaviour where the module has a bug;
each reason says what it is.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from aiotracker import JobState, JobTemplate
from aiotracker._config import create_config
from aiotracker._engine.base import EngineCallError
from aiotracker._engine.swarm_spec import (
    NAME_LABEL,
    RUN_LABEL,
    SERVICE_ID_RE,
    UNSTARTED,
    TaskView,
    constraints,
    details,
    is_started,
    latest,
    node_info,
    relabel,
    service_name,
    service_spec,
    start_update,
    stop_update,
    summary,
    task_view,
)
from aiotracker._labels import (
    DEADLINE_SUFFIX,
    HELD_SUFFIX,
    MANAGED_LABEL,
    SESSION_LABEL,
    TEMPLATE_LABEL,
    TERMINATED_SUFFIX,
    WALLCLOCK_SUFFIX,
    container_name,
)
from aiotracker._mapping import state_from_details, state_from_summary

CWD = "/home/user/work"
JOB = container_name("job-1", "s")  # "job-1.s-043a7187": a named job's container name
# service_name(JOB), computed once by hand: sha256 of the name, its first 40 hex digits.
JOB_SERVICE = "aiotracker-80ad1263f8536571a8010dabdaf841fb2fe6c928"

SERVICE_ID = "9mnpnzenvg8p8tdbtq4wvbkcz"
NODE_ID = "60gvrl6tm78dmak4yl7srz94v"
CONTAINER_ID = "e5d62702a1b48d01c3e02ca1e0212a250801fa8d67caca0b6f35919ebc12f035"
DIGEST = "sha256:" + "0123456789abcdef" * 4

CREATED_AT = "2024-05-06T07:08:09.123456789Z"
CREATED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T_RUN = "2024-05-06T07:10:00.500000001Z"
RUN = datetime(2024, 5, 6, 7, 10, 0, 500000, tzinfo=UTC)
T_END = "2024-05-06T07:12:30.987654321Z"
END = datetime(2024, 5, 6, 7, 12, 30, 987654, tzinfo=UTC)

BEFORE_STATES = ("new", "pending", "assigned", "accepted", "ready", "preparing", "starting")
ENDED_STATES = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")
# The states at which a node holds the task (NodeID set) and its container exists.
_ASSIGNED = frozenset({"assigned", "accepted", "ready", "preparing", "starting", "running",
                       *ENDED_STATES})  # fmt: skip
_HAS_CONTAINER = frozenset({"ready", "starting", "running", "complete", "failed", "shutdown"})


def config_for(template: JobTemplate, **kwargs: Any) -> dict[str, Any]:
    """The container create config the tracker would send Docker for ``template``."""
    return create_config("s", template, cwd=CWD, **kwargs)


def busybox(**fields: Any) -> dict[str, Any]:
    fields.setdefault("job_category", "busybox:1.36")
    return config_for(JobTemplate(**fields))


def container_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["TaskTemplate"]["ContainerSpec"]  # type: ignore[no-any-return]


def service_raw(
    spec: dict[str, Any],
    *,
    iteration: int = 0,
    pin_image: bool = True,
    service_id: str = SERVICE_ID,
) -> dict[str, Any]:
    """``GET /services/{id}`` for a service made with ``spec``: the daemon echoes the spec,
    with the image pinned to its digest (its default at create)."""
    spec = copy.deepcopy(spec)
    if pin_image:
        cs = spec["TaskTemplate"]["ContainerSpec"]
        cs["Image"] = f"{cs['Image']}@{DIGEST}"
    return {
        "ID": service_id,
        "Version": {"Index": 19 + iteration},
        "CreatedAt": CREATED_AT,
        "UpdatedAt": T_RUN,
        "Spec": spec,
        "Endpoint": {"Spec": {}},
        "JobStatus": {"JobIteration": {"Index": iteration}, "LastExecution": T_RUN},
    }


def task_raw(
    state: str,
    *,
    iteration: int = 1,
    timestamp: str | None = T_RUN,
    container_id: str | None = None,
    exit_code: int | None = None,
    err: str = "",
    task_id: str = "0kzzo1i0y4jz6027t0k7aezc7",
) -> dict[str, Any]:
    """One entry of ``GET /tasks`` for a job's task in ``state``. ``container_id`` defaults to
    one exactly where a node has made the container."""
    if container_id is None:
        container_id = CONTAINER_ID if state in _HAS_CONTAINER else ""
    status: dict[str, Any] = {"State": state, "Message": state, "PortStatus": {}}
    if timestamp is not None:
        status["Timestamp"] = timestamp
    if err:
        status["Err"] = err
    cstatus: dict[str, Any] = {}
    if container_id:
        cstatus["ContainerID"] = container_id
        cstatus["PID"] = 4242 if state == "running" else 0
    if exit_code:  # omitempty: a zero exit code is not sent
        cstatus["ExitCode"] = exit_code
    if cstatus:
        status["ContainerStatus"] = cstatus
    raw: dict[str, Any] = {
        "ID": task_id,
        "Version": {"Index": 71},
        "CreatedAt": CREATED_AT,
        "UpdatedAt": timestamp or CREATED_AT,
        "Labels": {},
        "Spec": {"ContainerSpec": {"Image": f"busybox:1.36@{DIGEST}"}},
        "ServiceID": SERVICE_ID,
        "Slot": 0,
        "Status": status,
        "DesiredState": "complete",
        "JobIteration": {"Index": iteration},
    }
    if state in _ASSIGNED:
        raw["NodeID"] = NODE_ID
    return raw


def view(state: str, **kwargs: Any) -> TaskView:
    return task_view(task_raw(state, **kwargs))


def started_service(config: dict[str, Any] | None = None, name: str = JOB) -> dict[str, Any]:
    """A job's service after its start (the update made iteration 1, its run)."""
    spec = service_spec(config or busybox(remote_command="/bin/true"), name, started=False)
    return service_raw(start_update(spec, 1), iteration=1)


def unstarted_service(config: dict[str, Any] | None = None, name: str = JOB) -> dict[str, Any]:
    spec = service_spec(config or busybox(remote_command="/bin/true"), name, started=False)
    return service_raw(spec, iteration=0)


# ==========================================================================================
# service_name
# ==========================================================================================


def test_service_name_is_a_stable_hash_of_the_name() -> None:
    """The name is sha256-based (the same in every process, unlike hash()), as written down."""
    assert service_name(JOB) == JOB_SERVICE


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(JOB, id="plain"),
        pytest.param("a", id="one-char"),
        pytest.param("x" * 255 + ".s-043a7187", id="very-long"),
        pytest.param("my.job.with.dots_and-dashes.s-043a7187", id="dots"),
    ],
)
def test_service_name_is_a_valid_swarm_name(name: str) -> None:
    """Swarm's names: no dots, a DNS label of at most 63 characters."""
    got = service_name(name)
    assert "." not in got
    assert len(got) <= 63
    assert re.fullmatch(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?", got)


@pytest.mark.parametrize(
    "marked",
    [
        pytest.param(JOB + HELD_SUFFIX, id="held"),
        pytest.param(JOB + TERMINATED_SUFFIX, id="terminated"),
        pytest.param(JOB + DEADLINE_SUFFIX, id="deadline"),
        pytest.param(JOB + WALLCLOCK_SUFFIX, id="wallclock"),
        pytest.param("/" + JOB, id="leading-slash"),
        pytest.param("/" + JOB + HELD_SUFFIX, id="slash-and-held"),
    ],
)
def test_marks_do_not_change_the_service_name(marked: str) -> None:
    """A rename that adds a mark (held, terminated, ...) names the same service."""
    assert service_name(marked) == JOB_SERVICE


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(container_name("job-2", "s"), id="other-job"),
        pytest.param(container_name("job-1", "t"), id="other-session"),
        pytest.param(JOB + HELD_SUFFIX + "x", id="not-quite-a-mark"),
        pytest.param(JOB + ".aiotracker", id="dot-suffix"),
    ],
)
def test_other_names_give_other_service_names(other: str) -> None:
    """Two jobs' names never share a service (a service name is unique per job name)."""
    assert service_name(other) != JOB_SERVICE


def test_spec_name_is_the_service_name_of_the_job_without_its_marks() -> None:
    """A job submitted on hold is made under the name its release will use."""
    spec = service_spec(busybox(), JOB + HELD_SUFFIX, started=False)
    assert spec["Name"] == JOB_SERVICE
    assert spec["Labels"][NAME_LABEL] == JOB + HELD_SUFFIX


@pytest.mark.parametrize(
    ("text", "is_service"),
    [
        pytest.param(SERVICE_ID, True, id="service-id"),
        pytest.param("9mnpnz", True, id="prefix"),
        pytest.param(CONTAINER_ID, False, id="container-id"),
        pytest.param(JOB, False, id="container-name"),
        pytest.param("9MNPNZ", False, id="upper-case"),
    ],
)
def test_service_id_pattern(text: str, is_service: bool) -> None:
    """Service ids are 25 lower-case base-36 characters; a 64-hex container id is not one."""
    assert bool(SERVICE_ID_RE.fullmatch(text)) is is_service


# ==========================================================================================
# service_spec: a config built by the real mapping
# ==========================================================================================

FULL_TEMPLATE = JobTemplate(
    job_category="registry.example.com/team/tool:2.1",
    remote_command="/usr/bin/tool",
    args=("--in", "/data/in.txt", "--verbose"),
    job_environment={"OMP_NUM_THREADS": "2", "MODE": "fast"},
    working_directory="/scratch",
    stage_in_files={"./data": "/data", "/etc/tool.conf": "/etc/tool.conf"},
    extensions={"user": "1000:1000", "entrypoint": "/sbin/tini --"},
    max_slots=2,
    min_phys_memory=16 * 1024,  # KiB
    resource_limits={"VIRTUAL_MEMORY": "64m", "OPEN_FILES": "1024"},
)


@pytest.fixture
def full_config() -> dict[str, Any]:
    return config_for(FULL_TEMPLATE, submission_host="submitter-host", submitter="alice")


def test_spec_of_a_full_template_container(full_config: dict[str, Any]) -> None:
    """Image, Entrypoint -> Command, Cmd -> Args, Env, WorkingDir -> Dir, User, no TTY,
    and a grace period of 0 (a terminate is a kill)."""
    cs = container_spec(service_spec(full_config, JOB, started=True))
    assert cs["Image"] == "registry.example.com/team/tool:2.1"
    assert cs["Command"] == ["/sbin/tini", "--"]
    assert cs["Args"] == ["/usr/bin/tool", "--in", "/data/in.txt", "--verbose"]
    assert cs["Env"] == ["OMP_NUM_THREADS=2", "MODE=fast"]
    assert cs["Dir"] == "/scratch"
    assert cs["User"] == "1000:1000"
    assert cs["TTY"] is False
    assert cs["StopGracePeriod"] == 0
    assert cs["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 1024}]


def test_spec_of_a_full_template_service(full_config: dict[str, Any]) -> None:
    """A one-shot ReplicatedJob that never restarts, named after the job."""
    spec = service_spec(full_config, JOB, started=True)
    assert spec["Name"] == JOB_SERVICE
    assert spec["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert spec["TaskTemplate"]["RestartPolicy"] == {"Condition": "none", "MaxAttempts": 0}
    assert set(spec) == {"Name", "Labels", "TaskTemplate", "Mode"}


def test_labels_go_on_the_service_and_its_container(full_config: dict[str, Any]) -> None:
    """Every label of the config, plus NAME_LABEL, on both the service and the container."""
    spec = service_spec(full_config, JOB, started=True)
    expected = {**full_config["Labels"], NAME_LABEL: JOB}
    assert spec["Labels"] == expected
    assert container_spec(spec)["Labels"] == expected
    assert spec["Labels"][SESSION_LABEL] == "s"
    assert TEMPLATE_LABEL in spec["Labels"]
    assert MANAGED_LABEL in spec["Labels"]


def test_binds_become_bind_mounts(full_config: dict[str, Any]) -> None:
    """stage_in_files' binds (made absolute against the cwd) are bind mounts, read-write."""
    mounts = container_spec(service_spec(full_config, JOB, started=True))["Mounts"]
    assert mounts == [
        {"Type": "bind", "Source": f"{CWD}/data", "Target": "/data", "ReadOnly": False},
        {"Type": "bind", "Source": "/etc/tool.conf", "Target": "/etc/tool.conf",
         "ReadOnly": False},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("bind", "read_only"),
    [
        pytest.param("/srv/ref:/ref:ro", True, id="ro"),
        pytest.param("/srv/ref:/ref:z,ro", True, id="ro-among-options"),
        pytest.param("/srv/ref:/ref:ro,Z", True, id="ro-first"),
        pytest.param("/srv/ref:/ref:rw", False, id="rw"),
        pytest.param("/srv/ref:/ref", False, id="no-mode"),
        pytest.param("/srv/ref:/ref:rw,rprivate", False, id="rw-among-options"),
    ],
)
def test_bind_mode(bind: str, read_only: bool) -> None:
    """A bind's ``ro`` option (alone or among others) makes the mount read-only."""
    config = busybox(stage_in_files={"/srv/in": "/in"})
    config["HostConfig"]["Binds"].append(bind)
    mounts = container_spec(service_spec(config, JOB, started=True))["Mounts"]
    assert mounts[0] == {"Type": "bind", "Source": "/srv/in", "Target": "/in", "ReadOnly": False}
    assert mounts[1] == {"Type": "bind", "Source": "/srv/ref", "Target": "/ref",
                         "ReadOnly": read_only}  # fmt: skip


def test_resources_become_limits_and_reservations(full_config: dict[str, Any]) -> None:
    """NanoCpus and Memory are the task's limits, MemoryReservation its reservation (the
    swap limit has no Swarm counterpart)."""
    resources = service_spec(full_config, JOB, started=True)["TaskTemplate"]["Resources"]
    assert resources == {
        "Limits": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 64 << 20},
        "Reservations": {"MemoryBytes": 16 << 20},
    }


@pytest.mark.parametrize(
    ("fields", "resources"),
    [
        pytest.param({"max_slots": 3}, {"Limits": {"NanoCPUs": 3_000_000_000}}, id="cpus-only"),
        pytest.param(
            {"resource_limits": {"VIRTUAL_MEMORY": "8m"}},
            {"Limits": {"MemoryBytes": 8 << 20}},
            id="memory-only",
        ),
        pytest.param(
            {"min_phys_memory": 7 * 1024},
            {"Reservations": {"MemoryBytes": 7 << 20}},
            id="reservation-only",
        ),
    ],
)
def test_only_the_resources_asked_for(fields: dict[str, Any], resources: dict[str, Any]) -> None:
    """A limit not asked for is not written (not even as 0, which Swarm reads as none)."""
    assert service_spec(busybox(**fields), JOB, started=True)["TaskTemplate"]["Resources"] == (
        resources
    )


def test_no_resources_no_resources_entry() -> None:
    """A job without resource attributes has no Resources in its task template."""
    task = service_spec(busybox(), JOB, started=True)["TaskTemplate"]
    assert "Resources" not in task
    assert "Ulimits" not in task["ContainerSpec"]
    assert "Mounts" not in task["ContainerSpec"]


def test_minimal_template_writes_no_optional_fields() -> None:
    """No command, environment, directory or user: the image's own apply (no empty values)."""
    cs = container_spec(service_spec(busybox(), JOB, started=True))
    assert set(cs) == {"Image", "Labels", "TTY", "StopGracePeriod"}


def test_args_without_entrypoint_keep_the_image_entrypoint() -> None:
    """Cmd alone is Args (the image's ENTRYPOINT runs them, as Docker's Cmd); no Command."""
    config = busybox(remote_command="echo", args=["hi"])
    cs = container_spec(service_spec(config, JOB, started=True))
    assert cs["Args"] == ["echo", "hi"]
    assert "Command" not in cs


def test_empty_cmd_is_kept_as_empty_args() -> None:
    """An explicit empty Cmd is passed on as empty Args (it differs from no Cmd)."""
    cs = container_spec(service_spec({"Image": "busybox", "Cmd": []}, JOB, started=True))
    assert cs["Args"] == []


def test_default_log_driver_keeps_the_whole_output() -> None:
    """The mapping's LogConfig (local, no options) becomes one uncompressed 100g file: the
    output is read from the log."""
    config = busybox()
    assert config["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {}}
    log_driver = service_spec(config, JOB, started=True)["TaskTemplate"]["LogDriver"]
    assert log_driver == {
        "Name": "local",
        "Options": {"max-size": "100g", "max-file": "1", "compress": "false"},
    }


def test_default_log_driver_without_any_host_config() -> None:
    """A config with no HostConfig at all gets the same log driver."""
    log_driver = service_spec({"Image": "busybox"}, JOB, started=True)["TaskTemplate"]["LogDriver"]
    assert log_driver == {
        "Name": "local",
        "Options": {"max-size": "100g", "max-file": "1", "compress": "false"},
    }


def test_log_size_kept_and_never_rotated_away() -> None:
    """The log is the output on Swarm: log-max-size bounds it, but it is never split into
    rotated files (the last of which alone would be read): max-file is 1 whatever it asked."""
    config = busybox(extensions={"log-max-size": "1g", "log-max-file": "3"})
    log_driver = service_spec(config, JOB, started=True)["TaskTemplate"]["LogDriver"]
    assert log_driver == {
        "Name": "local",
        "Options": {"max-size": str(1 << 30), "max-file": "1", "compress": "false"},
    }


def test_explicit_log_driver_type_is_kept() -> None:
    """Another driver with its own options is used as given."""
    config = busybox()
    config["HostConfig"]["LogConfig"] = {"Type": "json-file", "Config": {"max-size": "10m"}}
    log_driver = service_spec(config, JOB, started=True)["TaskTemplate"]["LogDriver"]
    assert log_driver == {"Name": "json-file", "Options": {"max-size": "10m"}}


def test_service_spec_does_not_change_the_config(full_config: dict[str, Any]) -> None:
    """The config is read only: NAME_LABEL is not added to its labels, nothing is moved."""
    before = copy.deepcopy(full_config)
    service_spec(full_config, JOB, started=False)
    assert full_config == before


@pytest.mark.parametrize(
    "extensions",
    [
        pytest.param({"privileged": "false"}, id="privileged-false"),
        pytest.param({"rm": "false"}, id="rm-false"),
        pytest.param({"restart": "no"}, id="restart-no"),
        pytest.param({"net": "none"}, id="net-none"),
        pytest.param({"net": "default"}, id="net-default"),
    ],
)
def test_extensions_that_ask_for_nothing_are_accepted(extensions: dict[str, str]) -> None:
    """Only what Swarm cannot honour is refused: a false flag or the default is fine."""
    spec = service_spec(busybox(extensions=extensions), JOB, started=True)
    assert spec["Name"] == JOB_SERVICE


# ==========================================================================================
# service_spec: what Swarm cannot run
# ==========================================================================================


def raw_config(**fields: Any) -> dict[str, Any]:
    return {"Image": "busybox", **fields}


REFUSED = [
    pytest.param(busybox(extensions={"privileged": "true"}), "privileged", id="Privileged"),
    pytest.param(
        busybox(extensions={"exposedPorts": "8080:80"}), "published ports", id="PortBindings"
    ),
    pytest.param(busybox(extensions={"gpus": "all"}), "GPUs", id="DeviceRequests-gpus"),
    pytest.param(
        busybox(extensions={"gpu-devices": "0,1"}), "GPUs", id="DeviceRequests-gpu-devices"
    ),
    pytest.param(busybox(extensions={"rm": "true"}), "removed at exit", id="AutoRemove"),
    pytest.param(busybox(extensions={"ipc": "host"}), "IPC namespace", id="IpcMode"),
    pytest.param(busybox(extensions={"pid": "host"}), "PID namespace", id="PidMode"),
    pytest.param(busybox(extensions={"uts": "host"}), "UTS namespace", id="UTSMode"),
    pytest.param(busybox(extensions={"shm-size": "64m"}), "/dev/shm", id="ShmSize"),
    pytest.param(busybox(extensions={"net": "host"}), "on a network", id="NetworkMode-host"),
    pytest.param(busybox(extensions={"net": "bridge"}), "on a network", id="NetworkMode-bridge"),
    pytest.param(busybox(extensions={"net": "my-overlay"}), "on a network", id="NetworkMode-named"),
    pytest.param(
        busybox(extensions={"restart": "always"}), "restart policy", id="RestartPolicy-always"
    ),
    pytest.param(
        busybox(extensions={"restart": "on-failure:3"}),
        "restart policy",
        id="RestartPolicy-on-failure",
    ),
    pytest.param(busybox(input_path="/tmp/in.txt"), "input_path", id="OpenStdin"),
    pytest.param(raw_config(ExposedPorts={"80/tcp": {}}), "exposed ports", id="ExposedPorts-alone"),
]


@pytest.mark.parametrize(("config", "why"), REFUSED)
def test_what_swarm_cannot_run_is_refused_with_501(config: dict[str, Any], why: str) -> None:
    """Each option Swarm cannot honour is an EngineCallError 501 that says which, whether the
    job is made started or not."""
    for started in (False, True):
        with pytest.raises(EngineCallError) as caught:
            service_spec(config, JOB, started=started)
        assert caught.value.status == 501
        assert caught.value.message.startswith("Docker Swarm cannot run ")
        assert why in caught.value.message


# ==========================================================================================
# constraints
# ==========================================================================================


@pytest.mark.parametrize(
    ("machines", "started", "expected"),
    [
        pytest.param((), True, [], id="none-started"),
        pytest.param((), False, [UNSTARTED], id="none-unstarted"),
        pytest.param(("node-2",), True, ["node.hostname==node-2"], id="hostname"),
        pytest.param(
            ("node-2",), False, ["node.hostname==node-2", UNSTARTED], id="hostname-unstarted"
        ),
        pytest.param(("node.labels.zone==a",), True, ["node.labels.zone==a"], id="verbatim-equal"),
        pytest.param(
            ("node.platform.os!=windows",), True, ["node.platform.os!=windows"], id="verbatim-neq"
        ),
        pytest.param(("a", "b"), True, ["node.hostname==a"], id="first-candidate-only"),
    ],
)
def test_constraints(machines: tuple[str, ...], started: bool, expected: list[str]) -> None:
    """The candidate machine is a hostname constraint (or a constraint of its own), and a job
    made unstarted waits on UNSTARTED, which no node meets."""
    config = busybox(candidate_machines=machines)
    assert constraints(config, started=started) == expected
    placement = service_spec(config, JOB, started=started)["TaskTemplate"]["Placement"]
    assert placement == {"Constraints": expected}


def test_unstarted_is_a_constraint_no_node_meets() -> None:
    """UNSTARTED is a node label constraint in Swarm's syntax (a typo would match every node
    or be refused)."""
    assert re.fullmatch(r"node\.labels\.[a-z.]+==1", UNSTARTED)


# ==========================================================================================
# start_update, stop_update, is_started, relabel
# ==========================================================================================


def test_made_unstarted_is_not_started() -> None:
    """A job made with started=False is not started; one made started is."""
    assert not is_started(service_spec(busybox(), JOB, started=False))
    assert is_started(service_spec(busybox(), JOB, started=True))


def test_start_update_lifts_only_unstarted() -> None:
    """Starting removes UNSTARTED and keeps the candidate machine and everything else."""
    spec = service_spec(busybox(candidate_machines=["node-2"]), JOB, started=False)
    started = start_update(spec)
    assert is_started(started)
    assert started["TaskTemplate"]["Placement"]["Constraints"] == ["node.hostname==node-2"]
    assert started["TaskTemplate"]["ContainerSpec"] == spec["TaskTemplate"]["ContainerSpec"]
    assert started["TaskTemplate"]["LogDriver"] == spec["TaskTemplate"]["LogDriver"]
    assert {k: v for k, v in started.items() if k != "TaskTemplate"} == {
        k: v for k, v in spec.items() if k != "TaskTemplate"
    }


def test_start_then_stop_then_start_round_trip() -> None:
    """Stop puts UNSTARTED back (the same constraints as made), start lifts it again."""
    made = service_spec(busybox(candidate_machines=["node-2"]), JOB, started=False)
    started = start_update(made)
    stopped = stop_update(started)
    assert not is_started(stopped)
    assert stopped["TaskTemplate"]["Placement"] == made["TaskTemplate"]["Placement"]
    assert start_update(stopped) == started


def test_updates_keep_other_placement_entries() -> None:
    """What the daemon echoes in Placement besides constraints (Platforms) survives both."""
    raw = service_raw(service_spec(busybox(), JOB, started=False))
    platforms = [{"Architecture": "amd64", "OS": "linux"}]
    raw["Spec"]["TaskTemplate"]["Placement"]["Platforms"] = platforms
    started = start_update(raw["Spec"])
    assert started["TaskTemplate"]["Placement"]["Platforms"] == platforms
    assert stop_update(started)["TaskTemplate"]["Placement"]["Platforms"] == platforms


def test_stop_update_of_a_spec_without_placement() -> None:
    """A started spec as the daemon may echo it (no Placement: no constraint left) stops."""
    spec = start_update(service_spec(busybox(), JOB, started=False))
    del spec["TaskTemplate"]["Placement"]
    stopped = stop_update(spec)
    assert stopped["TaskTemplate"]["Placement"] == {"Constraints": [UNSTARTED]}
    assert not is_started(stopped)
    assert is_started(spec)


def test_updates_do_not_change_their_input() -> None:
    """start_update, stop_update and relabel return new specs; the service read stays as read
    (its version and spec are what the update is checked against)."""
    made = service_spec(busybox(candidate_machines=["node-2"]), JOB, started=False)
    before = copy.deepcopy(made)
    start_update(made)
    assert made == before
    started = start_update(made)
    started_before = copy.deepcopy(started)
    stop_update(started)
    assert started == started_before
    relabel(made, JOB + HELD_SUFFIX)
    assert made == before


def test_relabel_changes_only_the_name_label_of_the_service() -> None:
    """A rename is the service's NAME_LABEL: the service name, the other labels and the
    container's labels stay."""
    made = service_spec(busybox(), JOB + HELD_SUFFIX, started=False)
    renamed = relabel(made, JOB)
    assert renamed["Labels"] == {**made["Labels"], NAME_LABEL: JOB}
    assert renamed["Name"] == made["Name"] == JOB_SERVICE
    assert renamed["TaskTemplate"] == made["TaskTemplate"]
    assert renamed["Mode"] == made["Mode"]


def test_relabel_of_a_spec_without_labels() -> None:
    """A service someone made without labels gets the name label alone."""
    assert relabel({"Name": "x"}, JOB) == {"Name": "x", "Labels": {NAME_LABEL: JOB}}


# ==========================================================================================
# task_view
# ==========================================================================================


@pytest.mark.parametrize(
    ("state", "status"),
    [
        *(pytest.param(s, "created", id=s) for s in BEFORE_STATES),
        pytest.param("running", "running", id="running"),
        *(pytest.param(s, "exited", id=s) for s in ENDED_STATES),
    ],
)
def test_task_state_in_container_words(state: str, status: str) -> None:
    """Every swarmkit task state: queued before running, then running, then exited."""
    task = view(state)
    assert task.state == state
    assert task.status == status
    assert task.ended is (status == "exited")


@pytest.mark.parametrize("state", [*BEFORE_STATES, "running"])
def test_no_exit_code_before_the_end(state: str) -> None:
    """A task that has not ended has no exit code."""
    assert view(state).exit_code is None


@pytest.mark.parametrize(
    ("state", "kwargs", "code"),
    [
        pytest.param("complete", {}, 0, id="complete"),
        pytest.param(
            "failed", {"exit_code": 3, "err": "task: non-zero exit (3)"}, 3, id="failed-3"
        ),
        pytest.param(
            "failed",
            {"exit_code": 137, "err": "task: non-zero exit (137)"},
            137,
            id="failed-killed",
        ),
        pytest.param(
            "failed",
            {"container_id": "", "err": "starting container failed"},
            127,
            id="failed-without-container",
        ),
        pytest.param("rejected", {"err": "invalid mount config"}, 127, id="rejected"),
        pytest.param(
            "rejected",
            {"container_id": CONTAINER_ID, "exit_code": 126, "err": "no exec"},
            126,
            id="rejected-with-code",
        ),
        pytest.param("shutdown", {}, 143, id="shutdown-no-code"),
        pytest.param("shutdown", {"container_id": ""}, 143, id="shutdown-before-container"),
        pytest.param("shutdown", {"exit_code": 137}, 137, id="shutdown-killed"),
    ],
)
def test_exit_codes(state: str, kwargs: dict[str, Any], code: int) -> None:
    """What each end says: its own code, 127 for a start that never happened, 143 (SIGTERM)
    for a task shut down without one."""
    assert view(state, **kwargs).exit_code == code


def test_task_view_fields() -> None:
    """Ids, node, container, error and iteration are read from their places."""
    task = view("failed", exit_code=3, err="task: non-zero exit (3)", iteration=4,
                task_id="t1", timestamp=T_END)  # fmt: skip
    assert task == TaskView(
        task_id="t1",
        service_id=SERVICE_ID,
        state="failed",
        status="exited",
        exit_code=3,
        error="task: non-zero exit (3)",
        node_id=NODE_ID,
        container_id=CONTAINER_ID,
        timestamp=END,
        iteration=4,
    )


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        pytest.param(T_RUN, RUN, id="nanoseconds"),
        pytest.param("2024-05-06T07:10:00Z", datetime(2024, 5, 6, 7, 10, tzinfo=UTC), id="whole"),
        pytest.param(
            "2024-05-06T09:10:00.25+02:00",
            datetime(2024, 5, 6, 7, 10, 0, 250000, tzinfo=UTC),
            id="offset",
        ),
        pytest.param("0001-01-01T00:00:00Z", None, id="go-zero"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_task_timestamp(text: str | None, moment: datetime | None) -> None:
    """Go's RFC 3339 with nanoseconds (cut to microseconds), in UTC; Go's zero time is none."""
    assert view("running", timestamp=text).timestamp == moment


def test_pending_task_as_the_api_sends_it() -> None:
    """A pending task has no node, no container status: all empty, not an error."""
    raw = task_raw("pending", iteration=0)
    assert "NodeID" not in raw
    assert "ContainerStatus" not in raw["Status"]
    task = task_view(raw)
    assert (task.node_id, task.container_id, task.error, task.iteration) == ("", "", "", 0)


def test_task_without_status_or_iteration() -> None:
    """A bare task (no Status, no JobIteration) is a new one of iteration 0."""
    task = task_view({"ID": "t0", "ServiceID": SERVICE_ID})
    assert (task.state, task.status, task.exit_code, task.iteration) == ("new", "created", None, 0)
    assert task.timestamp is None


# ==========================================================================================
# latest
# ==========================================================================================


def test_latest_of_no_tasks_is_none() -> None:
    """No task yet (the scheduler has not made one): None."""
    assert latest([]) is None


def test_latest_prefers_the_newest_iteration_over_the_newest_time() -> None:
    """The next iteration's pending task is the one that says the state, even if the previous
    run's task changed after it (a shutdown reported late)."""
    old = view("shutdown", iteration=1, timestamp=T_END, task_id="old")
    new = view("pending", iteration=2, timestamp=T_RUN, task_id="new")
    assert latest([old, new]) is new
    assert latest([new, old]) is new


def test_latest_of_one_iteration_is_the_newest_by_time() -> None:
    """Within one iteration, the task with the newest timestamp."""
    early = view("failed", iteration=1, timestamp=T_RUN, exit_code=1, task_id="zzz")
    late = view("running", iteration=1, timestamp=T_END, task_id="aaa")
    assert latest([early, late]) is late
    assert latest([late, early]) is late


def test_latest_breaks_ties_by_task_id() -> None:
    """The same iteration and time: the choice does not depend on the order of the answer."""
    a = view("running", task_id="a")
    b = view("running", task_id="b")
    assert latest([a, b]) is b
    assert latest([b, a]) is b


def test_latest_with_a_task_without_a_timestamp() -> None:
    """A task without a timestamp (absent or Go's zero time) is older than one with one."""
    stamped = view("running", iteration=1, timestamp=T_RUN, task_id="a")
    unstamped = view("pending", iteration=1, timestamp=None, task_id="b")
    assert latest([stamped, unstamped]) is stamped


# ==========================================================================================
# details and summary
# ==========================================================================================


def test_details_of_an_unstarted_job_with_a_pending_task() -> None:
    """Made and not started: created, even though Swarm has made its (pending) task."""
    d = details(unstarted_service(), view("pending", iteration=0))
    assert d.status == "created"
    assert not d.running
    assert (d.exit_code, d.error, d.started_at, d.finished_at) == (0, "", None, None)
    assert state_from_details(d) is JobState.QUEUED


def test_details_of_an_unstarted_job_ignores_a_task_that_runs() -> None:
    """Not started is created, whatever a task not yet shut down says (the spec decides)."""
    d = details(unstarted_service(), view("running", iteration=0))
    assert d.status == "created"
    assert not d.running
    assert d.started_at is None


def test_details_of_a_started_job_without_task_yet() -> None:
    """Just started, before the scheduler made its task: still created (queued)."""
    d = details(started_service(), None)
    assert d.status == "created"
    assert state_from_details(d) is JobState.QUEUED


def test_details_of_a_started_job_still_pending() -> None:
    """Started, its task waiting for a node: created."""
    d = details(started_service(), view("pending", iteration=1))
    assert d.status == "created"
    assert d.started_at is None


def test_details_of_a_running_job() -> None:
    """Running: started at the task's time (the task keeps no start time of its own)."""
    d = details(started_service(), view("running", timestamp=T_RUN))
    assert (d.status, d.running) == ("running", True)
    assert d.started_at == RUN
    assert d.finished_at is None
    assert d.exit_code == 0
    assert state_from_details(d) is JobState.RUNNING


def test_details_started_at_argument_wins() -> None:
    """A start time the engine saw itself (its start event) is used over the task's time."""
    seen = datetime(2024, 5, 6, 7, 9, 59, tzinfo=UTC)
    d = details(started_service(), view("running", timestamp=T_END), started_at=seen)
    assert d.started_at == seen


def test_details_of_a_completed_job() -> None:
    """Complete: exited 0, finished at the task's time."""
    d = details(started_service(), view("complete", timestamp=T_END), started_at=RUN)
    assert (d.status, d.running) == ("exited", False)
    assert (d.exit_code, d.error) == (0, "")
    assert (d.started_at, d.finished_at) == (RUN, END)
    assert state_from_details(d) is JobState.DONE


def test_details_of_a_failed_job() -> None:
    """Failed with exit code 3: exited 3, the task's error kept."""
    task = view("failed", timestamp=T_END, exit_code=3, err="task: non-zero exit (3)")
    d = details(started_service(), task, started_at=RUN)
    assert (d.status, d.exit_code, d.error) == ("exited", 3, "task: non-zero exit (3)")
    assert d.finished_at == END
    assert state_from_details(d) is JobState.FAILED


def test_details_of_a_rejected_job() -> None:
    """Rejected: it never ran (no start time, even one given), exited 127 with its error."""
    task = view("rejected", timestamp=T_END, err='invalid mount config for type "bind"')
    d = details(started_service(), task, started_at=RUN)
    assert (d.status, d.exit_code) == ("exited", 127)
    assert d.error == 'invalid mount config for type "bind"'
    assert d.started_at is None
    assert d.finished_at == END
    assert state_from_details(d) is JobState.FAILED


def test_details_of_a_job_terminated_by_stop_update() -> None:
    """Terminated (UNSTARTED back, the run's task shut down): exited 143, not created."""
    service = service_raw(stop_update(started_service()["Spec"]), iteration=2, pin_image=False)
    d = details(service, view("shutdown", timestamp=T_END, err="shutdown"))
    assert (d.status, d.exit_code) == ("exited", 143)
    assert d.finished_at == END
    assert d.started_at == END  # no start seen: the task's time
    assert state_from_details(d) is JobState.FAILED


@pytest.mark.parametrize(
    ("state", "kwargs", "has_error"),
    [
        pytest.param("failed", {"exit_code": 2}, True, id="failed"),
        pytest.param("rejected", {}, True, id="rejected"),
        pytest.param("shutdown", {}, False, id="shutdown"),
        pytest.param("complete", {}, False, id="complete"),
        pytest.param("orphaned", {}, True, id="orphaned"),
        pytest.param("running", {}, False, id="running"),
        pytest.param("pending", {}, False, id="pending"),
    ],
)
def test_details_error_only_where_the_job_failed(
    state: str, kwargs: dict[str, Any], has_error: bool
) -> None:
    """The task's Err is the container's error only where the job failed (rejected, failed,
    orphaned); a shutdown's or a pending task's message is no error of the job's."""
    d = details(started_service(), view(state, err="the task's message", **kwargs))
    assert d.error == ("the task's message" if has_error else "")


def test_details_identity_fields() -> None:
    """Id is the service's, name its NAME_LABEL, created its CreatedAt (nanoseconds cut), the
    image without the digest the daemon pinned, and the container spec's command, user and
    directory; labels are the container's."""
    config = config_for(FULL_TEMPLATE)
    service = started_service(config, name=JOB + HELD_SUFFIX)
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].endswith("@" + DIGEST)
    d = details(service, view("running"))
    assert d.container_id == SERVICE_ID
    assert d.name == JOB + HELD_SUFFIX
    assert d.created == CREATED
    assert d.image == "registry.example.com/team/tool:2.1"
    assert d.cmd == ("/usr/bin/tool", "--in", "/data/in.txt", "--verbose")
    assert d.user == "1000:1000"
    assert d.working_dir == "/scratch"
    assert d.labels == {**config["Labels"], NAME_LABEL: JOB + HELD_SUFFIX}
    assert (d.paused, d.restarting, d.oom_killed, d.dead) == (False, False, False, False)


def test_details_name_follows_a_relabel() -> None:
    """After a rename (relabel) the name is the new one, the service the same."""
    spec = relabel(service_spec(busybox(), JOB + HELD_SUFFIX, started=False), JOB)
    d = details(service_raw(spec), None)
    assert d.name == JOB
    assert state_from_details(d) is JobState.QUEUED


def test_details_of_a_held_job_is_held() -> None:
    """A job made on hold reads QUEUED_HELD through the mapping (its name carries the mark)."""
    d = details(unstarted_service(name=JOB + HELD_SUFFIX), view("pending", iteration=0))
    assert state_from_details(d) is JobState.QUEUED_HELD


def test_details_name_falls_back_to_the_service_name() -> None:
    """A service without NAME_LABEL (not made by aiotracker) is named by its Spec.Name."""
    spec = {"Name": "web", "Labels": {}, "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1"}}}
    service = {"ID": SERVICE_ID, "Spec": spec}
    d = details(service, None)
    assert (d.name, d.image, d.labels, d.created) == ("web", "nginx:1", {}, None)


def test_details_labels_are_the_containers_not_the_updated_services() -> None:
    """Labels an update put on the service (a run label, a rename) are not the job's: the
    labels are those its task containers carry, as made."""
    spec = relabel(service_spec(busybox(), JOB, started=False), JOB + HELD_SUFFIX)
    spec["Labels"]["aiotracker.swarm.run"] = "1"
    made = container_spec(spec)["Labels"]
    d = details(service_raw(spec), None)
    assert d.labels == made
    assert d.labels[NAME_LABEL] == JOB
    assert "aiotracker.swarm.run" not in d.labels
    assert d.name == JOB + HELD_SUFFIX


def test_details_labels_fall_back_to_the_service_labels() -> None:
    """A container spec without labels: the service's labels are the job's."""
    spec = {"Name": "web", "Labels": {"a": "1"}, "TaskTemplate": {"ContainerSpec": {"Image": "x"}}}
    service = {"ID": SERVICE_ID, "Spec": spec}
    assert details(service, None).labels == {"a": "1"}


def test_details_of_a_failed_task_without_container_has_no_start() -> None:
    """A task that failed before its container existed never started, as a rejected one."""
    task = view("failed", container_id="", timestamp=T_END, err="starting container failed")
    d = details(started_service(), task)
    assert (d.status, d.exit_code) == ("exited", 127)
    assert d.started_at is None


def test_orphaned_task_does_not_read_as_success() -> None:
    """Nobody knows how an orphaned task ended: the job must not read as DONE."""
    task = view("orphaned", timestamp=T_END, container_id=CONTAINER_ID)
    service = started_service()
    assert state_from_details(details(service, task)) is not JobState.DONE
    s = summary(service, task)
    assert state_from_summary(s.state, s.status, s.name) is not JobState.DONE


@pytest.mark.parametrize(
    ("service", "task", "state", "status"),
    [
        pytest.param(
            "started", view("failed", exit_code=3, err="task: non-zero exit (3)"),
            "exited", "Exited (3)", id="failed-3",
        ),
        pytest.param("started", view("complete"), "exited", "Exited (0)", id="complete"),
        pytest.param("started", view("rejected"), "exited", "Exited (127)", id="rejected"),
        pytest.param("started", view("running"), "running", "Running", id="running"),
        pytest.param("started", view("pending"), "created", "Created", id="pending"),
        pytest.param("started", None, "created", "Created", id="no-task"),
        pytest.param("unstarted", view("pending", iteration=0), "created", "Created",
                     id="unstarted"),
    ],
)  # fmt: skip
def test_summary(service: str, task: TaskView | None, state: str, status: str) -> None:
    """The list entry says what the inspect says, in Docker's words (its status text parsed
    by the mapping as Docker's is)."""
    raw = started_service() if service == "started" else unstarted_service()
    s = summary(raw, task)
    assert (s.container_id, s.name, s.state, s.status) == (SERVICE_ID, JOB, state, status)
    assert s.labels == details(raw, task).labels
    if state == "exited":
        code = int(status[len("Exited (") : -1])
        expected = JobState.DONE if code == 0 else JobState.FAILED
        assert state_from_summary(s.state, s.status, s.name) is expected


def test_summary_of_a_held_job() -> None:
    """The held mark in the name reaches the list entry, so the mapping reads QUEUED_HELD."""
    s = summary(unstarted_service(name=JOB + HELD_SUFFIX), None)
    assert (s.name, s.state, s.status) == (JOB + HELD_SUFFIX, "created", "Created")
    assert state_from_summary(s.state, s.status, s.name) is JobState.QUEUED_HELD


# ==========================================================================================
# A job's life, through the pure functions only
# ==========================================================================================


def test_life_of_a_job() -> None:
    """Made (queued) -> started (pending, running) -> ended, as the engine would read it."""
    config = busybox(remote_command="/bin/sh", args=["-c", "exit 3"], candidate_machines=["n1"])
    made = service_spec(config, JOB, started=False)
    assert made["TaskTemplate"]["Placement"]["Constraints"] == ["node.hostname==n1", UNSTARTED]
    service = service_raw(made, iteration=0)
    assert state_from_details(details(service, view("pending", iteration=0))) is JobState.QUEUED

    service = service_raw(start_update(service["Spec"]), iteration=1, pin_image=False)
    assert service["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == ["node.hostname==n1"]
    tasks = [view("pending", iteration=0, task_id="t0", timestamp=CREATED_AT),
             view("running", iteration=1, task_id="t1", timestamp=T_RUN)]  # fmt: skip
    d = details(service, latest(tasks))
    assert (state_from_details(d), d.started_at) == (JobState.RUNNING, RUN)

    tasks[1] = view("failed", iteration=1, task_id="t1", timestamp=T_END, exit_code=3,
                    err="task: non-zero exit (3)")  # fmt: skip
    d = details(service, latest(tasks), started_at=RUN)
    assert (state_from_details(d), d.exit_code, d.finished_at) == (JobState.FAILED, 3, END)
    assert d.cmd == ("/bin/sh", "-c", "exit 3")


# ==========================================================================================
# a run's end, a terminate, a rename after the end; nodes
# ==========================================================================================


def test_start_update_with_a_run_records_its_iteration() -> None:
    """The start's update names the iteration it makes, so that readers look at that run."""
    made = service_spec(busybox(), JOB, started=False)
    assert RUN_LABEL not in start_update(made)["Labels"]
    assert start_update(made, 3)["Labels"][RUN_LABEL] == "3"
    assert RUN_LABEL not in made["Labels"]  # not changed in place


def test_stop_update_adds_unstarted_once() -> None:
    """A job stopped twice (terminated, then renamed after its end) has one UNSTARTED."""
    spec = start_update(service_spec(busybox(), JOB, started=False), 1)
    twice = stop_update(stop_update(spec))
    assert twice["TaskTemplate"]["Placement"]["Constraints"].count(UNSTARTED) == 1
    assert not is_started(twice)


def test_a_run_that_ended_reads_as_its_task_after_a_rename() -> None:
    """A job renamed after its end (UNSTARTED back, the next iteration pending for ever) reads
    as its run's task says: exited with its code, its new name, its start kept."""
    service = started_service()
    spec = stop_update(relabel(service["Spec"], JOB + DEADLINE_SUFFIX))
    renamed = {**service, "Spec": spec}
    task = view("failed", exit_code=137, timestamp=T_END)
    d = details(renamed, task)
    assert (d.status, d.exit_code, d.name) == ("exited", 137, JOB + DEADLINE_SUFFIX)
    assert d.started_at is not None
    assert state_from_details(d) is JobState.FAILED


def test_a_terminated_run_whose_task_is_gone_reads_as_killed() -> None:
    """Terminated through the manager (UNSTARTED back), its run's task removed with it: an
    exit by SIGKILL, not a job waiting to start."""
    service = started_service()
    stopped = {**service, "Spec": stop_update(service["Spec"])}
    d = details(stopped, None)
    assert (d.status, d.exit_code) == ("exited", 137)
    assert state_from_details(d) is JobState.FAILED


def test_a_started_job_with_no_task_yet_is_queued() -> None:
    """Just started (the scheduler has made no task yet): created, QUEUED."""
    d = details(started_service(), None)
    assert d.status == "created"
    assert state_from_details(d) is JobState.QUEUED


def test_node_info_as_a_machine() -> None:
    """A node of GET /nodes: its hostname, CPUs (NanoCPUs), memory and platform; it takes
    jobs when ready and active (not down, not drained)."""
    raw = {
        "ID": "2ckisrycpmocuiuyvqenfnvmq",
        "Spec": {"Availability": "active", "Role": "worker"},
        "Description": {
            "Hostname": "aiotracker-n2",
            "Platform": {"Architecture": "x86_64", "OS": "linux"},
            "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 25_000_000_000},
            "Engine": {"EngineVersion": "20.10.24+dfsg1"},
        },
        "Status": {"State": "ready", "Addr": "127.0.0.12"},
    }
    info, up = node_info(raw)
    assert (info.host_name, info.cpus, info.memory_bytes) == ("aiotracker-n2", 2, 25_000_000_000)
    assert (info.architecture, info.os_type, info.version) == ("x86_64", "linux", "20.10.24+dfsg1")
    assert up
    assert not node_info({**raw, "Status": {"State": "down"}})[1]
    assert not node_info({**raw, "Spec": {"Availability": "drain"}})[1]


def test_a_failed_task_whose_container_vanished_is_never_done() -> None:
    """A node back from a crash fails its task "No such container", with no exit code (Go
    omits a zero): how the job ended is unknown, so 255 and FAILED, never DONE."""
    task = view("failed", err="No such container: abc")
    assert task.exit_code == 255
    d = details(started_service(), task)
    assert (d.status, d.exit_code) == ("exited", 255)
    assert state_from_details(d) is JobState.FAILED
