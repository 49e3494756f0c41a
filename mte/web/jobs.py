"""Background jobs for slow uploads: a bounded queue, one worker, progress the page can poll.

Essentia's music extractor takes ~30 s on a 5-minute track and holds the GIL for all of it, so it must not run
in a request handler (nor in a thread of the server process: every other request would stall). A job runs in a
worker thread that only *waits* on an extraction subprocess (see :mod:`mte.web.extract`), so searches keep being
answered meanwhile. One worker, because the machine this targets has two cores and one extraction already uses
one; a few more uploads may wait in the queue, and beyond that the server says it is busy rather than piling up.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# progress(fraction or None, message): fraction in [0, 1] when it is known, None for "working, no estimate"
Progress = Callable[[float | None, str], None]


class QueueFull(RuntimeError):
    """Too many uploads are waiting; the client should try again later (HTTP 429)."""


@dataclass
class Job:
    """One upload being processed; :meth:`snapshot` is what ``GET /api/jobs/{id}`` returns."""

    id: str
    kind: str
    filename: str
    status: str = "queued"  # queued | running | done | error
    progress: float | None = 0.0
    message: str = "waiting for the extractor"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def snapshot(self, position: int | None = None) -> dict[str, Any]:
        now = self.finished or time.time()
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "filename": self.filename,
            "status": self.status,
            "progress": self.progress,
            "message": self.message,
            "elapsed_s": round(now - self.started, 1) if self.started else 0.0,
        }
        if position is not None:
            out["queue_position"] = position
        if self.status == "done":
            out["result"] = self.result
        if self.status == "error":
            out["error"] = self.error
        return out


class JobManager:
    """Runs jobs one at a time in a worker thread; keeps the last ``keep`` finished jobs for polling."""

    def __init__(self, max_pending: int = 4, keep: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mte-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self._keep = keep

    def submit(self, kind: str, filename: str, work: Callable[[Progress], dict[str, Any]]) -> Job:
        """Queue ``work(progress)``; its return value becomes the job's result, a raised error its message."""
        with self._lock:
            pending = sum(j.status in ("queued", "running") for j in self._jobs.values())
            if pending >= self._max_pending:
                raise QueueFull(f"{pending} uploads are already being processed; try again in a minute")
            job = Job(id=uuid.uuid4().hex[:16], kind=kind, filename=filename)
            self._jobs[job.id] = job
            self._prune()
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A consistent snapshot of the job (with its place in the queue while it waits), or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            position = None
            if job.status == "queued":
                queued = [j.id for j in self._jobs.values() if j.status == "queued"]
                position = queued.index(job.id) + 1
            return job.snapshot(position)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job, work: Callable[[Progress], dict[str, Any]]) -> None:
        def progress(fraction: float | None, message: str) -> None:
            with self._lock:
                job.progress = None if fraction is None else min(max(float(fraction), 0.0), 1.0)
                job.message = message

        with self._lock:
            job.status, job.started, job.message = "running", time.time(), "starting"
        try:
            result = work(progress)
        except Exception as e:  # any failure must reach the page as a message, not kill the worker
            message = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            with self._lock:
                job.status, job.error, job.finished = "error", message, time.time()
            return
        with self._lock:
            job.status, job.result, job.progress, job.message = "done", result, 1.0, "done"
            job.finished = time.time()

    def _prune(self) -> None:
        """Forget the oldest finished jobs beyond ``keep`` (called with the lock held)."""
        finished = [k for k, j in self._jobs.items() if j.status in ("done", "error")]
        for key in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[key]
