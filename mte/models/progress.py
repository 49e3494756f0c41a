"""A progress line for long one-off passes (the frozen-encoder feature pass): done/total, items/s and an ETA.

Why not tqdm: a training job's stderr is usually a log file (SLURM, nohup, Hydra multiruns), where tqdm's
carriage-return redraws become one unreadable line or thousands of lines. Here a terminal gets one line redrawn in
place at most ``tty_every`` seconds, and anything else gets a new plain line at most every ``log_every`` seconds —
both readable. The ETA is taken from a work measure (e.g. tokens) rather than the item count when the items are
unequal: the feature pass runs longest reviews first, so an item-based ETA would be far too pessimistic early on.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Report ``done / total`` items with a rate and an ETA on ``stream``.

    ``skip(items, work)`` accounts for work done before (resumed from disk): it counts towards done and the ETA's
    remaining work, not towards the rate. ``update(items, work)`` records freshly computed work. ``work`` defaults
    to the item count.
    """

    def __init__(
        self,
        total: int,
        total_work: float | None = None,
        desc: str = "",
        unit: str = "items",
        stream: TextIO | None = None,
        enabled: bool = True,
        log_every: float = 30.0,
        tty_every: float = 0.5,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.total_work = float(total_work if total_work is not None else total)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = tty_every if self.tty else log_every
        self.done = self.skipped = 0
        self.work_done = self.work_skipped = 0.0
        self.start = time.perf_counter()
        self._last_print = float("-inf")

    # -- accounting ----------------------------------------------------------------------------------------------
    def skip(self, items: int, work: float | None = None) -> None:
        self.done += items
        self.skipped += items
        w = float(items if work is None else work)
        self.work_done += w
        self.work_skipped += w

    def update(self, items: int, work: float | None = None) -> None:
        self.done += items
        self.work_done += float(items if work is None else work)
        now = time.perf_counter()
        if now - self._last_print >= self.every:
            self._emit(self.line(now))
            self._last_print = now

    # -- figures ---------------------------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def rate(self) -> float:
        """Items computed (not resumed) per second so far."""
        return (self.done - self.skipped) / max(self.elapsed, 1e-9)

    def eta(self) -> float | None:
        fresh = self.work_done - self.work_skipped
        if fresh <= 0:
            return None
        return (self.total_work - self.work_done) * self.elapsed / fresh

    def line(self, now: float | None = None) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = self.eta()
        resumed = f", {self.skipped:,} resumed" if self.skipped else ""
        return (
            f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%{resumed}) · "
            f"{self.rate():.1f} {self.unit}/s · elapsed {_clock(self.elapsed)} · "
            f"ETA {_clock(eta) if eta is not None else '?'}"
        )

    def _emit(self, text: str, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, summary: str | None = None) -> None:
        """The last line: ``summary`` if given, else the final progress line."""
        self._emit(summary if summary is not None else self.line(), final=True)
