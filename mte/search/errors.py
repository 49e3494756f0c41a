"""What every part of search shares: its one-line error and the progress callback type."""

from __future__ import annotations

from collections.abc import Callable

from mte.cli import UserError

Progress = Callable[[str], None]


class SearchError(ValueError, UserError):
    """A query or index that cannot be used; the message is one line saying what is wrong and what to do.

    A :class:`mte.cli.UserError`, so entry points print it as one ``error:`` line and exit with status 2.
    """


def quiet(_message: str) -> None:
    """The progress callback that says nothing."""
    return None


def one_line(e: BaseException) -> str:
    """An exception's message squeezed onto one short line."""
    return " ".join(str(e).split())[:200] or type(e).__name__
