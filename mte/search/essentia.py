"""Audio file → an AcousticBrainz-shaped low-level document, computed with Essentia's ``MusicExtractor``.

Why: MARD's audio side is AcousticBrainz documents, i.e. the output of Essentia's music extractor, so a user's own
mp3/wav/flac only becomes searchable after the *same* extractor has described it. Search then treats the result
exactly like a downloaded descriptor file (``mte.data.descriptors.extract_features``).

Why the conversion is more than a dump of the pool: AcousticBrainz (and so MARD) was computed with the extractor of
Essentia 2.1-beta2 ("music 1.0"); the wheels on PyPI ship a newer one ("music 2.0"). The seed169/seed369 features
(MFCC mean/cov/icov, spectral rolloff and zero-crossing-rate statistics) are laid out identically in both, but
for ``lowlevel_all`` the newer extractor differs in three places, fixed here so its documents carry every name the
old ones do:

* ``rhythm.bpm_histogram_{first,second}_peak_{bpm,weight,spread}`` were dicts of statistics in music 1.0 (all
  equal to the one value; variances 0) and are bare numbers in music 2.0 → wrapped back into such dicts.
* music 2.0 stores BpmHistogramDescriptors' ``firstPeakSpread`` under ``..._first_peak_weight`` (overwriting the
  weight) and never writes ``..._first_peak_spread`` (Essentia's MusicRhythmDescriptors.cpp connects both outputs
  to the same pool key) → the six peak values are recomputed from the beat intervals with
  ``BpmHistogramDescriptors``, which reproduces the extractor's histogram exactly.
* music 1.0's single key estimate ``tonal.key_key/key_scale/key_strength`` (Essentia's ``Key`` with its then
  default "temperley" profile) became three profiles → ``key_temperley`` is copied to the old names.

Essentia is an optional dependency (the ``audio`` extra): importing this module never imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mte.cli import UserError

__all__ = [
    "AUDIO_SUFFIXES",
    "STATS",
    "AudioError",
    "essentia_available",
    "extract_descriptor",
    "pool_to_document",
]

# The statistics AcousticBrainz documents carry for every frame-wise descriptor (no 'stdev', unlike the newer
# extractor's default), so the feature names of our documents match MARD's.
STATS = ("min", "max", "dvar2", "median", "dmean2", "dmean", "var", "dvar", "mean")
# File types the extractor's FFmpeg-based loader reads. The one list: only used to word errors (here, and in
# mte.web.app for uploads whose name says audio while their content does not); the content decides, not the name.
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".aif", ".aiff",
                  ".wma", ".webm", ".mka")
_PEAK_NAMES = ("first_peak_bpm", "first_peak_weight", "first_peak_spread",
               "second_peak_bpm", "second_peak_weight", "second_peak_spread")
# BpmHistogramDescriptors' outputs, in the order its Python binding returns them (outputNames()).
_PEAK_OUTPUTS = ("firstPeakBPM", "firstPeakWeight", "firstPeakSpread",
                 "secondPeakBPM", "secondPeakWeight", "secondPeakSpread")
_INSTALL_HINT = "pip install 'mte[audio]' (Essentia wheels exist for Linux and macOS)"


class AudioError(ValueError, UserError):
    """An audio file that cannot be described; the message is one line naming the file (a user error)."""


def essentia_available() -> bool:
    """True when Essentia can be imported (the ``audio`` extra is installed)."""
    try:
        _essentia_standard()
    except ImportError:
        return False
    return True


def _essentia_standard() -> Any:
    """``essentia.standard`` with Essentia's console logging off (it prints INFO lines to stdout on import)."""
    try:
        import essentia
    except ImportError:
        raise ImportError(f"audio input needs Essentia, which is not installed: {_INSTALL_HINT}") from None
    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as es

    return es


def extract_descriptor(path: str | Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Describe an audio file like AcousticBrainz: ``{metadata, lowlevel, rhythm, tonal}`` nested dicts.

    Takes about 0.1× the track's duration on one core (≈25 s for a 5-minute song). Raises :class:`AudioError`
    (one line) for a missing, unreadable or non-audio file and ImportError (one line, naming the ``audio``
    extra) when Essentia is missing. ``progress`` receives short human-readable stage messages.
    """
    path = Path(path).expanduser()
    _check_readable(path)
    es = _essentia_standard()
    say = progress or (lambda _msg: None)
    say(f"extracting descriptors from {path.name} with Essentia's MusicExtractor (≈0.1× the track's length)")
    start = time.perf_counter()
    extractor = es.MusicExtractor(
        lowlevelStats=list(STATS), rhythmStats=list(STATS), tonalStats=list(STATS),
        mfccStats=["mean", "cov", "icov"], gfccStats=["mean", "cov", "icov"],
    )
    try:
        pool, _frames = extractor(str(path))
    except RuntimeError as e:  # Essentia reports every failure (unknown format, silence …) this way
        raise AudioError(f"{path}: Essentia cannot describe this file ({_first_line(e)})") from None
    doc = pool_to_document(pool)
    _acousticbrainz_compat(doc, es)
    say(f"descriptors computed in {time.perf_counter() - start:.1f} s")
    return doc


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if not path.is_file():
        raise AudioError(f"not an audio file: {path} is a directory")
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as e:
        raise AudioError(f"cannot read audio file {path}: {e.strerror or e}") from None
    if not head:
        raise AudioError(f"{path}: empty file, not audio")
    if head.lstrip()[:1] in (b"{", b"[") and path.suffix.lower() not in AUDIO_SUFFIXES:
        raise AudioError(f"{path}: looks like JSON, not audio (pass an AcousticBrainz document as descriptor=)")


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split()).removeprefix("In MusicExtractor.compute: ")
    return text[:200] or type(e).__name__


# ------------------------------------------------------------------------------------------ pool → document
def pool_to_document(pool: Any) -> dict[str, Any]:
    """An Essentia Pool (dotted descriptor names) → nested dicts of JSON types, as Essentia's JSON output nests.

    Done in memory rather than through ``YamlOutput(format='json')`` and a temp file: same structure, no disk.
    """
    doc: dict[str, Any] = {}
    for name in sorted(pool.descriptorNames()):
        *parents, leaf = name.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _to_json(pool[name])
    tags = doc.get("metadata", {}).get("tags")
    if isinstance(tags, dict):  # AcousticBrainz keeps every tag but the file name as a list of strings
        for key, value in list(tags.items()):
            if key != "file_name" and isinstance(value, str):
                tags[key] = [value]
    return doc


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.astype(np.float64).tolist() if value.dtype.kind in "fiub" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _constant_stats(value: float) -> dict[str, float]:
    """The statistics music 1.0 wrote for a single value: itself, no spread (alphabetical, as in its files)."""
    v = float(value)
    return {"dmean": 0.0, "dmean2": 0.0, "dvar": 0.0, "dvar2": 0.0, "max": v, "mean": v, "median": v, "min": v,
            "var": 0.0}


def _acousticbrainz_compat(doc: dict[str, Any], es: Any) -> None:
    """Rewrite a music 2.0 document's rhythm peaks and key into the music 1.0 layout (see the module docstring)."""
    rhythm = doc.setdefault("rhythm", {})
    peaks = _bpm_peaks(rhythm, es)
    for name, value in peaks.items():
        rhythm[f"bpm_histogram_{name}"] = _constant_stats(value)
    tonal = doc.setdefault("tonal", {})
    temperley = tonal.get("key_temperley")
    if "key_key" not in tonal and isinstance(temperley, dict):
        tonal["key_key"] = temperley.get("key")
        tonal["key_scale"] = temperley.get("scale")
        tonal["key_strength"] = temperley.get("strength")
    version = doc.setdefault("metadata", {}).setdefault("version", {})
    if isinstance(version, dict):
        version["mte_layout"] = "acousticbrainz music 1.0 (rhythm peaks, key) via mte.search.essentia"


def _bpm_peaks(rhythm: dict[str, Any], es: Any) -> dict[str, float]:
    """The six BPM-histogram peak values, recomputed from the beat positions (see the module docstring).

    Fewer than two beats give an empty interval list, for which BpmHistogramDescriptors returns zeros.
    """
    beats = np.asarray(rhythm.get("beats_position") or [], dtype=np.float32)
    intervals = np.diff(beats).astype(np.float32) if beats.size >= 2 else np.zeros(0, np.float32)
    algo = es.BpmHistogramDescriptors()
    try:
        by_output = dict(zip(algo.outputNames(), algo(intervals), strict=True))  # the binding's output order
    except RuntimeError:  # not seen in practice; never let a rhythm detail fail the whole extraction
        by_output = {}
    return {name: float(by_output.get(out, 0.0)) for name, out in zip(_PEAK_NAMES, _PEAK_OUTPUTS, strict=True)}
