"""What every ``python -m mte.<verb>`` entry point shares: user errors end in one line, not a traceback.

Errors a user can fix (a missing raw dir, a foreign checkpoint, a broken upload) derive from :class:`UserError`;
entry points run their work inside :func:`user_errors`, which prints ``error: <message>`` on stderr and exits
with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """An error the user can fix; its message is one line naming the file or value and the problem."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`UserError` into ``error: …`` on stderr and exit status 2."""
    try:
        yield
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
