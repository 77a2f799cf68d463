"""The commands of ``aiotracker``: one tracker per command, open for its duration (an
observer for the read-only ones), its body under ``asyncio.run``."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, BinaryIO, cast

import click

from .. import __version__
from .._exceptions import InvalidStateError, JobNotFoundError, WaitTimeoutError
from .._model import JobControlAction, JobState, JobTemplate
from .._tracker import DockerTracker
from ._args import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    LABELS_VARIABLE,
    STATE_CHOICE,
    PairType,
    job_exit_status,
    parse_labels,
    split_command,
    states_of,
)
from ._render import (
    QUEUED_STATES,
    ArrayProgress,
    WatchTable,
    change_document,
    console,
    counts,
    counts_line,
    emit_json,
    info_table,
    jobs_table,
    live_output,
    machines_table,
)
from ._runner import (
    Options,
    fail,
    guard,
    open_monitor,
    open_tracker,
    resolve,
    run,
    setup_logging,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.option(
    "--session", envvar="AIOTRACKER_SESSION", default="aiotracker", show_default=True,
    show_envvar=True, metavar="NAME", help="The job session (the drmaa2_jobsession label).",
)  # fmt: skip
@click.option(
    "--docker-url", metavar="URL", default=None,
    help="The engine (unix:///..., tcp://host:port). Default: DOCKER_HOST, DOCKER_CONTEXT, "
    "the docker CLI's current context, then the local socket.",
)  # fmt: skip
@click.option(
    "--json", "as_json", is_flag=True,
    help="Machine-readable output on stdout: one JSON document per command, JSON lines for "
    "streams (watch, logs).",
)  # fmt: skip
@click.option(
    "-v", "--verbose", count=True,
    help="Show the library's warnings (-v), info (-vv) and debug log (-vvv) on stderr.",
)  # fmt: skip
@click.version_option(__version__, prog_name="aiotracker")
@click.pass_context
def cli(
    ctx: click.Context, session: str, docker_url: str | None, as_json: bool, verbose: int
) -> None:
    """Run and track DRMAA2 jobs as Docker (or Podman) containers.

    Jobs are named by their id, a unique prefix of it, or their job name. Exit statuses: 0,
    1 (a job failed, or another error), 2 (bad input: an option, a template, an unknown job
    or image), 3 (the engine cannot be reached), 124 (wait timed out), 130 (Ctrl-C); run
    --wait exits with the job's own exit status.
    """
    try:
        labels = parse_labels(os.environ.get(LABELS_VARIABLE))
    except ValueError as exc:
        raise click.UsageError(f"{LABELS_VARIABLE}: {exc}") from None
    ctx.obj = Options(session=session, docker_url=docker_url, json=as_json, labels=labels)
    ctx.call_on_close(setup_logging(verbose))


def _out(text: str) -> None:
    click.echo(text)  # flushed


def _binary_stdout() -> BinaryIO:
    """Stdout for bytes (a job's output is written byte for byte)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        raise click.ClickException("stdout takes no bytes here")
    return cast(BinaryIO, buffer)


def _terminal(state: JobState | None) -> bool:
    return state is None or state.is_terminal  # None: deleted, it will not change either


def _started(state: JobState | None) -> bool:
    return state is None or state not in QUEUED_STATES


def _template(
    image: str, command: Sequence[str], *, output: str | None, error: str | None,
    env: Iterable[tuple[str, str]], name: str | None, hold: bool = False,
) -> JobTemplate:  # fmt: skip
    remote_command, args = split_command(command)
    return JobTemplate(
        job_category=image, remote_command=remote_command, args=args,
        output_path=output or "", error_path=error or "", job_environment=dict(env),
        job_name=name or "", submit_as_hold=hold,
    )  # fmt: skip


class _JobCommand(click.Command):
    """``run`` and ``array``: an option click does not know is most likely the job's own,
    given without ``--`` before it: the error says so."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            hint = "(the job's command goes after --: IMAGE -- CMD ARGS...)"
            raise click.UsageError(f"{exc.format_message()} {hint}", exc.ctx) from None


_command_argument = click.argument("command", nargs=-1, type=click.UNPROCESSED)
_output_option = click.option(
    "--output", metavar="PATH", help="Write the job's stdout to this file (on this host)."
)
_error_option = click.option(
    "--error", metavar="PATH", help="Write the job's stderr to this file (on this host)."
)
_env_option = click.option(
    "-e", "--env", multiple=True, type=PairType(), help="An environment variable (repeatable)."
)
_name_option = click.option("--name", help="The job name (unique in the session).")


# -- submitting ----------------------------------------------------------------------------


@cli.command("run", cls=_JobCommand, context_settings=CONTEXT)
@click.argument("image")
@_command_argument
@_output_option
@_error_option
@_env_option
@_name_option
@click.option("--hold", is_flag=True, help="Submit held (QUEUED_HELD): release starts it.")
@click.option(
    "--wait", is_flag=True,
    help="Wait for the end and exit with the job's exit status (1 if it failed without one).",
)  # fmt: skip
@click.pass_obj
def run_command(
    opts: Options, image: str, command: tuple[str, ...], output: str | None,
    error: str | None, env: tuple[tuple[str, str], ...], name: str | None, hold: bool,
    wait: bool,
) -> None:  # fmt: skip
    """Run a job: IMAGE -- CMD ARGS... (no CMD: the image's own command; no shell is added).

    Prints the job id at once (--json: {"id", "state", "exit_status"} when the command
    ends). The output files are written by this process: with --output or --error (and not
    --hold) the command stays until the job has ended and its files are complete, even
    without --wait (then it exits 0).
    """
    template = _template(image, command, output=output, error=error, env=env, name=name,
                         hold=hold)  # fmt: skip

    async def body() -> int:
        async with open_tracker(opts, "worker") as tracker:
            job_id = await tracker.add_job(template)
            if not opts.json:
                _out(job_id)
            if not (wait or ((output or error) and not hold)):
                if opts.json:
                    state = await tracker.job_state(job_id)
                    emit_json({"id": job_id, "state": state, "exit_status": None})
                return 0
            state = await tracker.wait(job_id)
            info = await tracker.job_info(job_id)
            if opts.json:
                emit_json({"id": job_id, "state": state, "exit_status": info.exit_status})
            return job_exit_status(state, info.exit_status) if wait else 0

    run(body)


@cli.command("array", cls=_JobCommand, context_settings=CONTEXT)
@click.argument("image")
@_command_argument
@click.option("--begin", type=int, default=1, show_default=True, help="The first index.")
@click.option("--end", type=int, required=True, help="The last index (inclusive).")
@click.option("--step", type=int, default=1, show_default=True, help="The index step.")
@click.option(
    "--max-parallel", type=int, default=0, show_default=True,
    help="At most this many tasks run at once (0: no bound).",
)  # fmt: skip
@click.option(
    "--output", metavar="PATH",
    help="Each task's stdout; $DRMAA2_INDEX$ is replaced by the task's index.",
)  # fmt: skip
@click.option(
    "--error", metavar="PATH",
    help="Each task's stderr; $DRMAA2_INDEX$ is replaced by the task's index.",
)  # fmt: skip
@_env_option
@_name_option
@click.option(
    "--wait", is_flag=True,
    help="Wait for every task (a live progress on a terminal, else the final counts); exit "
    "0 if all are DONE, else 1.",
)  # fmt: skip
@click.pass_obj
def array_command(
    opts: Options, image: str, command: tuple[str, ...], begin: int, end: int, step: int,
    max_parallel: int, output: str | None, error: str | None,
    env: tuple[tuple[str, str], ...], name: str | None, wait: bool,
) -> None:  # fmt: skip
    """Run an array job: IMAGE -- CMD ARGS..., one task per index (TASK_ID=<index>).

    Prints the array id at once (--json: {"id", "tasks", ...} when the command ends). This
    process launches the tasks and writes their files: without --wait it still stays until
    every task has started (within --max-parallel), with --output/--error until all have
    ended.
    """
    template = _template(image, command, output=output, error=error, env=env, name=name)

    async def body() -> int:
        async with open_tracker(opts, "worker") as tracker:
            array_id = await tracker.add_array_job(template, begin, end, step, max_parallel)
            tasks = await tracker.list_array_jobs(array_id)
            if not opts.json:
                _out(array_id)
            if wait:
                live = live_output() and not opts.json
                with ArrayProgress(array_id, len(tasks), live=live) as progress:
                    states = await _follow(tracker, tasks, _terminal, progress.update)
                tally = counts(states)
                if opts.json:
                    emit_json({"id": array_id, "tasks": tasks, "states": states,
                               "counts": tally})  # fmt: skip
                else:
                    _out(counts_line(array_id, tally))
                return 0 if tally["done"] == len(tasks) else EXIT_FAILED
            # This tracker's launcher starts the tasks, and it writes their files.
            await _follow(tracker, tasks, _terminal if output or error else _started)
            if opts.json:
                emit_json({"id": array_id, "tasks": tasks})
            return 0

    run(body)


async def _follow(
    tracker: DockerTracker, tasks: list[str], until: Callable[[JobState | None], bool],
    on_change: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, JobState | None]:  # fmt: skip
    """Watch the tasks until ``until`` holds for each; their last states."""
    states: dict[str, JobState | None] = {t: tracker.cached_state(t) for t in tasks}
    async with tracker.watch(tasks, initial=True) as changes:
        async for change in changes:
            if change.lost:  # the watch fell behind: the cache has the states
                states = {t: tracker.cached_state(t) for t in tasks}
            elif change.job_id in states:
                states[change.job_id] = change.new_state
            if on_change is not None:
                on_change(counts(states))
            if all(until(s) for s in states.values()):
                break
    return states


# -- reading -------------------------------------------------------------------------------


@cli.command("ls", context_settings=CONTEXT)
@click.option(
    "--state", "states", multiple=True, type=STATE_CHOICE,
    help="Only jobs in this state (repeatable).",
)  # fmt: skip
@click.option("--array", "array_id", metavar="ID", help="Only the tasks of this array job.")
@click.option(
    "-l", "--long", is_flag=True, help="Also the job name, exit status and submission time."
)
@click.pass_obj
def ls_command(opts: Options, states: tuple[str, ...], array_id: str | None, long: bool) -> None:
    """List the session's jobs and their states (finished ones until deleted)."""
    wanted = set(states_of(states))

    async def body() -> int:
        async with open_tracker(opts, "observer") as tracker:
            ids = await (tracker.list_array_jobs(array_id) if array_id else tracker.list_jobs())
            rows: list[dict[str, Any]] = []
            for job_id in ids:
                state = tracker.cached_state(job_id)
                if state is not None and (not wanted or state in wanted):
                    rows.append({"id": job_id, "state": state})
            if long:
                rows = await _long_rows(tracker, rows)
        columns = ["id", "state", *(["name", "exit_status", "submission_time"] if long else [])]
        if opts.json:
            emit_json(rows)
        else:
            console().print(jobs_table(rows, columns))
        return 0

    run(body)


async def _long_rows(tracker: DockerTracker, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with each job's name, exit status and submission time (an inspect each, at
    most 16 at once); a job deleted meanwhile is left out."""
    limit = asyncio.Semaphore(16)

    async def one(row: dict[str, Any]) -> dict[str, Any] | None:
        async with limit:
            try:
                info = await tracker.job_info(row["id"])
            except JobNotFoundError:
                return None
        return {**row, "name": info.job_name, "exit_status": info.exit_status,
                "submission_time": info.submission_time}  # fmt: skip

    return [r for r in await asyncio.gather(*(one(r) for r in rows)) if r is not None]


@cli.command("state", context_settings=CONTEXT)
@click.argument("job")
@click.pass_obj
def state_command(opts: Options, job: str) -> None:
    """Print a job's state."""

    async def body() -> int:
        async with open_tracker(opts, "observer") as tracker:
            job_id = await resolve(tracker, job)
            state = await tracker.job_state(job_id)
        if opts.json:
            emit_json({"id": job_id, "state": state})
        else:
            _out(state.value)
        return 0

    run(body)


@cli.command("info", context_settings=CONTEXT)
@click.argument("job")
@click.pass_obj
def info_command(opts: Options, job: str) -> None:
    """Print everything known of a job (DRMAA2's JobInfo)."""

    async def body() -> int:
        async with open_tracker(opts, "observer") as tracker:
            info = await tracker.job_info(await resolve(tracker, job))
        if opts.json:
            emit_json(info.to_dict())
        else:
            console().print(info_table(info))
        return 0

    run(body)


@cli.command("wait", context_settings=CONTEXT)
@click.argument("job")
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
    help="Give up after this long (exit 124).",
)  # fmt: skip
@click.option(
    "--state", "states", multiple=True, type=STATE_CHOICE,
    help="Wait for this state (repeatable; default: DONE or FAILED).",
)  # fmt: skip
@click.pass_obj
def wait_command(opts: Options, job: str, timeout: float | None, states: tuple[str, ...]) -> None:
    """Wait for a job's end (or --state) and print the state reached.

    Exits 0 when the job is DONE (or in a state asked for), 1 when it FAILED (unless asked
    for) or ended without reaching a state asked for, 124 on timeout.
    """
    wanted = states_of(states)

    async def body() -> int:
        async with open_tracker(opts, "observer") as tracker:
            job_id = await resolve(tracker, job)
            try:
                state = await tracker.wait(job_id, *wanted, timeout=timeout)
            except WaitTimeoutError as exc:
                raise fail(str(exc), EXIT_TIMEOUT) from None
            except InvalidStateError as exc:
                if not tracker.is_open:
                    raise
                _print_state(opts, job_id, await tracker.job_state(job_id))
                raise fail(str(exc), EXIT_FAILED) from None
        _print_state(opts, job_id, state)
        return 0 if wanted or state is JobState.DONE else EXIT_FAILED

    run(body)


def _print_state(opts: Options, job_id: str, state: JobState) -> None:
    if opts.json:
        emit_json({"id": job_id, "state": state})
    else:
        _out(state.value)


@cli.command("watch", context_settings=CONTEXT)
@click.argument("jobs", nargs=-1)
@click.pass_obj
def watch_command(opts: Options, jobs: tuple[str, ...]) -> None:
    """Watch state changes: of the given jobs and array jobs until they have all ended, or
    of the whole session until Ctrl-C.

    On a terminal, a live table of the jobs; with --json or without a terminal, one JSON
    line per change: {"id", "old_state", "new_state", "time", "exit_status", "lost"}
    (old_state null in each job's first line; lost > 0: that many changes were dropped).
    """

    async def body() -> int:
        async with open_tracker(opts, "observer") as tracker:
            ids = await _watched(tracker, jobs) if jobs else None
            pending = None if ids is None else set(ids)
            table = WatchTable() if live_output() and not opts.json else None
            async with tracker.watch(ids, initial=True) as changes:
                with table if table is not None else contextlib.nullcontext():
                    async for change in changes:
                        if table is not None:
                            table.apply(change)
                        else:
                            emit_json(change_document(change))
                        if pending is None:
                            continue
                        if change.lost:
                            pending = {j for j in pending if not _terminal(tracker.cached_state(j))}
                        elif _terminal(change.new_state):
                            pending.discard(change.job_id)
                        if not pending:
                            break
        return 0

    run(body)


async def _watched(tracker: DockerTracker, refs: Iterable[str]) -> list[str]:
    """Job ids (by id, prefix or name) and array ids (their tasks), in order, once each."""
    ids: dict[str, None] = {}
    for ref in refs:
        try:
            ids[await resolve(tracker, ref)] = None
        except JobNotFoundError:
            try:
                tasks = await tracker.list_array_jobs(ref)
            except JobNotFoundError:
                raise JobNotFoundError(
                    f"no job or array job {ref!r} in session {tracker.job_session!r}", job_id=ref
                ) from None
            ids.update(dict.fromkeys(tasks))
    return list(ids)


@cli.command("logs", context_settings=CONTEXT)
@click.argument("job")
@click.option(
    "-f", "--follow", is_flag=True, help="Follow the output until it ends (with the job)."
)
@click.option("--stderr", is_flag=True, help="The job's stderr instead of its stdout.")
@click.option(
    "--tail", type=click.IntRange(min=0), default=None, metavar="N",
    help="Only the last N lines (with -f: then what comes).",
)  # fmt: skip
@click.pass_obj
def logs_command(opts: Options, job: str, follow: bool, stderr: bool, tail: int | None) -> None:
    """Print a job's output (the stream asked for, on stdout, byte for byte).

    Without -f, for a finished job: all of its output. A job that has not finished has no
    complete output yet: without -f that is an error (exit 1); -f prints it from the start
    (or its last --tail lines), waits for a job not started yet, and follows it to the end.
    --json: one line per chunk, {"stream", "data"} (undecodable bytes as U+FFFD).
    """

    async def body() -> int:
        async with open_tracker(opts, "observer") as tracker:
            job_id = await resolve(tracker, job)
            state = await tracker.job_state(job_id)
            if not follow and not state.is_terminal:
                raise InvalidStateError(
                    f"job {job_id} is {state.name}: its output is not complete yet "
                    "(follow it with -f)", job_id=job_id,
                )  # fmt: skip
            name = "stderr" if stderr else "stdout"
            binary = _binary_stdout()
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            async with tracker.stream_output(job_id, stderr=stderr, tail=tail) as chunks:
                async for chunk in chunks:
                    if opts.json:
                        emit_json({"stream": name, "data": decoder.decode(chunk)})
                    else:
                        binary.write(chunk)
                        binary.flush()
            if opts.json and (rest := decoder.decode(b"", final=True)):
                emit_json({"stream": name, "data": rest})
        return 0

    run(body)


@cli.command("categories", context_settings=CONTEXT)
@click.pass_obj
def categories_command(opts: Options) -> None:
    """List the job categories: the engine's local images (one per tag)."""

    async def body() -> int:
        async with open_tracker(opts, "observer") as tracker:
            images = await tracker.list_job_categories()
        if opts.json:
            emit_json(images)
        else:
            for image in images:
                _out(image)
        return 0

    run(body)


@cli.command("machines", context_settings=CONTEXT)
@click.pass_obj
def machines_command(opts: Options) -> None:
    """List the engine's machine (DRMAA2's monitoring session; memory in KiB)."""

    async def body() -> int:
        async with open_monitor(opts) as monitor:
            machines = await monitor.get_all_machines()
        if opts.json:
            emit_json(machines)
        else:
            console().print(machines_table(machines))
        return 0

    run(body)


# -- acting on jobs ------------------------------------------------------------------------


def _control_command(action: JobControlAction, help_text: str) -> None:
    @cli.command(action.value, context_settings=CONTEXT, help=help_text)
    @click.argument("job")
    @click.pass_obj
    def command(opts: Options, job: str) -> None:
        async def body() -> int:
            async with open_tracker(opts, "worker") as tracker:
                job_id = await resolve(tracker, job)
                await tracker.job_control(job_id, action)
                if opts.json:
                    state = await tracker.job_state(job_id)
                    emit_json({"id": job_id, "action": action, "state": state})
            return 0

        run(body)


for _action, _help in [
    (JobControlAction.SUSPEND, "Suspend a running job (docker pause: every process stops)."),
    (JobControlAction.RESUME, "Resume a suspended job."),
    (JobControlAction.HOLD, "Hold a job that has not started (QUEUED_HELD)."),
    (JobControlAction.RELEASE, "Release a held job: it starts (or waits its turn)."),
    (JobControlAction.TERMINATE, "Terminate a job: killed, or never started (it ends FAILED)."),
]:
    _control_command(_action, _help)


@cli.command("rm", context_settings=CONTEXT)
@click.argument("job")
@click.pass_obj
def rm_command(opts: Options, job: str) -> None:
    """Delete a finished job (its container and anonymous volumes)."""

    async def body() -> int:
        async with open_tracker(opts, "worker") as tracker:
            job_id = await resolve(tracker, job)
            await tracker.delete_job(job_id)
        if opts.json:
            emit_json({"id": job_id, "deleted": True})
        return 0

    run(body)


# -- the web service -----------------------------------------------------------------------


@cli.command("serve", context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
    help="The port to bind (0: a free one, shown in the printed URL).",
)  # fmt: skip
@click.option(
    "--token", envvar="AIOTRACKER_TOKEN", show_envvar=True, default=None,
    help="The bearer token clients must send (default: a random one, made by the service).",
)  # fmt: skip
@click.option(
    "--allow-image", "allowed_images", multiple=True, metavar="PATTERN",
    help="An image pattern clients may submit jobs of (repeatable).",
)  # fmt: skip
@click.option("--observer", is_flag=True, help="Read only: no submission, no control.")
@click.pass_obj
def serve_command(
    opts: Options, host: str, port: int, token: str | None, allowed_images: tuple[str, ...],
    observer: bool,
) -> None:  # fmt: skip
    """Serve the session over HTTP (aiotracker.web) until Ctrl-C or SIGTERM (exit 0).

    Prints the dashboard's URL, with the token in its fragment, once it listens."""
    try:
        web = importlib.import_module("aiotracker.web")
        run_service = web.run_service
    except (ImportError, AttributeError) as exc:
        raise fail(
            f"the web service needs: pip install 'aiotracker[web]' ({exc})", EXIT_USAGE
        ) from None

    # The hidden labels variable reaches the service's tracker too (only when set: the
    # service's own defaults otherwise).
    extra: dict[str, Any] = {"tracker_options": {"labels": opts.labels}} if opts.labels else {}

    def call() -> int:
        try:
            result = run_service(
                session=opts.session, docker_url=opts.docker_url, host=host, port=port,
                token=token, allowed_images=list(allowed_images),
                role="observer" if observer else "worker", **extra,
            )  # fmt: skip
        except ValueError as exc:  # the service's checks of its options (a short token, ...)
            raise fail(str(exc), EXIT_USAGE) from None
        except OSError as exc:  # the address: in use, not ours, ...
            raise fail(f"cannot serve on {host}:{port}: {exc}", EXIT_FAILED) from None
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return result if isinstance(result, int) else 0

    guard(call)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
