"""How many threads torch may use in a run: ``runtime.threads`` (``auto`` or a number), applied before any work.

Why a key: torch's intra-op pool starts one thread per core and every parallel op waits for all of them. On a CPU
that other processes share, a thread that loses its core stalls the whole op: measured on the 2-core dev machine
with two other jobs running, a bag-of-words step took 440 ms with torch's default of 2 threads against 24 ms with 1.
The steps of these models are small (batch 128, a few hundred columns), so extra threads buy little even on an idle
machine, and a lost core costs an order of magnitude. ``auto`` therefore takes the cores this process may run on,
less what the other processes already keep busy (the 1-minute load average), at least 1 and at most
:data:`MAX_AUTO_THREADS`; ``OMP_NUM_THREADS``, when set, is the user's explicit choice and wins over ``auto``.
A number sets exactly that many.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from typing import Any

from mte.cli import UserError

AUTO = "auto"
MAX_AUTO_THREADS = 8  # ops of batch-128 steps stop scaling well before this


class ThreadsError(UserError):
    """``runtime.threads`` is neither ``auto`` nor a positive integer."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share), else all."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


def auto_threads(cores: int | None = None, load: float | None = None, env: Mapping[str, str] | None = None) -> int:
    """The ``auto`` thread count: ``OMP_NUM_THREADS`` when set to a positive integer, else the cores left idle by
    the other processes — ``cores − round(load)`` — clamped to ``[1, min(cores, MAX_AUTO_THREADS)]``."""
    env = os.environ if env is None else env
    explicit = env.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # pragma: no cover - no load average on this platform
            load = 0.0
    idle = cores - math.floor(load + 0.5)
    return max(1, min(idle, cores, MAX_AUTO_THREADS))


def parse_threads(value: Any) -> int | None:
    """``runtime.threads`` as a positive int, or None for ``auto`` (and unset); anything else is a ThreadsError."""
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ThreadsError(f"runtime.threads={value!r}: must be 'auto' or a positive integer")
    return value


def resolve_threads(runtime: Mapping[str, Any] | None) -> int:
    """The thread count a ``runtime`` config group asks for (``auto`` resolved now)."""
    requested = parse_threads((runtime or {}).get("threads", AUTO))
    return auto_threads() if requested is None else requested


def apply_threads(threads: int) -> int:
    """Set torch's intra-op and inter-op thread counts; returns the intra-op count now in force.

    The inter-op pool can only be sized before its first use; if something already used it, it is left as it is
    (these models run no inter-op parallel work).
    """
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # the pool was already started in this process
        torch.set_num_interop_threads(threads)
    return torch.get_num_threads()
