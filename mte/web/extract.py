"""Audio → AcousticBrainz document in a child process, reporting Essentia's own stages as it goes.

Why a child process and not a thread: Essentia's ``MusicExtractor`` holds the GIL for its whole run (~30 s on a
5-minute track; measured: a thread running it starves the main thread completely), so inside the server process
every other request would wait for it. A child also keeps a crash or a runaway decode from taking the server down,
and can be killed on a time-out.

Why the progress is honest: the extractor logs a line when it enters each of its stages (read metadata → md5 and
EBU R128 loudness → replay gain → frame-wise features → aggregation). The child keeps that log on and the parent
(:func:`run_extraction`) turns each line into a step of the bar. A step's position is the share of the run that
precedes the stage, measured on a real 4:50 mp3 here; within a stage nothing is invented (the page shows the
elapsed time ticking, not a fake percentage).

The child is ``python -m mte.web.extract AUDIO OUT.json``; its stdout carries JSON event lines and Essentia's
log; the document goes to ``OUT.json``. It describes audio with :func:`mte.search.essentia.extract_descriptor`, the same
code ``mte.search`` uses, so uploads are searched exactly like files given on the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

# Essentia log line fragment → (bar position before the stage, what the page says).
STAGES: tuple[tuple[str, float, str], ...] = (
    ("Read metadata", 0.02, "reading the file's metadata"),
    ("Compute md5 audio hash", 0.03, "decoding the audio and measuring its loudness"),
    ("Replay gain", 0.30, "computing replay gain"),
    ("Compute audio features", 0.44, "computing frame-wise audio features (MFCC, spectrum, rhythm, tonality)"),
    ("Compute aggregation", 0.95, "aggregating the features into statistics"),
    ("All done", 0.97, "converting to the AcousticBrainz layout"),
)
EXIT_USER_ERROR = 3
# children still running, so a server shutting down can stop them instead of waiting for Essentia to finish
_CHILDREN: set[subprocess.Popen[str]] = set()
_CHILDREN_LOCK = threading.Lock()


class ExtractionError(RuntimeError):
    """The extractor failed; the message is one line a person can act on."""


def run_extraction(
    audio: Path,
    out: Path,
    progress: Callable[[float | None, str], None],
    timeout_s: float = 600.0,
) -> Path:
    """Describe ``audio`` in a child process, writing the document to ``out``; report stages via ``progress``."""
    progress(0.0, "starting Essentia's music extractor")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mte.web.extract", str(audio), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        errors="replace",
    )
    with _CHILDREN_LOCK:
        _CHILDREN.add(proc)
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout_s, stop)
    timer.start()
    errors: list[str] = []
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            tail = [*tail[-4:], line]
            if line.startswith("{"):
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if "error" in event:
                    errors.append(str(event["error"]))
                continue
            for marker, fraction, message in STAGES:
                if marker in line:
                    progress(fraction, message)
                    break
        returncode = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with _CHILDREN_LOCK:
            _CHILDREN.discard(proc)
    if errors:
        raise ExtractionError(errors[-1])
    if returncode != 0:
        if timed_out.is_set():
            raise ExtractionError(f"the extractor took longer than {timeout_s:.0f} s and was stopped")
        if returncode < 0:
            raise ExtractionError(f"the extractor crashed (signal {-returncode}) on this file")
        raise ExtractionError(f"the extractor failed (exit {returncode}): {tail[-1] if tail else 'no output'}")
    if not out.is_file():
        raise ExtractionError("the extractor wrote no document")
    return out


def stop_all() -> None:
    """Kill every extraction still running (server shutdown); their jobs end with an error."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for proc in children:
        if proc.poll() is None:
            proc.kill()


def _keep_stage_log() -> None:
    """Keep Essentia's INFO log on although :mod:`mte.search.essentia` silences it: its stage lines are progress."""
    import essentia

    base = type(essentia.log)
    setter = base.infoActive.fset

    class _StageLogger(base):  # type: ignore[misc, valid-type]
        infoActive = property(base.infoActive.fget, lambda self, _active: setter(self, True))

    essentia.log = _StageLogger()
    essentia.log.warningActive = False


def _emit(**event: object) -> None:
    sys.stdout.write(orjson.dumps(event).decode() + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Child entry point: ``python -m mte.web.extract AUDIO OUT.json``; exit 0, or 3 with an ``error`` event."""
    if len(argv) != 2:
        print("usage: python -m mte.web.extract AUDIO OUT.json", file=sys.stderr)
        return 2
    from mte.search.essentia import AudioError, extract_descriptor

    audio, out = Path(argv[0]), Path(argv[1])
    start = time.perf_counter()
    try:
        _keep_stage_log()
        doc = extract_descriptor(audio, progress=lambda msg: _emit(message=msg))
    except (AudioError, ImportError) as e:
        # the parent knows the uploaded file's real name; the temp path would only confuse the page
        _emit(error=str(e).replace(f"{audio}: ", "").replace(str(audio), "the file"))
        return EXIT_USER_ERROR
    tmp = out.with_suffix(".part")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
    tmp.replace(out)
    _emit(done=True, seconds=round(time.perf_counter() - start, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
