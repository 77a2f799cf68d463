"""DRMAA2's resource attributes -> the create config, and the attributes refused (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aiotracker import InvalidArgumentError, JobTemplate, UnsupportedOperationError
from aiotracker._config import ArrayTask, create_config
from aiotracker._engine.base import EngineInfo
from aiotracker._labels import PRIORITY_LABEL, TEMPLATE_LABEL
from aiotracker._mapping import job_info_from_details
from aiotracker._resources import RESOURCE_LIMITS, parse_seconds, parse_size
from aiotracker._template_label import decode_template_label, encode_template_label
from tests.unit.test_mapping import details

ENGINE = EngineInfo("h", 0, "1.41", cpus=4, architecture="x86_64", os_type="linux")
MiB = 1 << 20


def host(engine: EngineInfo | None = ENGINE, array: bool = False, **fields: Any) -> dict[str, Any]:
    fields.setdefault("job_category", "busybox")
    task = ArrayTask("a1", 1, 2, 0) if array else None
    config = create_config("s", JobTemplate(**fields), cwd="/", engine=engine, array_task=task)
    return config["HostConfig"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("key", "value", "ulimit", "limit"),
    [
        ("CORE_FILE_SIZE", "0", "core", 0),
        ("CORE_FILE_SIZE", "1024", "core", 1 << 20),
        ("CORE_FILE_SIZE", "unlimited", "core", -1),
        ("DATA_SEG_SIZE", "64m", "data", 64 * MiB),
        ("DATA_SIZE", "64m", "data", 64 * MiB),
        ("FILE_SIZE", "1", "fsize", 1024),
        ("OPEN_FILES", "256", "nofile", 256),
        ("STACK_SIZE", "8192", "stack", 8 * MiB),
    ],
)  # fmt: skip
def test_resource_limits_become_ulimits(key: str, value: str, ulimit: str, limit: int) -> None:
    """Sizes in KiB (DRMAA2's unit) or with a unit, times in seconds, counts as counts; the
    soft and hard limits alike."""
    assert host(resource_limits={key: value})["Ulimits"] == [
        {"Name": ulimit, "Soft": limit, "Hard": limit}
    ]


def test_virtual_memory_is_a_real_limit() -> None:
    """VIRTUAL_MEMORY sets memory and swap alike (no swap beyond it); the engine's minimum
    is 6 MiB."""
    h = host(resource_limits={"VIRTUAL_MEMORY": "32768"})
    assert (h["Memory"], h["MemorySwap"]) == (32 * MiB, 32 * MiB)
    assert host(resource_limits={"VIRTUAL_MEMORY": "1g"})["Memory"] == 1 << 30
    with pytest.raises(InvalidArgumentError, match="6 MiB"):
        host(resource_limits={"VIRTUAL_MEMORY": "5m"})


def test_min_phys_memory_is_a_reservation() -> None:
    assert host(min_phys_memory=65536)["MemoryReservation"] == 64 * MiB
    with pytest.raises(InvalidArgumentError, match="above the VIRTUAL_MEMORY"):
        host(min_phys_memory=65536, resource_limits={"VIRTUAL_MEMORY": "32m"})
    with pytest.raises(InvalidArgumentError):
        host(min_phys_memory=-1)


def test_slots_are_cpus_checked_against_the_engine() -> None:
    """max_slots is a CPU limit; asking for more CPUs than the engine has is refused."""
    assert host(max_slots=2)["NanoCpus"] == 2_000_000_000
    assert "NanoCpus" not in host(min_slots=2)
    with pytest.raises(InvalidArgumentError, match="engine's 4 CPUs"):
        host(min_slots=8)
    with pytest.raises(InvalidArgumentError, match="engine's 4 CPUs"):
        host(max_slots=8)
    with pytest.raises(InvalidArgumentError, match="above max_slots"):
        host(min_slots=3, max_slots=2)


@pytest.mark.parametrize("arch", ["x64", "x86_64", "amd64", "X64"])
def test_machine_arch_of_the_engine_is_accepted(arch: str) -> None:
    host(machine_arch=arch, machine_os="linux")


def test_another_machine_is_refused_naming_both() -> None:
    with pytest.raises(InvalidArgumentError, match=r"arm64.*x86_64 \(x64\)"):
        host(machine_arch="arm64")
    with pytest.raises(InvalidArgumentError, match=r"windows.*linux"):
        host(machine_os="windows")
    with pytest.raises(InvalidArgumentError, match="sparc"):
        host(machine_arch="sparc")


def test_a_resource_limit_and_the_ulimit_extension_may_not_both_set_one() -> None:
    with pytest.raises(InvalidArgumentError, match="both set nofile"):
        host(resource_limits={"OPEN_FILES": "10"}, extensions={"ulimit": "nofile=5"})
    h = host(resource_limits={"OPEN_FILES": "10"}, extensions={"ulimit": "nproc=5"})
    assert {u["Name"] for u in h["Ulimits"]} == {"nofile", "nproc"}


@pytest.mark.parametrize(
    "limits",
    [{"RSS": "1"}, {"CPU_TIME": "soon"}, {"VIRTUAL_MEMORY": "-1"}, {"OPEN_FILES": "0"},
     {"CPU_TIME": True}, {"CPU_TIME": 5}, {"CPU_TIME": "1:99"}, {"FILE_SIZE": "9" * 400},
     {"VIRTUAL_MEMORY": "99999999999999999999t"}, {"OPEN_FILES": "9" * 25}],
)  # fmt: skip
def test_bad_resource_limits_are_invalid(limits: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        host(resource_limits=limits)


@pytest.mark.parametrize(
    "fields",
    [
        {"email": ["a@example.com"]},
        {"email_on_terminated": True},
        {"reservation_id": "r1"},
        {"queue_name": "short"},
    ],
    ids=lambda f: next(iter(f)),
)
def test_what_cannot_be_honoured_is_refused(fields: dict[str, Any]) -> None:
    """Never silence: an attribute aiotracker would not honour is UnsupportedOperationError."""
    with pytest.raises(UnsupportedOperationError):
        host(**fields)


def test_priority_is_a_label_for_the_launcher() -> None:
    """A job's and an array's priority are labels (the launcher's queue reads them); 0, the
    default, is left out."""
    for array in (False, True):
        task = ArrayTask("a1", 1, 2, 0) if array else None
        config = create_config("s", JobTemplate(job_category="b", priority=-3), cwd="/",
                               engine=ENGINE, array_task=task)  # fmt: skip
        assert config["Labels"][PRIORITY_LABEL] == "-3"
    assert (
        PRIORITY_LABEL not in create_config("s", JobTemplate(job_category="b"), cwd="/")["Labels"]
    )


def test_gpu_devices_become_a_device_request() -> None:
    assert host(extensions={"gpu-devices": "0,GPU-3a2b"})["DeviceRequests"] == [
        {"Driver": "nvidia", "DeviceIDs": ["0", "GPU-3a2b"], "Capabilities": [["gpu"]]}
    ]
    with pytest.raises(InvalidArgumentError, match="exclude each other"):
        host(extensions={"gpus": "all", "gpu-devices": "0"})
    with pytest.raises(InvalidArgumentError, match="gpu-devices"):
        host(extensions={"gpu-devices": "0,,1"})


def test_units() -> None:
    assert parse_size("X", "2") == 2048
    assert parse_size("X", "2b") == 2
    assert parse_size("X", "1.5GiB") == 3 << 29
    assert parse_seconds("X", "1:00:01") == 3601
    assert set(RESOURCE_LIMITS) == {
        "CORE_FILE_SIZE", "CPU_TIME", "DATA_SEG_SIZE", "FILE_SIZE", "OPEN_FILES",
        "STACK_SIZE", "VIRTUAL_MEMORY", "WALLCLOCK_TIME",
    }  # fmt: skip


def test_kept_attributes_show_in_job_info() -> None:
    """rerunnable and accounting_id are recorded (in the template label) and reported."""
    kept = JobTemplate(job_category="busybox", rerunnable=True, accounting_id="acct-7")
    d = details(labels={TEMPLATE_LABEL: encode_template_label(kept)})
    info = job_info_from_details(d, engine_host="h", now=datetime.now(UTC))
    assert info.extensions["rerunnable"] == "true"
    assert info.extensions["accounting_id"] == "acct-7"
    plain = details(labels={TEMPLATE_LABEL: encode_template_label(JobTemplate())})
    info = job_info_from_details(plain, engine_host="h", now=datetime.now(UTC))
    assert "rerunnable" not in info.extensions


@pytest.mark.parametrize(("value", "soft"), [("90", 90), ("1:30", 90), ("1.2", 2)])
def test_cpu_time_warns_with_sigxcpu_before_the_kill(value: str, soft: int) -> None:
    """The soft limit a second below the hard one: SIGXCPU (exit 152) first, not a SIGKILL
    that would read like a terminate or an OOM kill."""
    assert host(resource_limits={"CPU_TIME": value})["Ulimits"] == [
        {"Name": "cpu", "Soft": soft, "Hard": soft + 1}
    ]


def test_a_reservation_below_the_engines_minimum_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="6 MiB"):
        host(min_phys_memory=1024)


@pytest.mark.parametrize(
    "fields",
    [{"rerunnable": "false"}, {"accounting_id": 7}, {"priority": "5"}, {"priority": True}],
)
def test_kept_attributes_of_the_wrong_type_are_invalid(fields: dict[str, Any]) -> None:
    """They are stored in the template label, which must stay readable (by drmaa2os too)."""
    with pytest.raises(InvalidArgumentError):
        host(**fields)


def test_the_label_of_an_accepted_template_reads_back() -> None:
    accepted = JobTemplate(
        job_category="busybox", min_slots=1, max_slots=2, min_phys_memory=8192,
        machine_arch="x64", machine_os="linux", priority=3, rerunnable=True,
        accounting_id="a", extensions={"gpu-devices": "0"},
        resource_limits={"VIRTUAL_MEMORY": "64m", "CPU_TIME": "10", "OPEN_FILES": "unlimited"},
    )  # fmt: skip
    config = create_config("s", accepted, cwd="/", engine=ENGINE)
    assert decode_template_label(config["Labels"][TEMPLATE_LABEL]) == accepted


def test_a_machine_the_table_lacks_matches_by_its_own_name() -> None:
    """An architecture without a DRMAA2 name matches the engine's own word exactly."""
    s390 = EngineInfo("h", 0, "1.41", cpus=4, architecture="s390x", os_type="linux")
    host(engine=s390, machine_arch="S390X")
    with pytest.raises(InvalidArgumentError):
        host(engine=s390, machine_arch="x64")
    silent = EngineInfo("h", 0, "1.41", cpus=4)  # tells no architecture, no OS
    with pytest.raises(InvalidArgumentError, match="does not tell"):
        host(engine=silent, machine_arch="x64")
