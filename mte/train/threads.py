"""How many threads torch may use in a run: ``runtime.threads`` (``auto`` or a number), applied before any work.

Why a key: torch's intra-op pool starts one thread per core and every parallel op waits for all of them. On a CPU
that other processes share, a thread that loses its core stalls the whole op: measured on the 2-core dev machine
with two other jobs running, a bag-of-words step took 440 ms with torch's default of 2 threads against 24 ms with 1.
``auto`` therefore takes the cores this process may run on, less those the other processes keep busy, at least 1
and at most :data:`MAX_AUTO_THREADS`; ``OMP_NUM_THREADS``, when set, is the user's explicit choice and wins.
A number sets exactly that many.

How busy the other processes are is measured, not guessed from the load average: the 1-minute load average lags by
a minute, so each job of a sweep saw the job before it (a core's worth of load) and took 1 thread on an idle
2-core machine. :class:`CpuClock` reads the busy time of this process's CPUs from ``/proc/stat`` and subtracts this
process's own CPU time, over the window since the module was imported (the entry point imports it first, so the
window is the config composition) or since the previous run of the process; the load average is the fallback
where ``/proc/stat`` is not there.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from mte.cli import UserError, available_cores

AUTO = "auto"
MAX_AUTO_THREADS = 8  # ops of batch-128 steps stop scaling well before this


class ThreadsError(UserError):
    """``runtime.threads`` is neither ``auto`` nor a positive integer."""


def auto_threads(cores: int | None = None, load: float | None = None, env: Mapping[str, str] | None = None) -> int:
    """The ``auto`` thread count: ``OMP_NUM_THREADS`` when set to a positive integer, else the cores left idle by
    the other processes — ``cores − round(load)`` — clamped to ``[1, min(cores, MAX_AUTO_THREADS)]``.

    ``load``: cores' worth of CPU the other processes use; measured by :data:`CLOCK` when not given."""
    env = os.environ if env is None else env
    explicit = env.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    cores = available_cores() if cores is None else cores
    if load is None:
        load = CLOCK.others_busy()
    idle = cores - math.floor(load + 0.5)
    return max(1, min(idle, cores, MAX_AUTO_THREADS))


class CpuClock:
    """Cores' worth of CPU that processes other than this one used lately, on the CPUs this process may run on.

    Each reading covers the window since the previous one (the first: since construction); a window shorter than
    ``min_window`` seconds is first stretched by sleeping, since a few jiffies say nothing.
    """

    def __init__(self, stat_path: str = "/proc/stat", min_window: float = 0.2) -> None:
        self.stat_path, self.min_window = stat_path, min_window
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        """(wall seconds, busy seconds of this process's CPUs, this process's CPU seconds), or None off Linux."""
        try:
            allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
            with open(self.stat_path, encoding="ascii") as f:
                lines = f.read().splitlines()
        except (AttributeError, OSError):
            return None
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if name in allowed and len(fields) >= 5:
                # user nice system idle iowait irq softirq steal …: busy = all − idle − iowait (guest is in user)
                values = [int(v) for v in fields[:8]]
                busy += sum(values) - values[3] - values[4]
        return time.monotonic(), busy / tick, time.process_time()

    def others_busy(self) -> float:
        """Cores' worth of CPU the other processes used since the last reading (the load average without
        ``/proc/stat``)."""
        start = self._last
        if start is not None and time.monotonic() - start[0] < self.min_window:
            time.sleep(self.min_window - (time.monotonic() - start[0]))
        end = self._last = self._sample()
        if start is None or end is None or end[0] <= start[0]:
            try:
                return os.getloadavg()[0]
            except OSError:  # pragma: no cover - no load average on this platform
                return 0.0
        wall, busy, own = (b - a for a, b in zip(start, end, strict=True))
        return max(busy - own, 0.0) / wall


# Started on import: ``python -m mte.train`` imports this module before Hydra composes the config.
CLOCK = CpuClock()


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


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Flush denormal floats (below 1.2e-38) to zero inside the block; entered before torch's worker threads
    start, which then inherit the mode. On exit the calling thread returns to IEEE behaviour (what the caller had:
    other code in the process — a notebook, a test — may rely on denormals).

    Why: weights that get no gradient (a dead ReLU unit's) under weight decay, and their Adam moments, shrink
    geometrically into the denormal range, where every multiply takes a slow microcode path. Measured on the
    2-core dev machine: a 30-epoch run with ``model.optimizer.weight_decay=1e-3`` left 32,000 denormal weights in
    its heads and spent 39% of its time in the text head's ``Linear(300, 256)``; at full MARD size such a run's
    epoch went from 10 to 50 s. A value that small changes no similarity a model computes.
    """
    import torch

    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
