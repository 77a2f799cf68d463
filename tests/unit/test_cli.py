"""The command line (aiotracker.cli) without an engine: its pure helpers, and its commands
through click's CliRunner against aiotracker's fake engine (the tracker factory of
``aiotracker.cli._runner`` is the tests' hook). The real console script against real
engines: tests/integration/test_cli.py."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result

from aiotracker import (
    DockerTracker,
    DrmCommunicationError,
    EngineError,
    ImageNotFoundError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    JobNameInUseError,
    JobNotFoundError,
    JobState,
    Machine,
    MonitoringSession,
    StateChange,
    TrackerClosedError,
    TrackerError,
    UnsupportedOperationError,
    WaitTimeoutError,
)
from aiotracker._engine.fake import FakeEngine
from aiotracker._labels import LEASE_LABEL, SESSION_LABEL
from aiotracker.cli import _runner as runner
from aiotracker.cli import main
from aiotracker.cli._app import cli
from aiotracker.cli._args import (
    exit_status_of,
    job_exit_status,
    parse_labels,
    parse_pair,
    parse_pairs,
    split_command,
)
from aiotracker.cli._render import bucket, change_document, counts, counts_line, to_json

IMAGE = "aiotracker/busybox:latest"
pytestmark = pytest.mark.timeout(15)  # a command that never ends fails fast
DONE, FAILED, RUNNING = JobState.DONE, JobState.FAILED, JobState.RUNNING


# -- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pair"),
    [("A=1", ("A", "1")), ("A==b", ("A", "=b")), ("A=", ("A", "")),
     ("PATH=/a:/b", ("PATH", "/a:/b"))],
)  # fmt: skip
def test_pair_splits_at_the_first_equals_sign(text: str, pair: tuple[str, str]) -> None:
    assert parse_pair(text) == pair


@pytest.mark.parametrize(
    ("text", "why"), [("A", "not KEY=VALUE"), ("=1", "empty key"), (" A=1", "spaces")]
)
def test_malformed_pair_is_refused_with_its_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_pair(text)


def test_a_key_given_twice_keeps_its_last_value() -> None:
    assert parse_pairs(["A=1", "B=2", "A=3"]) == {"A": "3", "B": "2"}


def test_labels_variable_is_comma_separated_pairs() -> None:
    assert parse_labels("k=v, k2=v2,") == {"k": "v", "k2": "v2"}
    assert parse_labels("") == {} == parse_labels(None)
    with pytest.raises(ValueError, match="label 'oops' is not KEY=VALUE"):
        parse_labels("k=v,oops")


def test_command_words_are_remote_command_then_args() -> None:
    assert split_command(["sh", "-c", "echo hi"]) == ("sh", ["-c", "echo hi"])
    assert split_command(["true"]) == ("true", [])
    assert split_command([]) == ("", [])  # the image's own command


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidArgumentError("x"), 2),
        (JobNotFoundError("x"), 2),
        (JobNameInUseError("x", job_name="n"), 2),
        (ImageNotFoundError("x", image="i"), 2),
        (UnsupportedOperationError("x"), 2),
        (DrmCommunicationError("x"), 3),
        (EngineError("x"), 1),
        (InvalidStateError("x"), 1),
        (TrackerClosedError("x"), 1),
        (WaitTimeoutError("x"), 1),
        (InternalError("x"), 1),
    ],
)
def test_library_errors_map_to_exit_statuses(error: TrackerError, status: int) -> None:
    assert exit_status_of(error) == status


@pytest.mark.parametrize(
    ("state", "exit_status", "expected"),
    [(DONE, 0, 0), (FAILED, 3, 3), (FAILED, None, 1), (FAILED, 0, 1), (FAILED, 137, 137)],
)
def test_run_wait_exit_status_is_the_jobs(
    state: JobState, exit_status: int | None, expected: int
) -> None:
    assert job_exit_status(state, exit_status) == expected


def test_json_renders_states_times_durations_and_dataclasses() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    change = StateChange("j1", RUNNING, DONE, moment, exit_status=0)
    assert json.loads(to_json(change_document(change))) == {
        "id": "j1", "old_state": "running", "new_state": "done",
        "time": "2026-01-02T03:04:05+00:00", "exit_status": 0, "lost": 0,
    }  # fmt: skip
    machine = Machine("m", True, 1, 2, 1, 1024, 1024, "x64", "linux", "6.1")
    doc = json.loads(to_json({"m": machine, "d": timedelta(seconds=1.5), "s": {JobState.DONE}}))
    assert doc["m"]["cores_per_socket"] == 2
    assert doc["m"]["architecture"] == "x64"
    assert doc["d"] == 1.5
    assert doc["s"] == ["done"]
    deleted = change_document(StateChange("j1", DONE, None, moment))
    assert json.loads(to_json(deleted))["new_state"] is None


def test_counts_put_each_state_in_its_bucket() -> None:
    states: dict[str, JobState | None] = {
        "a": JobState.QUEUED, "b": JobState.QUEUED_HELD, "c": RUNNING,
        "d": JobState.SUSPENDED, "e": DONE, "f": FAILED, "g": None,
    }  # fmt: skip
    assert counts(states) == {"queued": 2, "running": 2, "done": 1, "failed": 2}
    assert bucket(None) == "failed"  # a deleted task did not succeed
    line = counts_line("arr", counts(states))
    assert line == "array arr: 7 tasks, 2 queued, 2 running, 1 done, 2 failed"


# -- the commands on the fake engine -----------------------------------------------------------


class ScriptedEngine(FakeEngine):
    """The fake engine, running ``sh -c SCRIPT`` jobs at their start: ``echo WORDS`` (``>&2``
    last: to stderr), ``exit N``, ``$VAR`` from the job's environment; ``sleep`` (or any
    other command) leaves the job running until the test ends it."""

    async def start(self, cid: str) -> None:
        await super().start(cid)
        container = self.container(cid)
        cmd = list(container.config.get("Cmd") or [])
        if cmd[:2] != ["sh", "-c"] or LEASE_LABEL in container.labels:
            return
        env = dict(e.split("=", 1) for e in container.config.get("Env") or [])
        for statement in cmd[2].split(";"):
            words = [env.get(w[1:], "") if w.startswith("$") else w for w in statement.split()]
            if not words:
                continue
            if words[0] == "echo":
                err = words[-1] == ">&2"
                text = " ".join(words[1:-1] if err else words[1:]) + "\n"
                self.write_output(cid, 2 if err else 1, text.encode())
            elif words[0] == "exit":
                self.exit(cid, int(words[1]))
                return
            else:
                return  # runs on
        self.exit(cid, 0)


class Cli:
    """The command line over one fake engine: ``cli("run", ...)``; every tracker made is
    recorded (session, labels, role)."""

    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.runner = CliRunner()
        self.made: list[dict[str, Any]] = []
        self.on_open: Callable[[], None] | None = None  # called in the command's event loop

    def factory(
        self, session: str, *, docker_url: str | None, labels: dict[str, str], role: str
    ) -> DockerTracker:
        self.made.append({"session": session, "url": docker_url, "labels": labels, "role": role})
        if self.on_open is not None:
            self.on_open()
        return DockerTracker(
            session, engine=self.engine.client(), labels=labels, role=role,  # type: ignore[arg-type]
            engine_timeout=2,
        )  # fmt: skip

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    def job(self, *command: str, hold: bool = False) -> str:
        result = self("run", *(["--hold"] if hold else []), IMAGE, "--", *command)
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    def state(self, job_id: str) -> str:
        result = self("state", job_id)
        assert result.exit_code == 0, result.output
        return result.stdout.strip()


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def run_cli(engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch) -> Cli:
    tool = Cli(engine)
    monkeypatch.delenv("AIOTRACKER_SESSION", raising=False)
    monkeypatch.delenv("AIOTRACKER_LABELS", raising=False)
    monkeypatch.setattr(runner, "tracker_factory", tool.factory)
    monkeypatch.setattr(
        runner, "monitor_factory", lambda url: MonitoringSession(engine=engine.client())
    )
    return tool


def jobs_of(engine: FakeEngine) -> list[str]:
    """The engine's job containers (leases left out), oldest first."""
    return [
        s.container_id
        for s in reversed(asyncio.run(engine.list_containers(SESSION_LABEL)))
        if LEASE_LABEL not in s.labels
    ]


def job_containers(engine: FakeEngine) -> list[str]:
    """The engine's job containers now (no await: for hooks in a command's event loop)."""
    return [cid for cid, c in engine._containers.items() if LEASE_LABEL not in c.labels]


def later(delay: float, act: Callable[[], object]) -> Callable[[], None]:
    """An ``on_open`` hook: ``act`` runs ``delay`` seconds into the command."""

    def hook() -> None:
        asyncio.get_running_loop().call_later(delay, act)

    return hook


def test_run_prints_the_job_id_and_everything_after_double_dash_is_the_command(
    run_cli: Cli, engine: ScriptedEngine
) -> None:
    result = run_cli(
        "run", "--name", "hello", "-e", "A=1", "--env", "B=x=y", IMAGE, "--", "sh", "-c",
        "echo hi; sleep",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [job_id] = jobs_of(engine)
    assert result.stdout == f"{job_id}\n"
    config = engine.container(job_id).config
    assert config["Cmd"] == ["sh", "-c", "echo hi; sleep"]  # -c is the command's, not ours
    assert {"A=1", "B=x=y"} <= set(config["Env"])
    assert engine.container(job_id).name.startswith("hello.")
    assert run_cli.made[-1]["role"] == "worker"


def test_a_dash_option_of_the_command_needs_the_double_dash(
    run_cli: Cli, engine: ScriptedEngine
) -> None:
    result = run_cli("run", IMAGE, "sh", "-c", "true")
    assert result.exit_code == 2
    assert "No such option '-c'" in result.stderr
    assert "goes after --" in result.stderr
    assert jobs_of(engine) == []


@pytest.mark.parametrize(("value", "why"), [("NOEQUALS", "not KEY=VALUE"), ("=v", "empty key")])
def test_a_malformed_env_is_a_usage_error_and_creates_nothing(
    run_cli: Cli, engine: ScriptedEngine, value: str, why: str
) -> None:
    result = run_cli("run", "--env", value, IMAGE, "--", "true")
    assert result.exit_code == 2
    assert why in result.stderr
    assert "--env" in result.stderr
    assert engine.calls["create"] == 0
    assert run_cli.made == []  # refused before any tracker was made


def test_run_wait_exits_with_the_jobs_exit_status(run_cli: Cli) -> None:
    result = run_cli("--json", "run", "--wait", IMAGE, "--", "sh", "-c", "echo hi; exit 3")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["state"] == "failed"
    assert doc["exit_status"] == 3
    assert len(doc["id"]) == 64
    ok = run_cli("run", "--wait", IMAGE, "--", "sh", "-c", "echo fine")
    assert ok.exit_code == 0, ok.output
    assert run_cli.state(ok.stdout.strip()) == "done"


def test_run_without_wait_reports_the_state_after_submission(run_cli: Cli) -> None:
    result = run_cli("--json", "run", IMAGE, "--", "sh", "-c", "sleep")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["state"] == "running"
    assert doc["exit_status"] is None
    held = run_cli("--json", "run", "--hold", IMAGE, "--", "sh", "-c", "sleep")
    assert json.loads(held.stdout)["state"] == "queued_held"


def test_run_with_an_output_file_stays_until_the_file_is_complete(
    run_cli: Cli, engine: ScriptedEngine, tmp_path: Any
) -> None:
    """This process writes the file: it leaves only once the job has ended."""
    out = tmp_path / "out.txt"

    def finish() -> None:
        [job_id] = job_containers(engine)
        engine.write_output(job_id, 1, b"hi\n")
        engine.exit(job_id, 4)

    run_cli.on_open = later(0.1, finish)
    result = run_cli("run", "--output", str(out), IMAGE, "--", "sh", "-c", "sleep")
    assert result.exit_code == 0, result.output  # no --wait: the job's status is not ours
    assert out.read_bytes() == b"hi\n"
    assert run_cli.state(result.stdout.strip()) == "failed"


def test_library_errors_are_one_line_on_stderr_with_their_status(
    run_cli: Cli, engine: ScriptedEngine
) -> None:
    result = run_cli("run", "no/such:image", "--", "true")
    assert result.exit_code == 2
    assert result.stderr.startswith("aiotracker: ")
    assert result.stderr.count("\n") == 1
    assert "no/such:image" in result.stderr
    assert "Traceback" not in result.output
    missing = run_cli("state", "0123456789ab")
    assert missing.exit_code == 2
    assert "aiotracker: " in missing.stderr
    engine.set_down(True)
    down = run_cli("ls")
    assert down.exit_code == 3, down.output
    assert down.stderr.startswith("aiotracker: ")
    assert down.stdout == ""


def test_ctrl_c_exits_130_quietly(run_cli: Cli) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    run_cli.on_open = interrupt
    result = run_cli("ls")
    assert result.exit_code == 130
    assert result.output == ""


def test_read_only_commands_use_observer_trackers(run_cli: Cli) -> None:
    job_id = run_cli.job("sh", "-c", "echo hi")
    for args in (["ls"], ["state", job_id], ["info", job_id], ["wait", job_id],
                 ["watch", job_id], ["logs", job_id], ["categories"]):  # fmt: skip
        before = len(run_cli.made)
        result = run_cli(*args)
        assert result.exit_code == 0, (args, result.output)
        assert [m["role"] for m in run_cli.made[before:]] == ["observer"], args
    for args in (["rm", job_id], ["run", IMAGE, "--", "true"]):
        before = len(run_cli.made)
        assert run_cli(*args).exit_code == 0
        assert [m["role"] for m in run_cli.made[before:]] == ["worker"], args


def test_session_option_variable_and_default(run_cli: Cli) -> None:
    run_cli("ls")
    run_cli("ls", env={"AIOTRACKER_SESSION": "from-env"})
    run_cli("--session", "from-option", "--docker-url", "tcp://x:1", "ls",
            env={"AIOTRACKER_SESSION": "from-env"})  # fmt: skip
    assert [(m["session"], m["url"]) for m in run_cli.made] == [
        ("aiotracker", None), ("from-env", None), ("from-option", "tcp://x:1"),
    ]  # fmt: skip


def test_labels_variable_labels_every_container_made(run_cli: Cli, engine: ScriptedEngine) -> None:
    env = {"AIOTRACKER_LABELS": "aiotracker.test-run=t1,team=a"}
    result = run_cli("run", IMAGE, "--", "sh", "-c", "sleep", env=env)
    assert result.exit_code == 0, result.output
    assert run_cli.made[-1]["labels"] == {"aiotracker.test-run": "t1", "team": "a"}
    containers = asyncio.run(engine.list_containers(SESSION_LABEL))
    assert len(containers) == 2  # the job and its tracker's lease
    assert all(c.labels.get("aiotracker.test-run") == "t1" for c in containers)
    bad = run_cli("ls", env={"AIOTRACKER_LABELS": "novalue"})
    assert bad.exit_code == 2
    assert "AIOTRACKER_LABELS" in bad.stderr


def test_ls_lists_states_filters_and_arrays(run_cli: Cli) -> None:
    done = run_cli.job("sh", "-c", "echo x")
    running = run_cli.job("sh", "-c", "sleep")
    result = run_cli("--json", "ls")
    assert result.exit_code == 0, result.output
    assert {(r["id"], r["state"]) for r in json.loads(result.stdout)} == {
        (done, "done"), (running, "running"),
    }  # fmt: skip
    only = json.loads(run_cli("--json", "ls", "--state", "RUNNING").stdout)
    assert [r["id"] for r in only] == [running]
    long = json.loads(run_cli("--json", "ls", "-l", "--state", "done").stdout)
    assert long[0]["exit_status"] == 0
    assert long[0]["name"]
    table = run_cli("ls")
    assert done[:12] in table.stdout
    assert "running" in table.stdout
    assert done not in table.stdout
    array = run_cli("--json", "array", "--end", "2", IMAGE, "--", "sh", "-c", "sleep")
    array_doc = json.loads(array.stdout)
    tasks = json.loads(run_cli("--json", "ls", "--array", array_doc["id"]).stdout)
    assert [t["id"] for t in tasks] == array_doc["tasks"]


def test_state_and_info(run_cli: Cli) -> None:
    job_id = run_cli.job("sh", "-c", "exit 2")
    assert run_cli.state(job_id[:10]) == "failed"  # a unique prefix names the job
    info = json.loads(run_cli("--json", "info", job_id).stdout)
    assert info["job_id"] == job_id
    assert info["exit_status"] == 2
    assert info["state"] == "failed"
    table = run_cli("info", job_id)
    assert "exit_status" in table.stdout
    assert job_id in table.stdout


def test_a_job_name_names_the_job(run_cli: Cli) -> None:
    result = run_cli("run", "--name", "mine", IMAGE, "--", "sh", "-c", "sleep")
    assert run_cli.state("mine") == "running"
    assert json.loads(run_cli("--json", "state", "mine").stdout)["id"] == result.stdout.strip()
    assert run_cli("state", "theirs").exit_code == 2


def test_wait_exit_statuses(run_cli: Cli, engine: ScriptedEngine) -> None:
    running = run_cli.job("sh", "-c", "sleep")
    timed_out = run_cli("wait", "--timeout", "0.05", running)
    assert timed_out.exit_code == 124
    assert "aiotracker: " in timed_out.stderr
    reached = run_cli("wait", "--state", "running", running)
    assert (reached.exit_code, reached.stdout) == (0, "running\n")
    failed = run_cli.job("sh", "-c", "exit 5")
    result = run_cli("wait", failed)
    assert (result.exit_code, result.stdout) == (1, "failed\n")
    assert run_cli("wait", "--state", "failed", failed).exit_code == 0
    unreachable = run_cli("--json", "wait", "--state", "done", failed)
    assert unreachable.exit_code == 1
    assert "aiotracker: " in unreachable.stderr
    assert json.loads(unreachable.stdout)["state"] == "failed"
    run_cli.on_open = later(0.05, lambda: engine.exit(running, 0))
    assert run_cli("wait", running).exit_code == 0
    assert run_cli("wait", "--timeout", "-1", running).exit_code == 2  # a usage error


def test_control_commands(run_cli: Cli) -> None:
    held = run_cli.job("sh", "-c", "sleep", hold=True)
    assert run_cli.state(held) == "queued_held"
    released = run_cli("--json", "release", held)
    assert released.exit_code == 0, released.output
    assert json.loads(released.stdout) == {"id": held, "action": "release", "state": "running"}
    assert run_cli("suspend", held).exit_code == 0
    assert run_cli.state(held) == "suspended"
    assert run_cli("resume", held).exit_code == 0
    wrong = run_cli("hold", held)  # a running job cannot be held
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("aiotracker: ")
    assert run_cli("terminate", held).exit_code == 0
    assert run_cli.state(held) == "failed"


def test_rm_deletes_only_finished_jobs(run_cli: Cli, engine: ScriptedEngine) -> None:
    running = run_cli.job("sh", "-c", "sleep")
    refused = run_cli("rm", running)
    assert refused.exit_code == 1
    assert "only a finished job" in refused.stderr
    finished = run_cli.job("sh", "-c", "echo x")
    assert run_cli("--json", "rm", finished).exit_code == 0
    assert jobs_of(engine) == [running]
    assert run_cli("state", finished).exit_code == 2


def test_logs_of_a_finished_job_are_its_bytes(run_cli: Cli, engine: ScriptedEngine) -> None:
    job_id = run_cli.job("sh", "-c", "sleep")
    engine.write_output(job_id, 1, b"one\n\xff\xfe raw\n")
    engine.write_output(job_id, 2, b"oops\n")
    engine.write_output(job_id, 1, b"three\n")
    engine.exit(job_id, 0)
    result = run_cli("logs", job_id)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b"one\n\xff\xfe raw\nthree\n"
    assert run_cli("logs", "--stderr", job_id).stdout_bytes == b"oops\n"
    assert run_cli("logs", "--tail", "1", job_id).stdout_bytes == b"three\n"
    lines = [json.loads(line) for line in run_cli("--json", "logs", job_id).stdout.splitlines()]
    assert "".join(d["data"] for d in lines) == "one\n\ufffd\ufffd raw\nthree\n"
    assert {d["stream"] for d in lines} == {"stdout"}


def test_logs_of_a_running_job_need_follow(run_cli: Cli, engine: ScriptedEngine) -> None:
    job_id = run_cli.job("sh", "-c", "sleep")
    engine.write_output(job_id, 1, b"so far\n")
    refused = run_cli("logs", job_id)
    assert refused.exit_code == 1
    assert "follow it with -f" in refused.stderr

    def more() -> None:
        engine.write_output(job_id, 1, b"then\n")
        engine.exit(job_id, 0)

    run_cli.on_open = later(0.1, more)
    followed = run_cli("logs", "-f", job_id)
    assert followed.exit_code == 0, followed.output
    assert followed.stdout_bytes == b"so far\nthen\n"


def test_watch_prints_json_lines_until_the_jobs_end(run_cli: Cli, engine: ScriptedEngine) -> None:
    job_id = run_cli.job("sh", "-c", "sleep")
    ended = run_cli.job("sh", "-c", "echo x")
    run_cli.on_open = later(0.05, lambda: engine.exit(job_id, 7))
    result = run_cli("watch", job_id, ended)  # no terminal: JSON lines without --json too
    assert result.exit_code == 0, result.output
    changes = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(c["id"], c["old_state"], c["new_state"]) for c in changes[:2]} == {
        (job_id, None, "running"), (ended, None, "done"),
    }  # fmt: skip
    assert changes[-1] == {**changes[-1], "id": job_id, "old_state": "running",
                           "new_state": "failed", "exit_status": 7}  # fmt: skip
    assert len(changes) == 3


def test_watch_of_an_array_covers_its_tasks(run_cli: Cli) -> None:
    array = json.loads(
        run_cli("--json", "array", "--end", "3", IMAGE, "--", "sh", "-c", "exit $TASK_ID").stdout
    )
    result = run_cli("watch", array["id"])
    assert result.exit_code == 0, result.output
    changes = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(c["id"] for c in changes) == sorted(array["tasks"])
    assert {c["new_state"] for c in changes} == {"failed"}
    assert run_cli("watch", "nosuchjob").exit_code == 2


def test_array_wait_without_a_terminal_prints_final_counts(run_cli: Cli) -> None:
    result = run_cli(
        "array", "--begin", "1", "--end", "4", "--max-parallel", "2", "--wait", IMAGE, "--",
        "sh", "-c", "echo $TASK_ID",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    array_id, line = result.stdout.splitlines()
    assert line == f"array {array_id}: 4 tasks, 0 queued, 0 running, 4 done, 0 failed"
    assert "\x1b" not in result.stdout
    assert "━" not in result.stdout


def test_array_wait_exits_1_unless_every_task_is_done(run_cli: Cli) -> None:
    result = run_cli(
        "--json", "array", "--end", "3", "--wait", IMAGE, "--", "sh", "-c",
        "exit $TASK_ID",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["counts"] == {"queued": 0, "running": 0, "done": 0, "failed": 3}
    assert set(doc["states"]) == set(doc["tasks"])
    assert len(doc["tasks"]) == 3
    bad = run_cli("array", "--begin", "0", "--end", "3", IMAGE, "--", "true")
    assert bad.exit_code == 2
    assert "begin must be >= 1" in bad.stderr


def test_array_without_wait_stays_until_every_task_has_started(
    run_cli: Cli, engine: ScriptedEngine
) -> None:
    """Its tracker launches the queued tasks: leaving at once would strand them."""

    def end_the_running() -> None:  # each 20 ms, the running tasks end
        for job_id in job_containers(engine):
            if engine.container(job_id).status == "running":
                engine.exit(job_id, 0)
        asyncio.get_running_loop().call_later(0.02, end_the_running)

    run_cli.on_open = later(0.02, end_the_running)
    result = run_cli("--json", "array", "--end", "4", "--max-parallel", "1", IMAGE, "--",
                     "sh", "-c", "sleep")  # fmt: skip
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)["tasks"]
    states = {t: engine.container(t).status for t in tasks}
    assert "created" not in states.values(), states  # every task was started


def test_categories_and_machines(run_cli: Cli, engine: ScriptedEngine) -> None:
    engine.images.add("other/image:1")
    result = run_cli("--json", "categories")
    assert json.loads(result.stdout) == sorted([IMAGE, "other/image:1"])
    assert run_cli("categories").stdout.splitlines() == sorted([IMAGE, "other/image:1"])
    [machine] = json.loads(run_cli("--json", "machines").stdout)
    assert machine["name"] == "fake-host"
    assert machine["cores_per_socket"] == engine.cpus
    assert "fake-host" in run_cli("machines").stdout


def test_serve_help_names_its_options(run_cli: Cli) -> None:
    result = run_cli("serve", "--help")
    assert result.exit_code == 0
    for option in ("--host", "--port", "--token", "--allow-image", "--observer"):
        assert option in result.stdout
    assert "AIOTRACKER_TOKEN" in result.stdout
    assert run_cli.made == []


def test_serve_hands_its_options_to_the_web_service(
    run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call only (the service itself is tested in tests/*/test_web*.py)."""
    web = pytest.importorskip("aiotracker.web")
    calls: list[dict[str, Any]] = []

    def run_service(**options: Any) -> None:
        calls.append(options)
        if options["token"] == "short":
            raise ValueError("token must be a string of at least 16 characters")

    monkeypatch.setattr(web, "run_service", run_service)
    env = {"AIOTRACKER_TOKEN": "t" * 16, "AIOTRACKER_LABELS": "k=v"}
    result = run_cli("--session", "s", "serve", "--port", "9000", "--allow-image", "a/*",
                     "--allow-image", "b:1", "--observer", env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls == [{
        "session": "s", "docker_url": None, "host": "127.0.0.1", "port": 9000,
        "token": "t" * 16, "allowed_images": ["a/*", "b:1"], "role": "observer",
        "tracker_options": {"labels": {"k": "v"}},
    }]  # fmt: skip
    refused = run_cli("serve", "--token", "short")
    assert refused.exit_code == 2
    assert refused.stderr == "aiotracker: token must be a string of at least 16 characters\n"
    assert calls[-1]["role"] == "worker"
    assert "tracker_options" not in calls[-1]  # no labels: the service's defaults


# ``aiotracker serve`` in a process of its own, its service's tracker on the fake engine.
SERVE_ON_THE_FAKE_ENGINE = """
import functools, sys
import aiotracker.web._service as service
from aiotracker._engine.fake import FakeEngine
from aiotracker.cli import main
service.DockerTracker = functools.partial(service.DockerTracker, engine=FakeEngine())
sys.exit(main(sys.argv[1:]))
"""


def test_serve_on_port_0_prints_the_port_it_listens_on() -> None:
    """``serve --port 0`` prints its URL once it listens, with the port it got (not :0), that
    port answers the token, and SIGTERM ends it quietly with status 0."""
    token = "u" * 20
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_ON_THE_FAKE_ENGINE, "--session", "s", "serve", "--port",
         "0", "--token", token], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        served = re.fullmatch(
            rf"aiotracker: session 's' served at http://127\.0\.0\.1:([0-9]+)/#token={token}\n",
            line,
        )
        assert served, line
        port = int(served[1])
        assert port != 0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"GET /api/session HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n"
                         .encode())  # fmt: skip
            reply = b"".join(iter(lambda: conn.recv(65536), b""))
        assert reply.startswith(b"HTTP/1.0 200 ")
        assert b'"session": "s"' in reply
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert (proc.returncode, out, err) == (0, "", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- main ------------------------------------------------------------------------------------


def test_main_returns_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "Usage: aiotracker" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_main_without_click_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "click", None)  # import click: ImportError
    assert main(["ls"]) == 2
    assert capsys.readouterr().err == "the command line needs: pip install 'aiotracker[cli]'\n"


def test_the_library_imports_neither_click_nor_rich() -> None:
    code = (
        "import sys, aiotracker, aiotracker.cli; "
        "print(sorted({'click', 'rich'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
