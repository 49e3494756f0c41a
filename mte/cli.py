"""What every ``python -m mte.<verb>`` entry point shares: user errors end in one line, not a traceback.

Errors a user can fix (a missing raw dir, a foreign checkpoint, a broken upload) derive from :class:`UserError`;
entry points run their work inside :func:`user_errors`, which prints ``error: <message>`` on stderr and exits
with status 2. Anything else is a bug and keeps its traceback. Also here: how many cores the process may use, and
the garbage-collector helpers that keep heavy imports and the interpreter's exit cheap.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


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


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share), else all: the
    parser pool of prepare and torch's ``auto`` thread count both size themselves by it."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


def freeze_live_objects() -> None:
    """Exempt every object alive now from Python's cyclic garbage collector (``gc.freeze``).

    Why: a training process holds torch's, Lightning's and transformers' module graphs — millions of objects
    that live until exit. Each full collection walks all of them, and the interpreter's shutdown walks them once
    more: measured on the dev machine, exiting after ``import torch, pytorch_lightning`` took 1.3 s, 0.2 s after
    ``gc.freeze()``. Entry points call this once the long-lived objects exist (after set-up, and when the work is
    done). Reference counting still frees everything as usual, files are still flushed and ``atexit`` handlers
    still run; only cycles among the frozen objects are never reclaimed, which the process's exit does anyway.
    """
    gc.freeze()


@contextmanager
def imports_outside_gc() -> Iterator[None]:
    """Run a block of heavy imports (torch, Lightning) with the cyclic collector paused, then freeze what they
    loaded (:func:`freeze_live_objects`).

    Why: importing creates objects that live until exit, and the collector's full passes over the growing heap
    during the imports cost ~0.7 s of a training run's start-up (seven passes, measured with ``gc.callbacks``).
    Imports make next to no cyclic garbage, so pausing the collector frees nothing later than it would have.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        freeze_live_objects()
        if enabled:
            gc.enable()


# Values that are free text or file paths: quoted for Hydra by quote_free_values (see there).
FREE_VALUE_KEYS = ("query", "descriptor", "audio", "ckpt_path", "index_dir", "processed_dir")


def quote_free_values(argv: list[str], keys: tuple[str, ...] = FREE_VALUE_KEYS) -> list[str]:
    r"""Wrap ``key=value`` arguments of free-text/path keys in Hydra quotes, escaped, so any value works.

    Why: Hydra's override grammar rejects or reinterprets ordinary query text and file names — ``rock'n'roll``,
    ``synth-pop (80s)``, ``R&B: smooth``, ``dark, slow`` (a sweep!), ``epoch=3-step=9.ckpt`` — and a user should
    not need to know that. Values already in quotes, ``null`` and empty values are left to Hydra as typed.
    Escaping follows Hydra's rules: ``'`` → ``\'``; backslashes before a quote, ``${`` or the end are doubled;
    ``${`` → ``\${`` (literal text, never an interpolation).
    """
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        if sep and key in keys and value not in ("", "null") and not quoted:
            value = re.sub(r"\\+(?='|$|\$\{)", lambda m: m.group(0) * 2, value)
            arg = f"{key}='" + value.replace("'", "\\'").replace("${", "\\${") + "'"
        out.append(arg)
    return out


def plain_dict(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict of a config group (OmegaConf containers become dicts, interpolations resolved): the form
    hyper-parameters are pickled, logged and compared in."""
    if cfg is None:
        return {}
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)
