"""Table tests of the pure mapping, with the cases of drmaa2os's convert_test.go ported.

Where aiotracker deliberately differs from drmaa2os the test says so: invalid port specs and
extension values raise ``InvalidArgumentError`` naming the extension (Go drops them silently),
unknown extensions are refused, ``privileged`` takes only true/false, a never-started container
is QUEUED (Go: Undetermined) and an OOM kill is judged by the exit code (Go: always Failed).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import signal
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aiotracker import (
    InvalidArgumentError,
    JobInfo,
    JobState,
    JobTemplate,
)
from aiotracker._config import (
    ArrayTask,
    PortBinding,
    create_config,
    parse_port_spec,
    parse_port_specs,
    validate_image_reference,
)
from aiotracker._engine.base import ContainerDetails
from aiotracker._labels import (
    ARRAY_INDEX_LABEL,
    ARRAY_LABEL,
    ARRAY_MAX_PARALLEL_LABEL,
    ARRAY_SIZE_LABEL,
    AUTO_REMOVE_LABEL,
    HELD_SUFFIX,
    LABEL_FORMAT_VERSION,
    MANAGED_LABEL,
    RESTART_LABEL,
    SESSION_LABEL,
    SUBMISSION_HOST_LABEL,
    SUBMITTER_LABEL,
    TEMPLATE_LABEL,
    TERMINATED_SUFFIX,
    base_name,
    validate_job_name,
)
from aiotracker._mapping import (
    job_info_from_details,
    signal_name,
    state_from_details,
    state_from_event,
    state_from_summary,
    task_indexes,
)
from aiotracker._template_label import (
    decode_template_label,
    encode_template_label,
    parse_go_time,
)

CWD = "/home/user/work"
LOG_CONFIG = {"Type": "local", "Config": {}}
DIGEST = "sha256:" + "0123456789abcdef" * 4
GO_ZERO = "0001-01-01T00:00:00Z"


def config_for(template: JobTemplate, session: str = "s", **kwargs: Any) -> dict[str, Any]:
    return create_config(session, template, cwd=CWD, **kwargs)


def host_config(**extensions: str) -> dict[str, Any]:
    """The HostConfig for a busybox template with the given extensions, without LogConfig."""
    host = config_for(JobTemplate(job_category="busybox", extensions=extensions))["HostConfig"]
    assert host.pop("LogConfig") == LOG_CONFIG
    return dict(host)


def b64(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode("ascii")


def unb64(label: str) -> str:
    return base64.b64decode(label).decode()


# ==========================================================================================
# convert_test.go "Internal helper functions": port specs
# ==========================================================================================

GO_PORT_SPECS = [
    pytest.param(
        "8080/tcp,1301/tcp",
        {
            "8080/tcp": [{"HostIp": "", "HostPort": ""}],
            "1301/tcp": [{"HostIp": "", "HostPort": ""}],
        },
        id="go-two-container-ports",
    ),
    pytest.param(
        "192.168.2.111:80:6444/tcp,192.168.2.11:8080:6445/tcp",
        {
            "6444/tcp": [{"HostIp": "192.168.2.111", "HostPort": "80"}],
            "6445/tcp": [{"HostIp": "192.168.2.11", "HostPort": "8080"}],
        },
        id="go-ip-host-container",
    ),
    pytest.param(
        "80:6444/tcp,8080:6445/tcp",
        {
            "6444/tcp": [{"HostIp": "", "HostPort": "80"}],
            "6445/tcp": [{"HostIp": "", "HostPort": "8080"}],
        },
        id="go-host-container",
    ),
]


@pytest.mark.parametrize(("value", "bindings"), GO_PORT_SPECS)
def test_go_port_specs_give_port_set_and_port_map(
    value: str, bindings: dict[str, list[dict[str, str]]]
) -> None:
    """Go's newPortSet/newPortBindings cases: two exposed ports, each with its binding."""
    exposed, port_map = parse_port_specs(value)
    assert exposed == {key: {} for key in bindings}
    assert port_map == bindings


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("80", [("80/tcp", PortBinding("", ""))], id="container-only"),
        pytest.param("53/udp", [("53/udp", PortBinding("", ""))], id="udp"),
        pytest.param("132/SCTP", [("132/sctp", PortBinding("", ""))], id="proto-any-case"),
        pytest.param("80/", [("80/tcp", PortBinding("", ""))], id="empty-proto-is-tcp"),
        pytest.param(" 8080/tcp ", [("8080/tcp", PortBinding("", ""))], id="spaces-trimmed"),
        pytest.param("8080:80", [("80/tcp", PortBinding("", "8080"))], id="host-container"),
        pytest.param(
            "127.0.0.1::80", [("80/tcp", PortBinding("127.0.0.1", ""))], id="ip-any-host-port"
        ),
        pytest.param(
            "80-81",
            [("80/tcp", PortBinding("", "")), ("81/tcp", PortBinding("", ""))],
            id="container-range",
        ),
        pytest.param(
            "8080-8081:80-81/udp",
            [("80/udp", PortBinding("", "8080")), ("81/udp", PortBinding("", "8081"))],
            id="matching-ranges",
        ),
        pytest.param(
            "8000-8010:80", [("80/tcp", PortBinding("", "8000-8010"))], id="dynamic-host-range"
        ),
        pytest.param(
            "[::1]:80:8080", [("8080/tcp", PortBinding("::1", "80"))], id="bracketed-ipv6"
        ),
        pytest.param("::1:80:8080", [("8080/tcp", PortBinding("::1", "80"))], id="bare-ipv6"),
        pytest.param("1:65535", [("65535/tcp", PortBinding("", "1"))], id="port-bounds"),
    ],
)
def test_valid_port_spec(spec: str, expected: list[tuple[str, PortBinding]]) -> None:
    """A valid `docker run -p` spec gives one (port key, binding) per container port."""
    assert parse_port_spec(spec) == expected


INVALID_PORT_SPECS = [
    pytest.param("808-0/tcp,13+01/tcp", id="go-wrong-syntax"),
    pytest.param("808-0/tcp", id="range-end-below-start"),
    pytest.param("13+01/tcp", id="not-a-number"),
    pytest.param("", id="empty"),
    pytest.param("8080,", id="empty-second-spec"),
    pytest.param("80/icmp", id="unknown-proto"),
    pytest.param("80/tcp/x", id="two-protos"),
    pytest.param("0", id="port-zero"),
    pytest.param("65536", id="port-too-big"),
    pytest.param("123456", id="six-digits"),
    pytest.param("80:", id="no-container-port"),
    pytest.param("abc:80:8080", id="bad-ipv4"),
    pytest.param("300.1.1.1:80:8080", id="ipv4-out-of-range"),
    pytest.param("[zz]:80:8080", id="bad-bracketed-ipv6"),
    pytest.param("80:8080-8081", id="single-host-for-container-range"),
    pytest.param("8000-8001:80-82", id="ranges-of-different-length"),
    pytest.param("\u0668\u0660", id="non-ascii-digits"),
]


@pytest.mark.parametrize("value", INVALID_PORT_SPECS)
def test_invalid_exposed_ports_raise_naming_the_extension(value: str) -> None:
    """An invalid exposedPorts value raises InvalidArgumentError naming it (Go: silently nil)."""
    template = JobTemplate(job_category="busybox", extensions={"exposedPorts": value})
    with pytest.raises(InvalidArgumentError, match=r"^exposedPorts: "):
        config_for(template)


def test_duplicate_container_port_keeps_every_binding() -> None:
    """Two specs for one container port expose it once and bind it twice, in order."""
    exposed, bindings = parse_port_specs("8080:80,9090:80")
    assert exposed == {"80/tcp": {}}
    assert bindings == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "", "HostPort": "9090"}]
    }


# ==========================================================================================
# convert_test.go "JobTemplate missing fields checks" and "JobTemplate convert functions"
# ==========================================================================================


def test_go_template_without_job_category_is_refused() -> None:
    """Go checkJobTemplate({RemoteCommand: /bin/sleep}): no image is an error."""
    with pytest.raises(InvalidArgumentError, match="job_category must name the container image"):
        config_for(JobTemplate(remote_command="/bin/sleep"))


def test_go_template_with_job_category_is_accepted() -> None:
    """Go checkJobTemplate({JobCategory: image/image, RemoteCommand: /bin/sleep}) passes."""
    config = config_for(JobTemplate(job_category="image/image", remote_command="/bin/sleep"))
    assert (config["Image"], config["Cmd"]) == ("image/image", ["/bin/sleep"])


# The shared template of convert_test.go's "JobTemplate convert functions" context. The
# container path is absolute here: Docker refuses a relative bind destination ("inner").
GO_TEMPLATE = JobTemplate(
    remote_command="/bin/sleep",
    args=["123"],
    job_category="my/image",
    working_directory="/working/dir",
    candidate_machines=["hostname"],
    stage_in_files={"./outer": "/inner"},
)


def test_go_convert_the_job_template_settings() -> None:
    """Go case 9: command, image, working dir, hostname, session label and the cwd-based bind."""
    config = config_for(GO_TEMPLATE, session="session")
    assert config["Cmd"] == ["/bin/sleep", "123"]
    assert config["Image"] == "my/image"
    assert config["WorkingDir"] == "/working/dir"
    assert config["Hostname"] == "hostname"
    assert config["Labels"][SESSION_LABEL] == "session"
    assert config["HostConfig"]["Binds"] == [f"{CWD}/outer:/inner"]


def test_go_convert_the_environment_variables() -> None:
    """Go case 10: job_environment becomes Env "k=v" entries (here in the mapping's order)."""
    template = GO_TEMPLATE.replace(job_environment={"env1": "value1", "env2": "value2"})
    assert config_for(template, session="jobsession")["Env"] == ["env1=value1", "env2=value2"]


def test_go_set_the_user_extension() -> None:
    """Go case 11: the user extension sets User, and no ports are exposed."""
    config = config_for(GO_TEMPLATE.replace(extensions={"user": "testuser"}), session="")
    assert config["User"] == "testuser"
    assert "ExposedPorts" not in config
    assert "PortBindings" not in config["HostConfig"]


def test_go_set_the_exposed_ports() -> None:
    """Go case 12: exposedPorts "80:6445/tcp" exposes exactly 6445/tcp."""
    config = config_for(GO_TEMPLATE.replace(extensions={"exposedPorts": "80:6445/tcp"}))
    assert config["ExposedPorts"] == {"6445/tcp": {}}


GO_HOST_EXTENSIONS = {
    "exposedPorts": "80:6445/tcp",
    "restart": "unless-stopped",
    "net": "host",
    "privileged": "true",
    "ipc": "host",
    "uts": "host",
    "pid": "host",
    "ulimit": "memlock=-1,stack=67108864",
    "shm-size": "10g",
}


def test_go_host_config_table() -> None:
    """Go case 13 (without "rm", see below): every host extension lands in HostConfig."""
    assert host_config(**GO_HOST_EXTENSIONS) == {
        "PortBindings": {"6445/tcp": [{"HostIp": "", "HostPort": "80"}]},
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "NetworkMode": "host",
        "Privileged": True,
        "IpcMode": "host",
        "UTSMode": "host",
        "PidMode": "host",
        "Ulimits": [
            {"Name": "memlock", "Soft": -1, "Hard": -1},
            {"Name": "stack", "Soft": 67108864, "Hard": 67108864},
        ],
        "ShmSize": 10 * 1024 * 1024 * 1024,
    }


def test_go_host_config_table_with_rm_is_refused() -> None:
    """Go case 13 as written adds rm=true to restart=unless-stopped, which the engine refuses."""
    template = JobTemplate(job_category="busybox", extensions={**GO_HOST_EXTENSIONS, "rm": "true"})
    with pytest.raises(InvalidArgumentError, match="'rm' cannot be combined with restart"):
        config_for(template)


def test_go_unknown_extension_is_refused() -> None:
    """Go's "some": "extension" is carried along silently; aiotracker refuses unknown names."""
    template = JobTemplate(job_category="alpine", extensions={"some": "extension"})
    with pytest.raises(InvalidArgumentError, match="unknown extension 'some'"):
        config_for(template)


# ==========================================================================================
# create_config
# ==========================================================================================


def test_minimal_template_gives_exactly_this_config() -> None:
    """An image alone gives image, labels, no TTY or attach, and a HostConfig with only logging."""
    label_json = (
        '{"extension":{},"jobCategory":"busybox",'
        f'"startTime":"{GO_ZERO}","deadlineTime":"{GO_ZERO}"}}'
    )
    assert config_for(JobTemplate(job_category="busybox"), session="sess") == {
        "Image": "busybox",
        "Labels": {
            SESSION_LABEL: "sess",
            TEMPLATE_LABEL: b64(label_json),
            MANAGED_LABEL: LABEL_FORMAT_VERSION,
        },
        "Tty": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": {"LogConfig": LOG_CONFIG},
    }


@pytest.mark.parametrize(
    ("remote_command", "args", "cmd"),
    [
        pytest.param("true", (), ["true"], id="command-only"),
        pytest.param("sh", ("-c", "echo $HOME"), ["sh", "-c", "echo $HOME"], id="command-args"),
        pytest.param("", ("--help",), ["--help"], id="args-only-for-entrypoint"),
        pytest.param("", (), None, id="neither-uses-image-cmd"),
        pytest.param("echo", ("",), ["echo", ""], id="empty-arg-kept"),
    ],
)
def test_command_becomes_cmd(
    remote_command: str, args: tuple[str, ...], cmd: list[str] | None
) -> None:
    """remote_command is Cmd[0] and args are Cmd[1:], never wrapped in a shell."""
    config = config_for(
        JobTemplate(job_category="busybox", remote_command=remote_command, args=args)
    )
    assert config.get("Cmd") == cmd


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(JobTemplate(job_category="busybox", remote_command="a\x00b"), id="command"),
        pytest.param(JobTemplate(job_category="busybox", args=["ok", "a\x00"]), id="arg"),
        pytest.param(
            JobTemplate(job_category="busybox", working_directory="/a\x00"), id="working-dir"
        ),
        pytest.param(
            JobTemplate(job_category="busybox", candidate_machines=["h\x00"]), id="hostname"
        ),
    ],
)
def test_nul_bytes_are_refused(template: JobTemplate) -> None:
    """A NUL byte in the command, an argument, the working directory or hostname is refused."""
    with pytest.raises(InvalidArgumentError, match="NUL byte"):
        config_for(template)


def test_non_string_argument_is_refused() -> None:
    """An argument that is not a string (a template built from untyped data) is refused."""
    template = JobTemplate(job_category="busybox", args=["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="command parts must be strings, got 3"):
        config_for(template)


def test_first_candidate_machine_is_the_hostname() -> None:
    """candidate_machines[0] is the container's hostname; the others are ignored."""
    config = config_for(JobTemplate(job_category="busybox", candidate_machines=["a", "b"]))
    assert config["Hostname"] == "a"


@pytest.mark.parametrize("working_directory", ["relative/dir", "./x", "~/x"])
def test_relative_working_directory_is_refused(working_directory: str) -> None:
    """A working directory that is not absolute is refused, naming it."""
    template = JobTemplate(job_category="busybox", working_directory=working_directory)
    with pytest.raises(InvalidArgumentError, match=re.escape(repr(working_directory))):
        config_for(template)


def test_environment_keeps_values_verbatim() -> None:
    """Values may hold '=', spaces and be empty: Env is "key=value" with nothing escaped."""
    env = {"A": "x=y", "B": "", "C": "with space", "D_1": "ü"}
    config = config_for(JobTemplate(job_category="busybox", job_environment=env))
    assert config["Env"] == ["A=x=y", "B=", "C=with space", "D_1=ü"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"A=B": "v"}, "key 'A=B' is empty or has '=' or NUL", id="equals-in-key"),
        pytest.param({"A\x00": "v"}, "key 'A\\x00' is empty or has '=' or NUL", id="nul-in-key"),
        pytest.param({"": "v"}, "key '' is empty or has '=' or NUL", id="empty-key"),
        pytest.param({"A": "v\x00"}, "NUL byte", id="nul-in-value"),
        pytest.param({"A": 1}, "entries must be strings", id="non-string-value"),
    ],
)
def test_invalid_environment_is_refused(env: dict[str, Any], message: str) -> None:
    """Keys with '=' or NUL, an empty key, NUL in a value or a non-string value are refused."""
    template = JobTemplate(job_category="busybox", job_environment=env)
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        config_for(template)


@pytest.mark.parametrize(
    ("stage_in", "binds"),
    [
        pytest.param({"data": "/data"}, [f"{CWD}/data:/data"], id="relative"),
        pytest.param({"./a/b/": "/b"}, [f"{CWD}/a/b:/b"], id="dot-slash-trailing-slash"),
        pytest.param({"../shared": "/s"}, ["/home/user/shared:/s"], id="parent"),
        pytest.param({"/etc/hosts": "/h"}, ["/etc/hosts:/h"], id="absolute"),
        pytest.param(
            {"/x": "/in/x", "y": "/in/y"}, ["/x:/in/x", f"{CWD}/y:/in/y"], id="two-in-order"
        ),
    ],
)
def test_stage_in_files_become_binds(stage_in: dict[str, str], binds: list[str]) -> None:
    """stage_in_files {host: container} become "abs_host:container", relative to cwd."""
    config = config_for(JobTemplate(job_category="busybox", stage_in_files=stage_in))
    assert config["HostConfig"]["Binds"] == binds


@pytest.mark.parametrize(
    ("stage_in", "message"),
    [
        pytest.param(
            {"data": "inner"}, "container path 'inner' must be absolute", id="relative-dst"
        ),
        pytest.param({"a:b": "/x"}, "must not contain ':'", id="colon-in-host"),
        pytest.param({"/a": "/x:ro"}, "must not contain ':'", id="colon-in-container"),
        pytest.param({"": "/x"}, "must not be empty", id="empty-host"),
        pytest.param({"/a": ""}, "must not be empty", id="empty-container"),
        pytest.param({"/a\x00": "/x"}, "NUL byte", id="nul"),
    ],
)
def test_invalid_stage_in_files_are_refused(stage_in: dict[str, str], message: str) -> None:
    """Relative container paths, ':' (Docker's separator), empty paths and NUL are refused."""
    template = JobTemplate(job_category="busybox", stage_in_files=stage_in)
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        config_for(template)


def test_input_path_opens_stdin_once() -> None:
    """An input path asks for an open stdin that closes after the first attach."""
    config = config_for(JobTemplate(job_category="busybox", input_path="/tmp/in"))
    assert (config["OpenStdin"], config["StdinOnce"]) == (True, True)


def test_labels_hold_session_and_decodable_template() -> None:
    """drmaa2_jobsession holds the session and drmaa2jobtemplate decodes back to the template."""
    template = JobTemplate(
        job_category="busybox", remote_command="echo", args=["hi"], extensions={"user": "nobody"}
    )
    labels = config_for(template, session="my-session")["Labels"]
    assert labels[SESSION_LABEL] == "my-session"
    assert decode_template_label(labels[TEMPLATE_LABEL]) == template


def test_caller_labels_are_kept_but_cannot_replace_ours() -> None:
    """Extra labels pass through; the session and template labels always win."""
    template = JobTemplate(job_category="busybox")
    labels = config_for(
        template, session="real", labels={"team": "a", SESSION_LABEL: "fake", TEMPLATE_LABEL: "x"}
    )["Labels"]
    assert (labels["team"], labels[SESSION_LABEL]) == ("a", "real")
    assert labels[TEMPLATE_LABEL] == encode_template_label(template)


def test_submission_host_and_array_labels() -> None:
    """The submission host and an array task's id, index, size and parallelism are labels."""
    config = config_for(
        JobTemplate(job_category="busybox"),
        submission_host="login1",
        array_task=ArrayTask(array_id="arr", index=3, size=10, max_parallel=2),
    )
    labels = config["Labels"]
    assert {k: labels[k] for k in labels if k not in (SESSION_LABEL, TEMPLATE_LABEL)} == {
        MANAGED_LABEL: LABEL_FORMAT_VERSION,
        SUBMISSION_HOST_LABEL: "login1",
        ARRAY_LABEL: "arr",
        ARRAY_INDEX_LABEL: "3",
        ARRAY_SIZE_LABEL: "10",
        ARRAY_MAX_PARALLEL_LABEL: "2",
    }


@pytest.mark.parametrize(
    "key",
    ["Privileged", "NetworkMode", "IpcMode", "PidMode", "UTSMode", "Binds", "AutoRemove",
     "PortBindings", "RestartPolicy", "CapAdd", "Devices", "DeviceRequests"],
)  # fmt: skip
def test_host_options_are_absent_unless_asked_for(key: str) -> None:
    """A full template without extensions or stage-in sets none of the risky host options."""
    template = JobTemplate(
        job_category="busybox",
        remote_command="sh",
        args=["-c", "true"],
        job_environment={"A": "1"},
        working_directory="/tmp",
        candidate_machines=["h"],
        job_name="j",
        output_path="/tmp/out",
    )
    config = config_for(template)
    assert key not in config["HostConfig"]
    assert config["HostConfig"] == {"LogConfig": LOG_CONFIG}


# -- every extension ------------------------------------------------------------------------

VALID_EXTENSIONS = [
    pytest.param("user", "nobody", "User", "nobody", id="user-name"),
    pytest.param("user", "1000:1000", "User", "1000:1000", id="user-uid-gid"),
    pytest.param("user", "app_user:staff", "User", "app_user:staff", id="user-name-group"),
    pytest.param("entrypoint", "/bin/sh -c", "Entrypoint", ["/bin/sh", "-c"], id="entrypoint"),
    pytest.param("entrypoint", " env  -i ", "Entrypoint", ["env", "-i"], id="entrypoint-spaces"),
    pytest.param("exposedPorts", "8080", "ExposedPorts", {"8080/tcp": {}}, id="exposed-ports"),
    pytest.param("net", "host", "NetworkMode", "host", id="net-host"),
    pytest.param("net", "none", "NetworkMode", "none", id="net-none"),
    pytest.param("net", "bridge", "NetworkMode", "bridge", id="net-bridge"),
    pytest.param("net", "my-net_1", "NetworkMode", "my-net_1", id="net-user-defined"),
    pytest.param("net", "container:db", "NetworkMode", "container:db", id="net-container"),
    pytest.param("privileged", "true", "Privileged", True, id="privileged-true"),
    pytest.param("privileged", "TRUE", "Privileged", True, id="privileged-TRUE"),
    pytest.param("privileged", "True", "Privileged", True, id="privileged-True"),
    pytest.param("privileged", "false", "Privileged", False, id="privileged-false"),
    pytest.param("privileged", "FaLsE", "Privileged", False, id="privileged-FaLsE"),
    pytest.param("restart", "no", "RestartPolicy", {"Name": "no", "MaximumRetryCount": 0},
                 id="restart-no"),
    pytest.param("restart", "always", "RestartPolicy",
                 {"Name": "always", "MaximumRetryCount": 0}, id="restart-always"),
    pytest.param("restart", "unless-stopped", "RestartPolicy",
                 {"Name": "unless-stopped", "MaximumRetryCount": 0}, id="restart-unless-stopped"),
    pytest.param("restart", "on-failure", "RestartPolicy",
                 {"Name": "on-failure", "MaximumRetryCount": 0}, id="restart-on-failure"),
    pytest.param("restart", "on-failure:3", "RestartPolicy",
                 {"Name": "on-failure", "MaximumRetryCount": 3}, id="restart-on-failure-3"),
    pytest.param("ipc", "host", "IpcMode", "host", id="ipc-host"),
    pytest.param("ipc", "none", "IpcMode", "none", id="ipc-none"),
    pytest.param("ipc", "private", "IpcMode", "private", id="ipc-private"),
    pytest.param("ipc", "shareable", "IpcMode", "shareable", id="ipc-shareable"),
    pytest.param("ipc", "container:db", "IpcMode", "container:db", id="ipc-container"),
    pytest.param("uts", "host", "UTSMode", "host", id="uts-host"),
    pytest.param("pid", "host", "PidMode", "host", id="pid-host"),
    pytest.param("pid", "container:db", "PidMode", "container:db", id="pid-container"),
    pytest.param("rm", "true", "AutoRemove", True, id="rm-true"),
    pytest.param("rm", "False", "AutoRemove", False, id="rm-false"),
    pytest.param("gpus", "all", "DeviceRequests",
                 [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}], id="gpus-all"),
    pytest.param("gpus", "2", "DeviceRequests",
                 [{"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}], id="gpus-2"),
    pytest.param("shm-size", "512", "ShmSize", 512, id="shm-bytes"),
    pytest.param("shm-size", "512b", "ShmSize", 512, id="shm-b"),
    pytest.param("shm-size", "64k", "ShmSize", 64 * 1024, id="shm-k"),
    pytest.param("shm-size", "64m", "ShmSize", 64 * 1024**2, id="shm-m"),
    pytest.param("shm-size", "64M", "ShmSize", 64 * 1024**2, id="shm-M"),
    pytest.param("shm-size", "1.5g", "ShmSize", 3 * 1024**3 // 2, id="shm-fraction"),
    pytest.param("shm-size", "128MiB", "ShmSize", 128 * 1024**2, id="shm-MiB"),
    pytest.param("shm-size", "2gb", "ShmSize", 2 * 1024**3, id="shm-gb"),
    pytest.param("shm-size", "1 t", "ShmSize", 1024**4, id="shm-space-before-unit"),
    pytest.param("ulimit", "nofile=1024", "Ulimits",
                 [{"Name": "nofile", "Soft": 1024, "Hard": 1024}], id="ulimit-soft-only"),
    pytest.param("ulimit", "nofile=1024:2048,nproc=-1", "Ulimits",
                 [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                  {"Name": "nproc", "Soft": -1, "Hard": -1}], id="ulimit-two"),
    pytest.param("ulimit", "core=100:-1", "Ulimits",
                 [{"Name": "core", "Soft": 100, "Hard": -1}], id="ulimit-unlimited-hard"),
]  # fmt: skip

CONFIG_KEYS = frozenset({"User", "Entrypoint", "ExposedPorts"})


@pytest.mark.parametrize(("name", "value", "key", "expected"), VALID_EXTENSIONS)
def test_valid_extension(name: str, value: str, key: str, expected: object) -> None:
    """Each extension sets exactly its one Docker option, in Config or HostConfig."""
    plain = config_for(JobTemplate(job_category="busybox"))
    config = config_for(JobTemplate(job_category="busybox", extensions={name: value}))
    host, plain_host = config.pop("HostConfig"), plain.pop("HostConfig")
    # Everything else is as without the extension (the template label differs, of course).
    assert {k: host[k] for k in plain_host} == plain_host
    config["Labels"].pop(TEMPLATE_LABEL)
    assert {k: config[k] for k in plain} == {**plain, "Labels": config["Labels"]}
    flags = {}
    if (name, value.lower()) == ("rm", "true"):
        flags[AUTO_REMOVE_LABEL] = "1"
    if name == "restart" and value != "no":
        flags[RESTART_LABEL] = value.partition(":")[0]
    assert config["Labels"] == {
        SESSION_LABEL: "s",
        MANAGED_LABEL: LABEL_FORMAT_VERSION,
        **flags,
    }
    extra_config = {k: v for k, v in config.items() if k not in plain}
    extra_host = {k: v for k, v in host.items() if k not in plain_host}
    extra = {**extra_config, **extra_host}
    if name == "exposedPorts":
        assert extra_host == {"PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": ""}]}}
        extra.pop("PortBindings")
    assert extra == {key: expected}
    assert (key in extra_config) is (key in CONFIG_KEYS)


INVALID_EXTENSIONS = [
    pytest.param("user", "", id="user-empty"),
    pytest.param("user", "bad user", id="user-space"),
    pytest.param("user", "a:b:c", id="user-three-parts"),
    pytest.param("user", "nobody\n", id="user-trailing-newline"),
    pytest.param("user", "nob\x00dy", id="user-nul"),
    pytest.param("exposedPorts", "808-0/tcp", id="ports-bad"),
    pytest.param("entrypoint", "", id="entrypoint-empty"),
    pytest.param("entrypoint", "   ", id="entrypoint-blank"),
    pytest.param("net", "", id="net-empty"),
    pytest.param("net", "bad net", id="net-space"),
    pytest.param("net", "host\n", id="net-trailing-newline"),
    pytest.param("net", "container:", id="net-container-without-name"),
    pytest.param("network-disabled", "yes", id="network-disabled-yes"),
    pytest.param("network-disabled", "", id="network-disabled-empty"),
    pytest.param("ipc", "bogus", id="ipc-unknown"),
    pytest.param("ipc", "", id="ipc-empty"),
    pytest.param("uts", "private", id="uts-private"),
    pytest.param("pid", "private", id="pid-private"),
    pytest.param("privileged", "", id="privileged-empty"),
    pytest.param("privileged", "yes", id="privileged-yes"),
    pytest.param("privileged", "no", id="privileged-no"),
    pytest.param("privileged", "1", id="privileged-1"),
    pytest.param("privileged", "0", id="privileged-0"),
    pytest.param("privileged", " true", id="privileged-leading-space"),
    pytest.param("privileged", "false ", id="privileged-trailing-space"),
    pytest.param("restart", "sometimes", id="restart-unknown"),
    pytest.param("restart", "always:3", id="restart-count-on-always"),
    pytest.param("restart", "on-failure:x", id="restart-count-not-int"),
    pytest.param("restart", "on-failure:-1", id="restart-count-negative"),
    pytest.param("restart", "always\n", id="restart-trailing-newline"),
    pytest.param("rm", "yes", id="rm-yes"),
    pytest.param("rm", "", id="rm-empty"),
    pytest.param("gpus", "0", id="gpus-zero"),
    pytest.param("gpus", "-1", id="gpus-negative"),
    pytest.param("gpus", "two", id="gpus-word"),
    pytest.param("gpus", "1.5", id="gpus-fraction"),
    pytest.param("gpus", "\u00b2", id="gpus-superscript-two"),
    pytest.param("gpus", "ALL", id="gpus-ALL"),
    pytest.param("shm-size", "", id="shm-empty"),
    pytest.param("shm-size", "abc", id="shm-word"),
    pytest.param("shm-size", "10x", id="shm-bad-unit"),
    pytest.param("shm-size", "-1m", id="shm-negative"),
    pytest.param("shm-size", "0", id="shm-zero"),
    pytest.param("shm-size", "512ib", id="shm-ib-without-unit"),
    pytest.param("shm-size", "1mbb", id="shm-unit-too-long"),
    pytest.param("ulimit", "nofile", id="ulimit-no-value"),
    pytest.param("ulimit", "bogus=1", id="ulimit-unknown-name"),
    pytest.param("ulimit", "as=1", id="ulimit-as-disabled"),
    pytest.param("ulimit", "nofile=a", id="ulimit-not-int"),
    pytest.param("ulimit", "nofile=1:2:3", id="ulimit-three-values"),
    pytest.param("ulimit", "nofile=2:1", id="ulimit-soft-above-hard"),
    pytest.param("ulimit", "nofile=-1:100", id="ulimit-unlimited-soft-below-finite-hard"),
    pytest.param("ulimit", "nofile=1,", id="ulimit-empty-second"),
    pytest.param("ulimit", "nofile=\u0661", id="ulimit-non-ascii-digit"),
]


@pytest.mark.parametrize(("name", "value"), INVALID_EXTENSIONS)
def test_invalid_extension_value_raises_naming_the_extension(name: str, value: str) -> None:
    """A bad extension value raises InvalidArgumentError whose message names the extension."""
    template = JobTemplate(job_category="busybox", extensions={name: value})
    with pytest.raises(InvalidArgumentError, match=re.escape(name)):
        config_for(template)


def test_non_string_extension_value_is_refused() -> None:
    """An extension value that is not a string is refused, naming the extension."""
    template = JobTemplate(job_category="busybox", extensions={"rm": True})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="extension 'rm' must be a string, got True"):
        config_for(template)


@pytest.mark.parametrize("name", ["some", "User", "volumes", "memory", ""])
def test_unknown_extension_name_is_refused(name: str) -> None:
    """Extension names are case-sensitive, and a name not in the list is refused by name."""
    template = JobTemplate(job_category="busybox", extensions={name: "x"})
    with pytest.raises(InvalidArgumentError, match=f"^unknown extension {re.escape(repr(name))}"):
        config_for(template)


@pytest.mark.parametrize("restart", ["always", "unless-stopped", "on-failure:2"])
def test_rm_with_a_restart_policy_is_refused(restart: str) -> None:
    """AutoRemove with a restart policy other than "no" is refused before the engine sees it."""
    template = JobTemplate(job_category="busybox", extensions={"rm": "true", "restart": restart})
    with pytest.raises(InvalidArgumentError, match="'rm' cannot be combined"):
        config_for(template)


def test_rm_with_restart_no_is_accepted() -> None:
    """rm=true with restart=no is a valid pair."""
    assert host_config(rm="true", restart="no") == {
        "AutoRemove": True,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    }


def test_privileged_false_is_written_as_false() -> None:
    """privileged=false sets Privileged to False explicitly, never True (Go: only FALSE is off)."""
    assert host_config(privileged="false") == {"Privileged": False}


# ==========================================================================================
# the template label
# ==========================================================================================

FULL_TEMPLATE = JobTemplate(
    remote_command="/bin/sh",
    args=["-c", "echo <&> \u2028 ü"],
    submit_as_hold=True,
    rerunnable=True,
    job_environment={"B": "2", "A": "1"},
    working_directory="/w",
    job_category="registry:5000/team/app:1.0",
    email=["a@example.com", "b@example.com"],
    email_on_started=True,
    email_on_terminated=True,
    job_name="job-1",
    input_path="/in",
    output_path="/out",
    error_path="/err",
    join_files=True,
    reservation_id="r1",
    queue_name="q",
    min_slots=1,
    max_slots=4,
    priority=-5,
    candidate_machines=["h1", "h2"],
    min_phys_memory=1 << 40,
    machine_os="linux",
    machine_arch="x86_64",
    start_time=datetime(2025, 3, 1, 12, 0, 0, 500000, tzinfo=UTC),
    deadline_time=datetime(2025, 3, 2, 8, 30, tzinfo=timezone(timedelta(hours=2))),
    stage_in_files={"/a": "/b"},
    stage_out_files={"/c": "/d"},
    resource_limits={"cpu": "1"},
    accounting_id="acct",
    extensions={"user": "nobody", "rm": "true"},
)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(JobTemplate(), id="empty"),
        pytest.param(JobTemplate(job_category="busybox"), id="image-only"),
        pytest.param(JobTemplate(args=["", " "], job_environment={"E": ""}), id="empty-strings"),
        pytest.param(JobTemplate(job_name='\U0001f600 "quoted" \\'), id="unicode-and-escapes"),
        pytest.param(JobTemplate(start_time=datetime(1, 1, 2, tzinfo=UTC)), id="early-time"),
        pytest.param(FULL_TEMPLATE, id="every-field"),
    ],
)
def test_template_label_round_trip(template: JobTemplate) -> None:
    """Encoding a template as a label and decoding it gives an equal template."""
    assert decode_template_label(encode_template_label(template)) == template


def test_label_matches_the_go_worked_example() -> None:
    """The label of the notes' worked example is byte for byte the one drmaa2os writes."""
    template = JobTemplate(
        remote_command="sh",
        args=["-c", "echo hi"],
        job_category="busybox:latest",
        job_environment={"A": "1"},
        extensions={"user": "nobody"},
    )
    assert encode_template_label(template) == (
        "eyJleHRlbnNpb24iOnsiZXh0ZW5zaW9uTGlzdCI6eyJ1c2VyIjoibm9ib2R5In19LCJyZW1vdGVDb21tYW5kIjoic2"
        "giLCJhcmdzIjpbIi1jIiwiZWNobyBoaSJdLCJqb2JFbnZpcm9ubWVudCI6eyJBIjoiMSJ9LCJqb2JDYXRlZ29yeSI6"
        "ImJ1c3lib3g6bGF0ZXN0Iiwic3RhcnRUaW1lIjoiMDAwMS0wMS0wMVQwMDowMDowMFoiLCJkZWFkbGluZVRpbWUiOi"
        "IwMDAxLTAxLTAxVDAwOjAwOjAwWiJ9"
    )


def test_label_without_extensions_writes_an_empty_extension_object() -> None:
    """Like Go, a template without extensions still writes "extension":{} and both zero times."""
    template = JobTemplate(remote_command="/bin/sleep", args=["1"], job_category="alpine")
    assert unb64(encode_template_label(template)) == (
        '{"extension":{},"remoteCommand":"/bin/sleep","args":["1"],"jobCategory":"alpine",'
        f'"startTime":"{GO_ZERO}","deadlineTime":"{GO_ZERO}"}}'
    )


def test_label_escapes_html_characters_as_go_does() -> None:
    """<, >, & and U+2028/9 are written as \\u escapes, as json.Marshal does; the rest raw."""
    template = JobTemplate(remote_command="a<b>&c\u2028\u2029ü")
    text = unb64(encode_template_label(template))
    assert '"remoteCommand":"a\\u003cb\\u003e\\u0026c\\u2028\\u2029ü"' in text


def test_label_writes_times_as_go_does() -> None:
    """Times are UTC with "Z" and no trailing zeros in the fraction, as RFC3339Nano."""
    template = JobTemplate(
        start_time=datetime(2025, 3, 1, 12, 0, 0, 500000, tzinfo=UTC),
        deadline_time=datetime(2025, 3, 2, 8, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    data = json.loads(unb64(encode_template_label(template)))
    assert (data["startTime"], data["deadlineTime"]) == (
        "2025-03-01T12:00:00.5Z",
        "2025-03-02T06:30:00Z",
    )


def test_label_refuses_a_naive_time() -> None:
    """A start time without a time zone cannot be written as RFC 3339 and is refused."""
    with pytest.raises(InvalidArgumentError, match="has no time zone"):
        encode_template_label(JobTemplate(start_time=datetime(2025, 1, 1)))


def test_decode_a_label_made_by_go() -> None:
    """A label built the way drmaa2os builds it decodes to the matching template."""
    go_json = {
        "extension": {"extensionList": {"user": "nobody", "exposedPorts": "8080/tcp"}},
        "remoteCommand": "/bin/sleep",
        "args": ["123"],
        "submitAsHold": True,
        "reRunnable": True,
        "jobEnvironment": {"test": "value"},
        "jobCategory": "alpine",
        "jobName": "go-job",
        "reservationID": "res-1",
        "minSlots": 2,
        "candidateMachines": ["hostname"],
        "minPhysMemory": 1024,
        "startTime": GO_ZERO,
        "deadlineTime": "2025-03-01T12:00:00.123456789+01:00",
        "stageInFiles": {"README.md": "/README.md"},
        "accountingString": "acct-7",
        "someFutureField": {"ignored": True},
    }
    label = b64(json.dumps(go_json, separators=(",", ":")))
    assert decode_template_label(label) == JobTemplate(
        extensions={"user": "nobody", "exposedPorts": "8080/tcp"},
        remote_command="/bin/sleep",
        args=["123"],
        submit_as_hold=True,
        rerunnable=True,
        job_environment={"test": "value"},
        job_category="alpine",
        job_name="go-job",
        reservation_id="res-1",
        min_slots=2,
        candidate_machines=["hostname"],
        min_phys_memory=1024,
        start_time=None,
        deadline_time=datetime(2025, 3, 1, 11, 0, 0, 123456, tzinfo=UTC),
        stage_in_files={"README.md": "/README.md"},
        accounting_id="acct-7",
    )


def test_decode_go_json_test_case_with_unset_times() -> None:
    """drmaa2interface's json_test: no time keys decode as unset times, extensions kept."""
    raw = (
        '{"extension":{"extensionList":{"foo":"bar"}},'
        '"remoteCommand":"echo","args":["hello","world"]}'
    )
    assert decode_template_label(b64(raw)) == JobTemplate(
        remote_command="echo", args=["hello", "world"], extensions={"foo": "bar"}
    )


def test_decode_treats_null_as_unset() -> None:
    """JSON null for a list, map or the extension object reads as unset."""
    raw = '{"args":null,"jobEnvironment":null,"extension":null,"jobName":"n"}'
    assert decode_template_label(b64(raw)) == JobTemplate(job_name="n")


@pytest.mark.parametrize(
    "label",
    [
        pytest.param("not base64!", id="not-base64"),
        pytest.param("eyJh", id="truncated-base64"),
        pytest.param(b64("[1, 2]"), id="json-array"),
        pytest.param(b64('"text"'), id="json-string"),
        pytest.param(b64("not json"), id="not-json"),
        pytest.param(base64.b64encode(b"\xff\xfe{}").decode(), id="not-utf8"),
        pytest.param("é", id="non-ascii-label"),
        pytest.param(b64('{"args":5}'), id="args-number"),
        pytest.param(b64('{"args":[1]}'), id="args-of-numbers"),
        pytest.param(b64('{"args":"x"}'), id="args-string"),
        pytest.param(b64('{"jobEnvironment":[1,2]}'), id="env-list"),
        pytest.param(b64('{"jobEnvironment":{"A":1}}'), id="env-number-value"),
        pytest.param(b64('{"remoteCommand":7}'), id="command-number"),
        pytest.param(b64('{"minSlots":"1"}'), id="int-as-string"),
        pytest.param(b64('{"minSlots":1.5}'), id="int-as-float"),
        pytest.param(b64('{"minSlots":true}'), id="int-as-bool"),
        pytest.param(b64('{"submitAsHold":"true"}'), id="bool-as-string"),
        pytest.param(b64('{"startTime":5}'), id="time-number"),
        pytest.param(b64('{"startTime":"yesterday"}'), id="time-text"),
        pytest.param(b64('{"startTime":"2025-02-30T00:00:00Z"}'), id="time-no-such-day"),
        pytest.param(b64('{"extension":"x"}'), id="extension-string"),
        pytest.param(b64('{"extension":{"extensionList":["a"]}}'), id="extension-list"),
        pytest.param(b64('{"extension":{"extensionList":{"a":1}}}'), id="extension-number"),
    ],
)
def test_garbage_label_raises_invalid_argument(label: str) -> None:
    """A label that is not base64 of a well-typed template object raises InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="job template label"):
        decode_template_label(label)


# -- Go times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(GO_ZERO, None, id="go-zero"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
        pytest.param("2015-01-06T15:47:32Z", datetime(2015, 1, 6, 15, 47, 32, tzinfo=UTC),
                     id="whole-seconds"),
        pytest.param("2015-01-06T15:47:32.080254511Z",
                     datetime(2015, 1, 6, 15, 47, 32, 80254, tzinfo=UTC), id="nanoseconds-cut"),
        pytest.param("2015-01-06T15:47:32.5Z",
                     datetime(2015, 1, 6, 15, 47, 32, 500000, tzinfo=UTC), id="short-fraction"),
        pytest.param("2015-01-06T17:47:32+02:00", datetime(2015, 1, 6, 15, 47, 32, tzinfo=UTC),
                     id="offset"),
    ],
)  # fmt: skip
def test_parse_go_time(text: str | None, expected: datetime | None) -> None:
    """Docker's RFC 3339 nano times parse to aware UTC datetimes; the zero time is None."""
    parsed = parse_go_time(text)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    ["2015-01-06", "2015-01-06T15:47:32", "2015-01-06 15:47:32Z", "2015-13-01T00:00:00Z",
     "2015-01-06T15:47:32Z\n", "2015-01-06T25:00:00Z"],
    ids=["date-only", "no-zone", "space", "month-13", "trailing-newline", "hour-25"],
)  # fmt: skip
def test_parse_go_time_refuses_malformed_text(text: str) -> None:
    """Text that is not an RFC 3339 time raises InvalidArgumentError naming it."""
    with pytest.raises(InvalidArgumentError, match="cannot parse time"):
        parse_go_time(text)


# ==========================================================================================
# container state -> JobState (convert_test.go "JobState converter", adapted)
# ==========================================================================================

CREATED = datetime(2015, 1, 6, 15, 47, 31, 485331, tzinfo=UTC)
STARTED = datetime(2015, 1, 6, 15, 47, 32, 72697, tzinfo=UTC)
FINISHED = datetime(2015, 1, 6, 15, 47, 32, 80254, tzinfo=UTC)

BASE = ContainerDetails(
    container_id="jobid",
    name="job",
    status="exited",
    running=False,
    paused=False,
    restarting=False,
    oom_killed=False,
    dead=False,
    exit_code=0,
    error="",
    created=CREATED,
    started_at=STARTED,
    finished_at=FINISHED,
    labels={},
)


def details(**changes: Any) -> ContainerDetails:
    return dataclasses.replace(BASE, **changes)


# Go's table with the Status Docker really reports; Go leaves Status "" in most rows.
STATE_TABLE = [
    pytest.param(details(status="exited", oom_killed=True, exit_code=137), JobState.FAILED,
                 id="go-killed-oom-nonzero"),
    pytest.param(details(status="exited", oom_killed=True, exit_code=0), JobState.DONE,
                 id="go-killed-oom-zero-is-done"),
    pytest.param(details(status="dead", dead=True, exit_code=1), JobState.FAILED, id="go-dead"),
    pytest.param(details(status="exited", dead=True, exit_code=0), JobState.DONE, id="go-exit0"),
    pytest.param(details(status="exited", dead=True, exit_code=1), JobState.FAILED, id="go-exit1"),
    pytest.param(details(status="paused", paused=True, running=True), JobState.SUSPENDED,
                 id="go-paused"),
    pytest.param(details(status="restarting", running=True, restarting=True), JobState.QUEUED,
                 id="go-restarting"),
    pytest.param(details(status="running", running=True), JobState.RUNNING, id="go-running"),
    pytest.param(details(status="dead", dead=True, exit_code=0), JobState.DONE, id="dead-exit0"),
    pytest.param(details(status="exited", exit_code=2), JobState.FAILED, id="exited-2"),
    pytest.param(details(status="removing", exit_code=0), JobState.DONE, id="removing-0"),
    pytest.param(details(status="removing", exit_code=3), JobState.FAILED, id="removing-3"),
    pytest.param(details(status="created", started_at=None), JobState.QUEUED, id="created"),
    pytest.param(details(status="created", name=f"job{HELD_SUFFIX}"), JobState.QUEUED_HELD,
                 id="created-held"),
    pytest.param(details(status="created", error="exec: not found", exit_code=127),
                 JobState.FAILED, id="created-start-failed"),
    pytest.param(details(status="created", name=f"job{TERMINATED_SUFFIX}"), JobState.FAILED,
                 id="created-terminated"),
    pytest.param(details(status="", exit_code=0), JobState.UNDETERMINED, id="all-false"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "state"), STATE_TABLE)
def test_state_from_details(record: ContainerDetails, state: JobState) -> None:
    """An inspect maps to the DRMAA2 state of the issue's table."""
    assert state_from_details(record) is state


@pytest.mark.parametrize(
    ("state", "status", "name", "expected"),
    [
        pytest.param("created", "Created", "job", None, id="created-needs-inspect"),
        pytest.param("created", "Created", f"/job{HELD_SUFFIX}", JobState.QUEUED_HELD,
                     id="created-held"),
        pytest.param("created", "Created", f"job{TERMINATED_SUFFIX}", JobState.FAILED,
                     id="created-terminated"),
        pytest.param("exited", "Exited (0) 2 seconds ago", "job", JobState.DONE, id="exited-0"),
        pytest.param("exited", "Exited (137) 1 minute ago", "job", JobState.FAILED,
                     id="exited-137"),
        pytest.param("exited", "Exited (-1) 1 minute ago", "job", JobState.FAILED,
                     id="exited-negative"),
        pytest.param("exited", "weird text", "job", None, id="exited-unreadable"),
        pytest.param("running", "Up 3 seconds", "job", JobState.RUNNING, id="running"),
        pytest.param("paused", "Up 3 seconds (Paused)", "job", JobState.SUSPENDED, id="paused"),
        pytest.param("restarting", "Restarting (1) 1 second ago", "job", JobState.QUEUED,
                     id="restarting"),
        pytest.param("dead", "Dead", "job", None, id="dead-needs-inspect"),
        pytest.param("removing", "Removal In Progress", "job", None, id="removing"),
        pytest.param("bogus", "", "job", None, id="unknown"),
    ],
)  # fmt: skip
def test_state_from_summary(state: str, status: str, name: str, expected: JobState | None) -> None:
    """A list entry gives a state where it can, and None where only an inspect can tell."""
    assert state_from_summary(state, status, name) is expected


@pytest.mark.parametrize(
    ("action", "name", "expected"),
    [
        pytest.param("start", "job", JobState.RUNNING, id="start"),
        pytest.param("unpause", "job", JobState.RUNNING, id="unpause"),
        pytest.param("pause", "job", JobState.SUSPENDED, id="pause"),
        pytest.param("create", "job", JobState.QUEUED, id="create"),
        pytest.param("create", f"job{HELD_SUFFIX}", JobState.QUEUED_HELD, id="create-held"),
        pytest.param("create", f"/job{HELD_SUFFIX}", JobState.QUEUED_HELD, id="create-slash"),
        pytest.param("rename", "job", JobState.QUEUED, id="rename-released"),
        pytest.param("rename", f"job{HELD_SUFFIX}", JobState.QUEUED_HELD, id="rename-held"),
        pytest.param("rename", f"job{TERMINATED_SUFFIX}", JobState.FAILED, id="rename-terminated"),
        pytest.param("die", "job", None, id="die-needs-inspect"),
        pytest.param("kill", "job", None, id="kill"),
        pytest.param("oom", "job", None, id="oom"),
        pytest.param("destroy", "job", None, id="destroy"),
        pytest.param("attach", "job", None, id="attach"),
        pytest.param("exec_start: sh", "job", None, id="exec"),
    ],
)
def test_state_from_event(action: str, name: str, expected: JobState | None) -> None:
    """An event implies a state on its own only for start, (un)pause, create and rename."""
    assert state_from_event(action, name) is expected


# ==========================================================================================
# inspect -> JobInfo (convert_test.go "Container to JobInfo")
# ==========================================================================================

NOW = datetime(2015, 1, 6, 16, 0, 0, tzinfo=UTC)


def info_for(
    record: ContainerDetails, engine_host: str = "engine", cpu_ns: int | None = None
) -> JobInfo:
    return job_info_from_details(record, engine_host=engine_host, now=NOW, cpu_ns=cpu_ns)


def test_go_convert_basic_information() -> None:
    """Go case 15: id, state FAILED, exit 13 and the three times, checked field by field."""
    record = details(
        status="exited",
        exit_code=13,
        created=parse_go_time("2015-01-06T15:47:31.485331387Z"),
        started_at=parse_go_time("2015-01-06T15:47:32.072697474Z"),
        finished_at=parse_go_time("2015-01-06T15:47:32.080254511Z"),
        hostname="hostname",
    )
    assert info_for(record, engine_host="dockerhost") == JobInfo(
        job_id="jobid",
        job_name="job",
        exit_status=13,
        terminating_signal="",
        annotation="",
        state=JobState.FAILED,
        sub_state="exited",
        allocated_machines=("dockerhost",),
        submission_machine="",
        job_owner="",
        slots=1,
        queue_name="",
        wallclock_time=timedelta(microseconds=80254 - 72697),
        cpu_time=None,
        submission_time=datetime(2015, 1, 6, 15, 47, 31, 485331, tzinfo=UTC),
        dispatch_time=datetime(2015, 1, 6, 15, 47, 32, 72697, tzinfo=UTC),
        finish_time=datetime(2015, 1, 6, 15, 47, 32, 80254, tzinfo=UTC),
        extensions={
            "workingdir": "",
            "commandline": "",
            "category": "",
            "hostname": "hostname",
            "user": "",
        },
    )


@pytest.mark.parametrize(
    ("record", "state", "exit_status", "signal_text"),
    [
        pytest.param(details(exit_code=0), JobState.DONE, 0, "", id="done"),
        pytest.param(details(exit_code=1), JobState.FAILED, 1, "", id="failed-1"),
        pytest.param(details(exit_code=128), JobState.FAILED, 128, "", id="exit-128"),
        pytest.param(details(exit_code=129), JobState.FAILED, 129, "SIGHUP", id="sighup"),
        pytest.param(details(exit_code=137), JobState.FAILED, 137, "SIGKILL", id="sigkill"),
        pytest.param(details(exit_code=143), JobState.FAILED, 143, "SIGTERM", id="sigterm"),
        pytest.param(details(exit_code=138), JobState.FAILED, 138, "SIGUSR1", id="linux-usr1"),
        pytest.param(details(exit_code=255), JobState.FAILED, 255, "", id="exit-255-no-signal"),
        pytest.param(details(status="running", running=True, exit_code=0), JobState.RUNNING,
                     None, "", id="running-has-no-exit-status"),
        pytest.param(details(status="created", started_at=None, finished_at=None),
                     JobState.QUEUED, None, "", id="queued-has-no-exit-status"),
        pytest.param(details(status="created", name=f"job{TERMINATED_SUFFIX}", started_at=None,
                             finished_at=None, exit_code=0),
                     JobState.FAILED, None, "", id="terminated-before-start"),
        pytest.param(details(status="created", error="exec failed", exit_code=127),
                     JobState.FAILED, 127, "", id="start-failed"),
    ],
)  # fmt: skip
def test_job_info_exit_status_and_signal(
    record: ContainerDetails, state: JobState, exit_status: int | None, signal_text: str
) -> None:
    """The exit status is set once the job ended, and 128+n names Linux signal n."""
    info = info_for(record)
    assert (info.state, info.exit_status, info.terminating_signal) == (
        state,
        exit_status,
        signal_text,
    )


@pytest.mark.parametrize(
    ("record", "annotation"),
    [
        pytest.param(details(exit_code=0), "", id="plain"),
        pytest.param(details(oom_killed=True, exit_code=0),
                     "an OOM kill happened in the job's cgroup, but the job exited 0",
                     id="oom-but-exit-0"),
        pytest.param(details(oom_killed=True, exit_code=137), "killed by the OOM killer",
                     id="oom-killed"),
        pytest.param(details(status="created", error="exec: \"nope\": not found", exit_code=127),
                     'exec: "nope": not found', id="start-error"),
        pytest.param(details(status="created", name=f"j{TERMINATED_SUFFIX}", started_at=None),
                     "terminated before it started", id="terminated-before-start"),
    ],
)  # fmt: skip
def test_job_info_annotation(record: ContainerDetails, annotation: str) -> None:
    """The annotation explains OOM kills, start errors and jobs terminated before they ran."""
    assert info_for(record).annotation == annotation


def test_job_info_oom_with_exit_0_is_done() -> None:
    """An OOM kill in the cgroup with exit status 0 is DONE, with the OOM in the annotation."""
    info = info_for(details(oom_killed=True, exit_code=0))
    assert (info.state, info.exit_status) == (JobState.DONE, 0)
    assert "OOM" in info.annotation


@pytest.mark.parametrize(
    ("record", "wallclock", "finish_time"),
    [
        pytest.param(details(started_at=STARTED, finished_at=STARTED + timedelta(seconds=5)),
                     timedelta(seconds=5), STARTED + timedelta(seconds=5), id="finished"),
        pytest.param(details(status="running", running=True, started_at=STARTED,
                             finished_at=None),
                     NOW - STARTED, None, id="running-counts-to-now"),
        pytest.param(details(status="paused", running=True, paused=True, started_at=STARTED,
                             finished_at=FINISHED),
                     NOW - STARTED, None, id="previous-finish-ignored-while-active"),
        pytest.param(details(started_at=STARTED, finished_at=STARTED - timedelta(seconds=1)),
                     timedelta(0), STARTED - timedelta(seconds=1),
                     id="start-returned-after-exit-is-dispatched-at-finish"),
        pytest.param(details(started_at=STARTED, finished_at=None), None, None,
                     id="ended-without-finish-time"),
        pytest.param(details(status="created", started_at=None, finished_at=None), None, None,
                     id="never-started"),
    ],
)  # fmt: skip
def test_job_info_times(
    record: ContainerDetails, wallclock: timedelta | None, finish_time: datetime | None
) -> None:
    """Wallclock runs from dispatch to finish (or to now while running); finish only once
    ended; a dispatch is never after the finish (StartedAt can be set after a short job exited)."""
    info = info_for(record)
    assert (info.wallclock_time, info.finish_time) == (wallclock, finish_time)
    dispatch = record.started_at
    if dispatch is not None and finish_time is not None:
        dispatch = min(dispatch, finish_time)
    assert (info.submission_time, info.dispatch_time) == (CREATED, dispatch)


@pytest.mark.parametrize(
    ("name", "labels", "job_name"),
    [
        pytest.param("job", {TEMPLATE_LABEL: encode_template_label(JobTemplate(job_name="tpl"))},
                     "tpl", id="from-template"),
        pytest.param(f"/held{HELD_SUFFIX}", {}, "held", id="container-name-without-mark"),
        pytest.param("c", {TEMPLATE_LABEL: encode_template_label(JobTemplate())}, "c",
                     id="template-without-name"),
        pytest.param("c", {TEMPLATE_LABEL: "garbage!"}, "c", id="garbage-label"),
    ],
)  # fmt: skip
def test_job_info_job_name(name: str, labels: Mapping[str, str], job_name: str) -> None:
    """The job name is the template's, else the container name without aiotracker's marks."""
    assert info_for(details(name=name, labels=labels)).job_name == job_name


def test_job_info_owner_machines_and_extensions() -> None:
    """The owner is who submitted (a label); the submission host, engine host and drmaa2os's
    extension keys come from inspect, with the container's user as an extension."""
    record = details(
        user="nobody",
        labels={SUBMISSION_HOST_LABEL: "login1", SUBMITTER_LABEL: "alice"},
        working_dir="/w",
        cmd=("sh", "-c", "echo hi"),
        image="busybox:latest",
        hostname="box",
    )
    info = info_for(record, engine_host="")
    assert (info.job_owner, info.submission_machine, info.allocated_machines) == (
        "alice",
        "login1",
        (),
    )
    assert info.extensions == {
        "workingdir": "/w",
        "commandline": "sh -c echo hi",
        "category": "busybox:latest",
        "hostname": "box",
        "user": "nobody",
    }


@pytest.mark.parametrize(
    ("record", "state", "exit_status", "dispatch"),
    [
        pytest.param(details(status="removing", started_at=None, finished_at=None, exit_code=0),
                     JobState.FAILED, None, None, id="removing-never-ran"),
        pytest.param(details(status="restarting", running=True, restarting=True, exit_code=1,
                             started_at=STARTED, finished_at=FINISHED),
                     JobState.QUEUED, None, None, id="restarting-shows-no-previous-run"),
    ],
)  # fmt: skip
def test_job_info_of_runs_that_are_not_the_current_one(
    record: ContainerDetails, state: JobState, exit_status: int | None, dispatch: datetime | None
) -> None:
    """A container that never ran is FAILED with no exit status; one a restart policy is about
    to run again shows nothing of its previous run."""
    info = info_for(record)
    assert (info.state, info.exit_status, info.dispatch_time) == (state, exit_status, dispatch)
    assert (info.finish_time, info.wallclock_time) == (None, None)


def test_job_info_round_trips_through_a_dict() -> None:
    """to_dict is JSON-ready (ISO 8601 times, seconds, the state's value); from_dict inverts it."""
    info = info_for(details(labels={SUBMITTER_LABEL: "alice"}), cpu_ns=1_500_000_000)
    data = info.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["state"] == "done"
    assert data["cpu_time"] == 1.5
    assert data["dispatch_time"] == STARTED.isoformat()
    assert JobInfo.from_dict(data) == info


# ==========================================================================================
# signals, array indexes, names and image references
# ==========================================================================================


@pytest.mark.parametrize(
    ("number", "name"),
    [(1, "SIGHUP"), (9, "SIGKILL"), (10, "SIGUSR1"), (15, "SIGTERM"), (17, "SIGCHLD"),
     (31, "SIGSYS"), (34, "SIGRTMIN"), (35, "SIGRTMIN+1"), (64, "SIGRTMIN+30"),
     (0, ""), (32, ""), (33, ""), (65, ""), (127, ""), (-1, "")],
    ids=str,
)  # fmt: skip
def test_signal_name(number: int, name: str) -> None:
    """Signal numbers are named as on Linux; numbers no signal has give ""."""
    assert signal_name(number) == name


@pytest.mark.skipif(sys.platform != "linux", reason="compares with the host's Linux numbering")
def test_signal_names_agree_with_linux() -> None:
    """On Linux the fixed table names signals 1-31 exactly as the signal module does."""
    assert [signal_name(n) for n in range(1, 32)] == [signal.Signals(n).name for n in range(1, 32)]


@pytest.mark.parametrize(
    ("begin", "end", "step", "indexes"),
    [
        pytest.param(1, 10, 1, list(range(1, 11)), id="one-to-ten"),
        pytest.param(1, 10, 3, [1, 4, 7, 10], id="step-hits-end"),
        pytest.param(2, 9, 4, [2, 6], id="step-overshoots-end"),
        pytest.param(5, 5, 1, [5], id="single"),
        pytest.param(3, 4, 100, [3], id="step-beyond-end"),
    ],
)
def test_task_indexes(begin: int, end: int, step: int, indexes: list[int]) -> None:
    """Indexes run from begin by step up to and including end."""
    assert list(task_indexes(begin, end, step)) == indexes


@pytest.mark.parametrize(
    ("begin", "end", "step", "message"),
    [
        pytest.param(5, 4, 1, r"end \(4\) must not be below begin \(5\)", id="begin-above-end"),
        pytest.param(1, 10, 0, "step must be >= 1, got 0", id="step-zero"),
        pytest.param(1, 10, -1, "step must be >= 1, got -1", id="step-negative"),
        pytest.param(0, 10, 1, "begin must be >= 1", id="begin-zero"),
        pytest.param(-3, 10, 1, "begin must be >= 1", id="begin-negative"),
        pytest.param(1.0, 10, 1, "begin must be an int, got 1.0", id="begin-float"),
        pytest.param(1, "10", 1, "end must be an int, got '10'", id="end-string"),
        pytest.param(1, 10, True, "step must be an int, got True", id="step-bool"),
        pytest.param(1, None, 1, "end must be an int, got None", id="end-none"),
    ],
)
def test_task_indexes_refuses_bad_bounds(begin: Any, end: Any, step: Any, message: str) -> None:
    """Bounds that are not ints, begin below 1, end below begin or a step below 1 are refused."""
    with pytest.raises(InvalidArgumentError, match=message):
        task_indexes(begin, end, step)


VALID_IMAGES = [
    "busybox",
    "busybox:latest",
    "busybox:1.36.1-musl",
    "library/busybox",
    "docker.io/library/busybox:latest",
    "my/image",
    "image/image",
    "my_app",
    "a__b",
    "a-b--c.d",
    "localhost/app",
    "localhost:5000/team/app:v1",
    "Registry.Example.com/team/app",
    f"registry.example.com:5000/team/sub/app:1.2.3@{DIGEST}",
    f"busybox@{DIGEST}",
    "0123456789abcdef" * 4,
    "sha256:" + "0123456789abcdef" * 4,
    "x:" + "t" * 128,
    "a" * 255 + ":tag",
]


@pytest.mark.parametrize("image", VALID_IMAGES, ids=lambda s: s if len(s) < 60 else s[:57] + "...")
def test_valid_image_reference(image: str) -> None:
    """Docker image references (registry, port, path, tag, digest) and image ids are accepted."""
    validate_image_reference(image)  # raises if refused


INVALID_IMAGES = [
    pytest.param("Busybox", id="uppercase-path"),
    pytest.param("busybox:", id="empty-tag"),
    pytest.param(":latest", id="no-name"),
    pytest.param("busybox:lätest", id="non-ascii-tag"),
    pytest.param("büsybox", id="non-ascii-name"),
    pytest.param("busybox\n", id="trailing-newline"),
    pytest.param("busybox latest", id="space"),
    pytest.param("-busybox", id="leading-dash"),
    pytest.param("busybox/", id="trailing-slash"),
    pytest.param("a//b", id="empty-component"),
    pytest.param("busybox@sha256:abc", id="short-digest"),
    pytest.param("busybox@" + "0" * 64, id="digest-without-algorithm"),
    pytest.param("http://registry/x", id="url"),
    pytest.param("x:" + "t" * 129, id="tag-too-long"),
    pytest.param("busybox:la:test", id="two-tags"),
    pytest.param(".busybox", id="leading-dot"),
    pytest.param("a" * 256, id="name-too-long"),
    pytest.param("busybox\x00", id="nul"),
]


@pytest.mark.parametrize("image", INVALID_IMAGES)
def test_invalid_image_reference(image: str) -> None:
    """A malformed image reference is refused, naming the reference."""
    with pytest.raises(InvalidArgumentError, match="is not a valid image reference"):
        validate_image_reference(image)


def test_empty_image_reference() -> None:
    """An empty job category is refused with a message saying it must name the image."""
    with pytest.raises(InvalidArgumentError, match="job_category must name the container image"):
        validate_image_reference("")


@pytest.mark.parametrize("name", ["job", "a.b_c-1", "0"])
def test_valid_job_name(name: str) -> None:
    """Names that Docker accepts as container names are valid job names."""
    validate_job_name(name)  # raises if refused


@pytest.mark.parametrize(
    "name",
    ["", "-x", ".x", "a b", "a/b", "job\n", "jöb", f"x{HELD_SUFFIX}", f"x{TERMINATED_SUFFIX}"],
    ids=["empty", "dash", "dot", "space", "slash", "newline", "non-ascii", "held", "terminated"],
)
def test_invalid_job_name(name: str) -> None:
    """Names Docker refuses, and names ending in aiotracker's marks, are invalid."""
    with pytest.raises(InvalidArgumentError, match="job_name"):
        validate_job_name(name)


@pytest.mark.parametrize(
    ("name", "base"),
    [("job", "job"), ("/job", "job"), (f"/job{HELD_SUFFIX}", "job"),
     (f"job{TERMINATED_SUFFIX}", "job"), (f"job{HELD_SUFFIX}{TERMINATED_SUFFIX}",
                                          f"job{HELD_SUFFIX}")],
    ids=["plain", "slash", "held", "terminated", "only-last-mark"],
)  # fmt: skip
def test_base_name(name: str, base: str) -> None:
    """The base name drops the leading slash and one of aiotracker's suffixes."""
    assert base_name(name) == base


@pytest.mark.parametrize(
    ("extensions", "log_config"),
    [
        pytest.param({"log-max-size": "50m"}, {"max-size": str(50 << 20)}, id="size"),
        pytest.param({"log-max-file": "10"}, {"max-file": "10"}, id="files"),
        pytest.param({"log-max-size": "1g", "log-max-file": "3"},
                     {"max-size": str(1 << 30), "max-file": "3"}, id="both"),
    ],
)  # fmt: skip
def test_log_size_extensions(extensions: dict[str, str], log_config: dict[str, str]) -> None:
    """How much of a job's output the engine's log keeps (the local driver's rotation) is set
    from the template; the default stays the driver's (5 files of 20 MB)."""
    config = create_config("s", JobTemplate(job_category="busybox", extensions=extensions), cwd="/")
    assert config["HostConfig"]["LogConfig"] == {"Type": "local", "Config": log_config}


@pytest.mark.parametrize(
    "extensions",
    [{"log-max-size": "lots"}, {"log-max-size": "0"}, {"log-max-file": "0"},
     {"log-max-file": "x"}, {"log-max-file": "100000"}],
)  # fmt: skip
def test_bad_log_size_extensions(extensions: dict[str, str]) -> None:
    """A log size or file count that does not parse is InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        create_config("s", JobTemplate(job_category="busybox", extensions=extensions), cwd="/")


def test_tracker_view_keeps_an_end_the_tracker_settled() -> None:
    """A start refused on Podman leaves the container created with no State.Error: its
    inspect reads QUEUED, but the tracker settled FAILED."""
    from aiotracker._mapping import tracker_view

    queued = JobInfo(job_id="j", state=JobState.QUEUED)
    assert tracker_view(queued, JobState.FAILED, (), settled=True).state is JobState.FAILED
    assert tracker_view(queued, JobState.FAILED, ()).state is JobState.QUEUED
    done = JobInfo(job_id="j", state=JobState.DONE)
    assert tracker_view(done, JobState.RUNNING, ()).state is JobState.RUNNING  # output pending


# -- network-disabled ---------------------------------------------------------------------------


def test_network_disabled_sets_the_flag_and_no_network() -> None:
    """``network-disabled``: Config.NetworkDisabled (Docker makes no sandbox, endpoint or
    prestart hook) and NetworkMode none, for engines that ignore the flag."""
    config = config_for(JobTemplate(job_category="busybox",
                                    extensions={"network-disabled": "true"}))  # fmt: skip
    assert config["NetworkDisabled"] is True
    assert config["HostConfig"]["NetworkMode"] == "none"
    extensions = {"network-disabled": "True", "net": "none"}
    both = config_for(JobTemplate(job_category="busybox", extensions=extensions))
    assert both["NetworkDisabled"] is True
    assert both["HostConfig"]["NetworkMode"] == "none"


def test_network_disabled_false_changes_nothing() -> None:
    plain = config_for(JobTemplate(job_category="busybox"))
    config = config_for(JobTemplate(job_category="busybox",
                                    extensions={"network-disabled": "false"}))  # fmt: skip
    assert "NetworkDisabled" not in config
    assert config["HostConfig"] == plain["HostConfig"]


@pytest.mark.parametrize("net", ["host", "bridge", "my-net", "container:db"])
def test_network_disabled_refuses_a_network(net: str) -> None:
    with pytest.raises(InvalidArgumentError, match="network-disabled"):
        config_for(JobTemplate(job_category="busybox",
                               extensions={"network-disabled": "true", "net": net}))  # fmt: skip
