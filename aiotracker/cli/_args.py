"""Parsing helpers of the command line (pure): ``K=V`` pairs, the hidden labels variable, the
command after ``--``, job states, exit statuses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import click

from .._exceptions import (
    DrmCommunicationError,
    InvalidArgumentError,
    TrackerError,
    UnsupportedOperationError,
)
from .._model import JobState

# Exit statuses of the command line (besides a job's own, from ``run --wait``).
EXIT_FAILED = 1  # a job failed, a state cannot be reached, any other library error
EXIT_USAGE = 2  # bad input: options, arguments, a template, an unknown job
EXIT_UNREACHABLE = 3  # the engine cannot be reached
EXIT_TIMEOUT = 124  # wait --timeout ran out (as timeout(1))
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

LABELS_VARIABLE = "AIOTRACKER_LABELS"


def parse_pair(text: str, what: str = "value") -> tuple[str, str]:
    """``K=V`` -> ``(K, V)``: the value may be empty and may hold ``=``; the key may not be
    empty. ``ValueError`` otherwise."""
    key, eq, value = text.partition("=")
    if not eq:
        raise ValueError(f"{what} {text!r} is not KEY=VALUE")
    if not key.strip():
        raise ValueError(f"{what} {text!r} has an empty key")
    if key != key.strip():
        raise ValueError(f"{what} {text!r}: the key has surrounding spaces")
    return key, value


def parse_pairs(pairs: Iterable[str], what: str = "value") -> dict[str, str]:
    """Several ``K=V``; a key given twice keeps its last value (as ``docker run -e``)."""
    return dict(parse_pair(p, what) for p in pairs)


def parse_labels(text: str | None) -> dict[str, str]:
    """The hidden ``AIOTRACKER_LABELS`` variable: ``k=v,k2=v2`` (empty or unset: none), put
    on every container the command's tracker makes (the tests mark theirs so)."""
    if not text or not text.strip():
        return {}
    return parse_pairs((p.strip() for p in text.split(",") if p.strip()), "label")


def split_command(words: Sequence[str]) -> tuple[str, list[str]]:
    """The words after ``--``: the first is the remote command, the rest its args. None:
    the image's own command (``("", [])``)."""
    if not words:
        return "", []
    return words[0], list(words[1:])


if TYPE_CHECKING:  # generic from click 8.4 on (the runtime base of older ones is not)
    _PairBase = click.ParamType[tuple[str, str]]
else:
    _PairBase = click.ParamType


class PairType(_PairBase):
    """A ``KEY=VALUE`` option value (``--env``)."""

    name = "KEY=VALUE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple) and len(value) == 2:
            return (str(value[0]), str(value[1]))  # already converted (a default)
        try:
            return parse_pair(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


STATE_CHOICE = click.Choice([s.value for s in JobState], case_sensitive=False)


def states_of(values: Iterable[str]) -> list[JobState]:
    return [JobState(v.lower()) for v in values]


def exit_status_of(exc: TrackerError) -> int:
    """The command's exit status for a library error: 3 when the engine cannot be reached, 2
    for bad input (an argument, a template, an unknown job or image, an operation
    aiotracker cannot do on Docker), 1 otherwise."""
    if isinstance(exc, DrmCommunicationError):
        return EXIT_UNREACHABLE
    if isinstance(exc, InvalidArgumentError | UnsupportedOperationError):
        return EXIT_USAGE
    return EXIT_FAILED


def job_exit_status(state: JobState | None, exit_status: int | None) -> int:
    """``run --wait``'s exit status: 0 for DONE, the job's exit status for FAILED (1 when it
    has none, or when it is 0: a job failed for another reason than its code)."""
    if state is JobState.DONE:
        return 0
    return exit_status if exit_status else EXIT_FAILED


def one_line(message: str) -> str:
    """A message on one line (an error's text may span several)."""
    return " ".join(message.split())
