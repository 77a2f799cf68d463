"""The ``aiotracker`` command line (``pip install 'aiotracker[cli]'``): click and rich are
imported here only, never by the library.

``main`` is the console script; the commands are in ``_app``, their running and errors in
``_runner``, parsing in ``_args``, output in ``_render``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

MISSING = "the command line needs: pip install 'aiotracker[cli]'"

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (``argv``: the arguments, default ``sys.argv[1:]``); returns the
    exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130  # Ctrl-C before a command had control (the commands say 130 too)


def _main(argv: Sequence[str] | None) -> int:
    try:
        import click
        import rich  # noqa: F401
    except ImportError:
        print(MISSING, file=sys.stderr)
        return 2
    from ._app import cli

    try:
        status = cli.main(
            args=list(argv) if argv is not None else None, prog_name="aiotracker",
            standalone_mode=False,
        )  # fmt: skip
    except click.exceptions.Abort:
        return 130  # click's word for a Ctrl-C while it had control
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return status if isinstance(status, int) else 0
