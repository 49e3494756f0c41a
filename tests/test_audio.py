"""Audio → AcousticBrainz-shaped document with Essentia's MusicExtractor (``mte.search.essentia``).

Generated audio (a few seconds of a pulsing tone with noise and clicks, written with numpy + ``wave``) runs in
every test session where Essentia is installed; the real 4:50 track from ``shared/data/audio`` runs as a slow
test. Both check that the result feeds every feature set, and that its ``lowlevel_all`` names cover those of real
AcousticBrainz documents (MARD's extractor is older than the one on PyPI: see mte/search/essentia.py).
"""

from __future__ import annotations

import json
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO

from mte.data.descriptors import FEATURE_SETS, descriptor_tags, extract_features
from mte.search.essentia import STATS, AudioError, extract_descriptor

AB_DOCS = sorted((Path(__file__).resolve().parent / "data" / "acousticbrainz").glob("*.json"))
# In CI the shared dir sits beside the repo clone (../shared); the developer checkout has the same layout.
REAL_TRACK = REPO.parent / "shared" / "data" / "audio" / "machine_wars.mp3"
ESSENTIA_MISSING = "Essentia (the `audio` extra: pip install 'mte[audio]') is not installed"


def write_test_wav(path: Path, seconds: float = 5.0, sr: int = 44100, bpm: float = 120.0) -> Path:
    """A mono 16-bit WAV: a 440 Hz tone with a 2 Hz tremolo, some noise and a click on every beat."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
    for beat in np.arange(0, seconds, 60.0 / bpm):
        start = int(beat * sr)
        x[start : start + 200] += 0.8
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def tone_doc(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("essentia", reason=ESSENTIA_MISSING)
    return extract_descriptor(write_test_wav(tmp_path_factory.mktemp("audio") / "tone.wav"))


def _check_acousticbrainz_shape(doc: dict) -> None:
    assert {"metadata", "lowlevel", "rhythm", "tonal"} <= set(doc)
    for feature_set in FEATURE_SETS:
        feats = extract_features(doc, feature_set)
        values = feats if isinstance(feats, np.ndarray) else np.array(list(feats.values()))
        assert np.isfinite(values).all()
    assert extract_features(doc, "seed369").shape == (369,)
    names = set(extract_features(doc, "lowlevel_all"))
    for ab in AB_DOCS:  # a model trained on MARD (lowlevel_all) finds every feature it knows
        missing = set(extract_features(json.loads(ab.read_text()), "lowlevel_all")) - names
        assert not missing, f"{ab.name}: {sorted(missing)[:5]}"
    assert set(doc["lowlevel"]["spectral_rolloff"]) == set(STATS)  # no 'stdev': MARD's statistics only
    for peak in ("first_peak_bpm", "first_peak_weight", "first_peak_spread",
                 "second_peak_bpm", "second_peak_weight", "second_peak_spread"):
        assert set(doc["rhythm"][f"bpm_histogram_{peak}"]) == set(STATS)
    assert doc["tonal"]["key_scale"] in ("major", "minor") and isinstance(doc["tonal"]["key_strength"], float)
    json.dumps(doc)  # plain JSON types only


def test_generated_tone_gives_an_acousticbrainz_shaped_document(tone_doc: dict) -> None:
    _check_acousticbrainz_shape(tone_doc)
    assert tone_doc["metadata"]["tags"]["file_name"] == "tone.wav"
    assert tone_doc["metadata"]["audio_properties"]["length"] == pytest.approx(5.0, abs=0.05)


def test_rhythm_peaks_are_recomputed_correctly(tone_doc: dict) -> None:
    # clicks every 0.5 s: the histogram's first peak is 120 BPM; weights are shares of the beat intervals
    rhythm = tone_doc["rhythm"]
    assert rhythm["bpm_histogram_first_peak_bpm"]["mean"] == pytest.approx(120, abs=6)
    weight = rhythm["bpm_histogram_first_peak_weight"]["mean"]
    assert 0 < weight <= 1 and weight >= rhythm["bpm_histogram_second_peak_weight"]["mean"]
    assert rhythm["bpm_histogram_first_peak_bpm"]["var"] == 0.0


def test_progress_messages(tmp_path: Path) -> None:
    pytest.importorskip("essentia", reason=ESSENTIA_MISSING)
    messages: list[str] = []
    extract_descriptor(write_test_wav(tmp_path / "a.wav", seconds=3), progress=messages.append)
    assert len(messages) == 2 and "MusicExtractor" in messages[0] and "computed" in messages[1]


def test_unusable_files_are_one_line_audio_errors(tmp_path: Path) -> None:
    pytest.importorskip("essentia", reason=ESSENTIA_MISSING)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = tmp_path / "silent.wav"
    with wave.open(str(silent), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(44100)
        f.writeframes(b"\0\0" * 44100)
    cases = {
        text: "Essentia cannot describe",
        empty: "empty file",
        silent: "silent",
        tmp_path / "missing.flac": "not found",
        tmp_path: "directory",
        AB_DOCS[0]: "looks like JSON",
    }
    for path, expected in cases.items():
        with pytest.raises(AudioError, match=expected) as info:
            extract_descriptor(path)
        assert "\n" not in str(info.value)


def test_missing_essentia_names_the_audio_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "essentia", None)  # import essentia → ImportError
    monkeypatch.setitem(sys.modules, "essentia.standard", None)
    with pytest.raises(ImportError, match=r"mte\[audio\]") as info:
        extract_descriptor(write_test_wav(tmp_path / "a.wav", seconds=1))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_real_track_gives_an_acousticbrainz_shaped_document(require_resource) -> None:
    pytest.importorskip("essentia", reason=ESSENTIA_MISSING)
    require_resource(REAL_TRACK.is_file(), f"real test track not found at {REAL_TRACK} (the shared dir beside the "
                     "repo)")
    start = time.perf_counter()
    doc = extract_descriptor(REAL_TRACK)
    elapsed = time.perf_counter() - start
    _check_acousticbrainz_shape(doc)
    assert doc["metadata"]["audio_properties"]["length"] == pytest.approx(290.6, abs=1.0)
    assert 60 <= doc["rhythm"]["bpm"] <= 200
    assert descriptor_tags(doc)["mbid"] is None  # the file carries no MusicBrainz tags
    print(f"MusicExtractor on {REAL_TRACK.name}: {elapsed:.1f} s")
