"""Descriptor documents: the template's numeric leaves as one vector, perturbed in a few vectorised steps.

The world's random loadings from the latent factors to every descriptor value are drawn once per process and world.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from mte.data.synth.albums import _Album
from mte.data.synth.vocabulary import _FACTOR_HI, _FACTOR_LO, _GENRE_TAGS, _TRACK_SD, GENRES
from mte.data.synth.world import world_rng

_CHORD_KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_ESSENTIA_BUILDS = (
    "70f2e5ece6736b2c40cc944ad0e695b16b925413",
    "26c37b627ab5a2028d412893e0969599b764ad4d",
    "cead25079874084f62182a551b7393616cd33d87",
)
_NAN_SENTINEL = 1.2345678901234567e300
_NAN_SENTINEL_JSON = orjson.dumps(_NAN_SENTINEL)
_NAN_TARGETS = ("spectral_rolloff", "zerocrossingrate")
_STATS = ("dmean", "dmean2", "dvar", "dvar2", "max", "mean", "median", "min", "var")


@dataclass(frozen=True)
class _Slot:
    """A numeric leaf of the template: values [start, stop) of the flat vector, with its shape and int-ness."""

    start: int
    stop: int
    shape: tuple[int, ...]
    is_int: bool


_N_HIDDEN = 16
_BANDED = ("lowlevel.barkbands", "lowlevel.melbands", "lowlevel.erbbands")
_FROZEN_GROUPS = (
    "lowlevel.mfcc",
    "lowlevel.gfcc",
    "lowlevel.silence_rate_20dB",
    "lowlevel.silence_rate_30dB",
    "lowlevel.average_loudness",
    "rhythm.bpm",
    "rhythm.beats_count",
    "rhythm.onset_rate",
    "rhythm.danceability",
    "tonal.tuning_frequency",
    "tonal.chords_histogram",
)
_UNIT_BOUNDED = (
    "lowlevel.pitch_salience",
    "lowlevel.zerocrossingrate",
    "lowlevel.silence_rate_60dB",
    "rhythm.beats_loudness_band_ratio",
    "tonal.hpcp",
    "tonal.thpcp",
    "tonal.key_strength",
    "tonal.chords_strength",
    "tonal.chords_changes_rate",
    "tonal.chords_number_rate",
    "tonal.tuning_diatonic_strength",
    "tonal.tuning_nontempered_energy_ratio",
)


@dataclass(frozen=True)
class _Model:
    """The template flattened plus the fixed 'world' (random loadings) mapping factors to descriptor values."""

    template: dict[str, Any]
    skeleton: dict[str, Any]
    base: np.ndarray  # float64 template values
    slots: dict[str, _Slot]  # dotted path → slot
    group: np.ndarray  # group index per value
    groups: tuple[str, ...]
    kind: np.ndarray  # 0 location (mean/median/min/max/plain), 1 derivative means, 2 variances
    frozen: np.ndarray  # bool: value set by special code or kept
    tilt: np.ndarray  # spectral tilt per band value (banded groups), 0 elsewhere
    lo: np.ndarray
    hi: np.ndarray
    bounded: np.ndarray  # bool: location values of bounded descriptors, perturbed in logit space
    base_logit: np.ndarray  # logit(base / hi) where bounded
    order_idx: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # min, max, mean, median (aligned)
    w1: np.ndarray  # (_N_HIDDEN, 10) first layer
    b1: np.ndarray
    genre_embed: np.ndarray  # (len(GENRES), 4)
    a_loc: np.ndarray  # (n_values, _N_HIDDEN)
    a_spread: np.ndarray
    mfcc_mean_w: np.ndarray  # (2, 13, _N_HIDDEN): mfcc, gfcc
    mfcc_std_w: np.ndarray
    corr_basis: np.ndarray  # (2, 4, 13, 13): correlation 'textures' mixed by the hidden code


def _template_path() -> Path:
    return Path(str(resources.files("mte").joinpath("resources", "descriptor_template.json")))


def _flatten(node: Any, path: tuple[str, ...], values: list[float], slots: dict[str, _Slot]) -> Any:
    """Replace every numeric leaf by a _Slot (recording its values); keep strings; None for rebuilt leaves."""
    dotted = ".".join(path)
    if dotted in ("metadata", "rhythm.beats_position"):
        return None
    if isinstance(node, dict):
        return {k: _flatten(v, (*path, k), values, slots) for k, v in node.items()}
    if isinstance(node, bool | str):
        return node
    if isinstance(node, int | float | list):
        arr = np.asarray(node, dtype=np.float64)
        start = len(values)
        values.extend(arr.ravel().tolist())
        slot = _Slot(start, len(values), arr.shape, isinstance(node, int))
        slots[dotted] = slot
        return slot
    raise TypeError(f"unexpected template leaf at {dotted}: {type(node).__name__}")


@functools.lru_cache(maxsize=4)
def _model(world_id: int = 0) -> _Model:
    """Load and flatten the template once per process and draw the world's parameters (its factor→sound rules)."""
    template = orjson.loads(_template_path().read_bytes())
    values: list[float] = []
    slots: dict[str, _Slot] = {}
    skeleton = _flatten(template, (), values, slots)
    base = np.array(values)
    n = base.size
    group_names: list[str] = []
    group = np.zeros(n, np.int64)
    kind = np.zeros(n, np.int64)
    tilt = np.zeros(n)
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    frozen = np.zeros(n, bool)
    order: dict[str, dict[str, _Slot]] = {}
    for dotted, slot in slots.items():
        parts = dotted.split(".")
        stat = parts[-1] if parts[-1] in _STATS else None
        gname = ".".join(parts[:-1]) if stat else dotted
        if gname not in group_names:
            group_names.append(gname)
        sl = slice(slot.start, slot.stop)
        group[sl] = group_names.index(gname)
        kind[sl] = 2 if stat in ("var", "dvar", "dvar2") else 1 if stat in ("dmean", "dmean2") else 0
        frozen[sl] = gname in _FROZEN_GROUPS or gname.startswith("rhythm.bpm_histogram")
        if gname in _BANDED:
            width = slot.stop - slot.start
            tilt[sl] = np.arange(width) / max(1, width - 1) - 0.5
        if gname in _UNIT_BOUNDED and kind[slot.start] == 0:
            lo[sl], hi[sl] = 0.0, 1.0
        if gname == "lowlevel.dissonance" and kind[slot.start] == 0:
            lo[sl], hi[sl] = 0.0, 0.5
        if stat in ("min", "max", "mean", "median") and not frozen[slot.start]:
            order.setdefault(gname, {})[stat] = slot
    bounded = np.isfinite(hi) & (base > 0.0)
    frac = np.clip(np.where(bounded, base / np.where(np.isfinite(hi), hi, 1.0), 0.5), 1e-4, 1.0 - 1e-4)
    base_logit = np.where(bounded, np.log(frac / (1.0 - frac)), 0.0)
    order_idx = tuple(
        np.concatenate([np.arange(s[k].start, s[k].stop) for s in order.values() if len(s) == 4])
        for k in ("min", "max", "mean", "median")
    )
    world = world_rng(world_id, 0)
    n_groups = len(group_names)
    g_loc = world.normal(0.0, 0.08, (n_groups, _N_HIDDEN))
    g_spread = world.normal(0.0, 0.05, (n_groups, _N_HIDDEN))
    a_loc = g_loc[group] + world.normal(0.0, 0.04, (n, _N_HIDDEN))
    a_spread = g_spread[group] + world.normal(0.0, 0.02, (n, _N_HIDDEN))
    a_loc[frozen] = 0.0
    a_spread[frozen] = 0.0
    corr_basis = np.stack([[_random_corr(world) for _ in range(4)] for _ in range(2)])
    return _Model(
        template=template,
        skeleton=skeleton,
        base=base,
        slots=slots,
        group=group,
        groups=tuple(group_names),
        kind=kind,
        frozen=frozen,
        tilt=tilt,
        lo=lo,
        hi=hi,
        bounded=bounded,
        base_logit=base_logit,
        order_idx=order_idx,  # type: ignore[arg-type]
        w1=world.normal(0.0, 1.5 / math.sqrt(10), (_N_HIDDEN, 10)),
        b1=world.normal(0.0, 0.5, _N_HIDDEN),
        genre_embed=world.normal(0.0, 1.0, (len(GENRES), 4)),
        a_loc=a_loc,
        a_spread=a_spread,
        mfcc_mean_w=world.normal(0.0, 1.0 / math.sqrt(_N_HIDDEN), (2, 13, _N_HIDDEN)),
        mfcc_std_w=world.normal(0.0, 1.0 / math.sqrt(_N_HIDDEN), (2, 13, _N_HIDDEN)),
        corr_basis=corr_basis,
    )


def _random_corr(rng: np.random.Generator, dim: int = 13, rank: int = 4) -> np.ndarray:
    """A random correlation matrix (low-rank + identity, unit diagonal): one MFCC 'texture'."""
    f = rng.normal(0.0, 1.0, (dim, rank))
    c = (f[:, None, :] * f[None, :, :]).sum(-1) + np.eye(dim)
    d = 1.0 / np.sqrt(np.diag(c))
    return c * d[:, None] * d[None, :]


def _matvec(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m @ v without BLAS: numpy's own summation is the same in every process, so bytes stay identical."""
    return (m * v).sum(-1)


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Gauss-Jordan inverse of a small SPD matrix (no pivoting needed: SPD pivots stay positive).

    Why not np.linalg.inv: LAPACK via OpenBLAS starts its own threads in every worker process; on a 2-core
    machine they fight the workers (measured: 2 workers slower than 1). This loop is 13 numpy steps.
    """
    n = a.shape[0]
    m = np.concatenate([a, np.eye(n)], axis=1)
    for k in range(n):
        m[k] /= m[k, k]
        col = m[:, k].copy()
        col[k] = 0.0
        m -= col[:, None] * m[k][None, :]
    return m[:, n:]


def _hidden(model: _Model, f: np.ndarray, genre: int) -> np.ndarray:
    """The non-linear code of a track's factors: tanh(W1·z + b1), z = scaled factors ⊕ genre embedding."""
    z = np.concatenate(
        [[f[0], f[1], (f[2] - 110.0) / 35.0, f[3], 2.0 * f[4] - 1.0, 2.0 * f[5] - 1.0], 0.35 * model.genre_embed[genre]]
    )
    return np.tanh(_matvec(model.w1, z) + model.b1)


def _hand_shifts(model: _Model, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hand-made (log-scale) location/spread shifts: the physically meaningful part of the mapping."""
    v, a, bpm, b, d, c = f
    t = (bpm - 110.0) / 35.0
    bright = 0.5 * b + 0.35 * d * d - 0.3 * c + 0.15 * math.tanh(2.0 * a)
    energy = 0.4 * a + 0.3 * d
    shifts = {
        "lowlevel.spectral_centroid": (bright, 0.1 * a),
        "lowlevel.spectral_rolloff": (1.2 * bright, 0.15 * a + 0.1 * d),
        "lowlevel.zerocrossingrate": (0.4 * b + 0.5 * d - 0.25 * c + 0.2 * b * d, 0.1 * a),
        "lowlevel.dissonance": (1.2 * d - 0.5 * c + 0.2 * a - 0.3, 0.1 * d),  # logit units
        "lowlevel.hfc": (0.6 * b + 0.4 * d, 0.2 * a),
        "lowlevel.spectral_flux": (0.3 * a + 0.1 * t, 0.2 * a),
        "lowlevel.spectral_complexity": (0.3 * d + 0.2 * (1.0 - c), 0.0),
        "lowlevel.spectral_energy": (energy, 0.2 * a),
        "lowlevel.spectral_rms": (energy / 2.0, 0.1 * a),
        "lowlevel.pitch_salience": (0.2 * c - 0.2 * d, 0.0),
        "lowlevel.spectral_strongpeak": (0.3 * c - 0.3 * d, 0.0),
        "lowlevel.spectral_spread": (0.5 * b * (1.0 + d), 0.0),
        "lowlevel.barkbands_flatness_db": (0.4 * d, 0.0),
        "lowlevel.melbands_flatness_db": (0.4 * d, 0.0),
        "lowlevel.erbbands_flatness_db": (0.4 * d, 0.0),
        "lowlevel.dynamic_complexity": (0.6 * c - 0.5 * d - 0.2 * a, 0.0),
        "rhythm.beats_loudness": (energy, 0.2 * a),
        "tonal.hpcp_entropy": (0.3 * d - 0.2 * c, 0.0),
        "tonal.key_strength": (0.15 * c - 0.1 * d + 0.05 * v, 0.0),
    }
    loc, spread = np.zeros(len(model.groups)), np.zeros(len(model.groups))
    for name, (dl, ds) in shifts.items():
        gi = model.groups.index(name)
        loc[gi], spread[gi] = dl, ds
    return loc, spread


def _generic_values(model: _Model, f: np.ndarray, h: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All non-special numeric leaves in one vectorised step: base · exp(stat-weighted loc/spread + noise)."""
    hand_loc, hand_spread = _hand_shifts(model, f)
    loc = _matvec(model.a_loc, h) + hand_loc[model.group] + (1.5 * f[3] + 0.5 * f[4]) * model.tilt
    spread = _matvec(model.a_spread, h) + hand_spread[model.group]
    weight_loc = np.array([1.0, 1.0, 2.0])[model.kind]
    weight_spread = np.array([0.0, 1.0, 2.0])[model.kind]
    noise = rng.normal(0.0, 1.0, model.base.size) * np.array([0.03, 0.05, 0.08])[model.kind]
    log_mult = weight_loc * loc + weight_spread * spread + noise
    log_mult[model.frozen] = 0.0
    vals = model.base * np.exp(log_mult)
    b = model.bounded  # a ratio near its bound must not saturate: shift it in logit space instead
    vals[b] = model.hi[b] / (1.0 + np.exp(-(model.base_logit[b] + log_mult[b])))
    vals = np.clip(vals, model.lo, model.hi)
    i_min, i_max, i_mean, i_med = model.order_idx
    centre = np.stack([vals[i_mean], vals[i_med]])
    vals[i_min] = np.minimum(vals[i_min], centre.min(0))
    vals[i_max] = np.maximum(vals[i_max], centre.max(0))
    return vals


def _cepstrum(
    model: _Model, which: int, name: str, f: np.ndarray, h: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MFCC/GFCC mean, SPD cov and its inverse: std and correlation both move with the factors and genre.

    cov = S·corr·S with corr a convex mix of the template's correlation and 'textures' weighted by the hidden
    code (so the factors, not the genre label, shape it), plus a per-track PSD term, renormalised to unit
    diagonal — SPD by construction, so icov always exists. An earlier genre-specific correlation made genre
    ~97% separable from the covariance alone: far easier than real audio, so it went.
    """
    t = model.template["lowlevel"][name]
    mean0, cov0 = np.array(t["mean"]), np.array(t["cov"])
    _v, a, _bpm, b, d, c = f
    mean = mean0 + 8.0 * _matvec(model.mfcc_mean_w[which], h) + rng.normal(0.0, 2.0, 13)
    mean[0] += 90.0 * (0.5 * a + 0.6 * d - 0.4 * c) + rng.normal(0.0, 15.0)
    mean[1] += -40.0 * b + 20.0 * c
    std0 = np.sqrt(np.diag(cov0))
    corr0 = cov0 / std0[:, None] / std0[None, :]
    log_std = np.log(std0) + 0.25 * _matvec(model.mfcc_std_w[which], h) + rng.normal(0.0, 0.04, 13)
    log_std[0] += 0.3 * a + 0.2 * d - 0.2 * c
    e = rng.normal(0.0, 0.25, (13, 3))
    mix = np.exp(2.0 * h[4 * which : 4 * which + 4])
    texture = (model.corr_basis[which] * (mix / mix.sum())[:, None, None]).sum(0)
    corr = 0.8 * corr0 + 0.2 * texture + (e[:, None, :] * e[None, :, :]).sum(-1)
    dn = 1.0 / np.sqrt(np.diag(corr))
    corr = corr * dn[:, None] * dn[None, :]
    s = np.exp(log_std)
    cov = (corr * s[:, None] * s[None, :]).astype(np.float32).astype(np.float64)
    cov = (cov + cov.T) / 2.0
    icov = _spd_inverse(cov)
    icov = (icov + icov.T) / 2.0
    return mean, cov, icov


@dataclass
class _TrackInfo:
    """What the descriptor document needs to know about its track besides the factors."""

    album: _Album
    song_no: int  # 0-based position in album.songs
    mbid: str
    genre_tag: bool
    asin_tag: bool


def _track_factors(album: _Album, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The track's factors (album's + per-track noise) and its measured bpm (with octave errors, like Essentia)."""
    f = np.clip(album.factors + rng.normal(0.0, _TRACK_SD), _FACTOR_LO, _FACTOR_HI)
    bpm = float(f[2])
    if rng.random() < 0.04:
        bpm = float(np.clip(bpm * (2.0 if bpm < 100 else 0.5), 40.0, 250.0))
    return f, bpm


def _special_values(
    model: _Model,
    vals: np.ndarray,
    f: np.ndarray,
    h: np.ndarray,
    bpm: float,
    length: float,
    rng: np.random.Generator,
) -> tuple[float, int, np.ndarray]:
    """Set the leaves the generic step leaves alone (loudness, rhythm, tuning, chords, MFCC/GFCC).

    Returns (average loudness, key index, beat positions) for the parts of the document built afterwards.
    """
    slot = model.slots
    _v, a, _, _b, d, c = f
    loudness = 1.0 / (1.0 + math.exp(-(1.2 * a + 2.0 * d - 1.0 * c + 0.5 + rng.normal(0.0, 0.2))))
    vals[slot["lowlevel.average_loudness"].start] = loudness
    vals[slot["rhythm.bpm"].start] = bpm
    vals[slot["rhythm.onset_rate"].start] = bpm / 60.0 * (1.2 + 0.8 / (1.0 + math.exp(-(2 * a + d))))
    groove = 1.5 * a + 2.0 * math.exp(-(((bpm - 122.0) / 25.0) ** 2)) - 1.0 - c
    vals[slot["rhythm.danceability"].start] = 0.7 + 0.8 / (1.0 + math.exp(-groove)) + rng.normal(0.0, 0.05)
    vals[slot["tonal.tuning_frequency"].start] = float(np.clip(440.0 + rng.normal(0.0, 2.5), 430.0, 450.0))
    for which, name in enumerate(("mfcc", "gfcc")):
        for stat, arr in zip(("mean", "cov", "icov"), _cepstrum(model, which, name, f, h, rng), strict=True):
            s = slot[f"lowlevel.{name}.{stat}"]
            vals[s.start : s.stop] = arr.ravel()
    key = int(rng.integers(12))
    s = slot["tonal.chords_histogram"]
    vals[s.start : s.stop] = 100.0 * rng.dirichlet(np.where(np.arange(24) % 12 == key, 8.0, 0.4))
    beats = np.cumsum(np.full(int(length * bpm / 60.0 * rng.uniform(0.96, 1.0)), 60.0 / bpm))
    beats = (beats + rng.uniform(0.05, 0.5) + rng.normal(0.0, 0.004, beats.size)).astype(np.float32)
    vals[slot["rhythm.beats_count"].start] = beats.size
    _bpm_histogram(vals, slot, bpm, rng)
    return loudness, key, beats


def _descriptor_doc(track: _TrackInfo, rng: np.random.Generator, world: int = 0) -> dict[str, Any]:
    """Build one AcousticBrainz low-level document for a track of `track.album`, under `world`'s rules."""
    model = _model(world)
    album = track.album
    f, bpm = _track_factors(album, rng)
    h = _hidden(model, f, album.genre)
    vals = _generic_values(model, f, h, rng)
    length = float(np.clip(album.track_length * rng.lognormal(0.0, 0.25), 30.0, 1800.0))
    loudness, key, beats = _special_values(model, vals, f, h, bpm, length, rng)
    doc = _rebuild(model.skeleton, vals, vals.astype(np.float32))
    doc["rhythm"]["beats_position"] = beats
    major = rng.random() < 1.0 / (1.0 + math.exp(-2.5 * f[0]))  # happier albums are more often in major
    scale = "major" if major else "minor"
    same = rng.random() < 0.7
    doc["tonal"]["key_key"] = _CHORD_KEYS[key]
    doc["tonal"]["key_scale"] = scale
    doc["tonal"]["chords_key"] = _CHORD_KEYS[key if same else int(rng.integers(12))]
    doc["tonal"]["chords_scale"] = scale if same else ("minor" if major else "major")
    doc["metadata"] = _doc_metadata(track, length, loudness, rng)
    return doc


def _bpm_histogram(vals: np.ndarray, slot: dict[str, _Slot], bpm: float, rng: np.random.Generator) -> None:
    """The six bpm_histogram_* 'stats' groups hold one constant value each (derivatives/variances are 0)."""
    second = bpm * float(rng.choice([0.5, 2.0 / 3.0, 1.5, 2.0, 1.02]))
    peaks = {
        "first_peak_bpm": float(round(bpm)),
        "first_peak_spread": float(rng.uniform(0.0, 0.6)),
        "first_peak_weight": float(rng.uniform(0.2, 0.95)),
        "second_peak_bpm": float(round(second)),
        "second_peak_spread": float(rng.uniform(0.0, 0.6)),
        "second_peak_weight": float(rng.uniform(0.0, 0.3)),
    }
    for name, value in peaks.items():
        for stat in _STATS:
            vals[slot[f"rhythm.bpm_histogram_{name}.{stat}"].start] = value if stat[0] == "m" else 0.0


def _rebuild(node: Any, vals: np.ndarray, vals32: np.ndarray) -> Any:
    """Skeleton → document: ints stay ints (as Essentia prints them), other numbers become float32."""
    if isinstance(node, _Slot):
        if node.shape == ():
            return round(float(vals[node.start])) if node.is_int else vals32[node.start]
        return vals32[node.start : node.stop].reshape(node.shape)
    if isinstance(node, dict):
        return {k: _rebuild(v, vals, vals32) for k, v in node.items()}
    return node


def _doc_metadata(track: _TrackInfo, length: float, loudness: float, rng: np.random.Generator) -> dict:
    """metadata.{audio_properties, tags, version} shaped like real AcousticBrainz submissions."""
    album = track.album
    lossless = bool(rng.random() < 0.3)
    codec = "flac" if lossless else str(rng.choice(["mp3", "mp3", "vorbis", "aac"]))
    song_title = album.songs[track.song_no][0]
    tags: dict[str, Any] = {
        "album": [album.title],
        "albumartist": [album.artist.name],
        "artist": [album.artist.name],
        "date": [str(album.year)],
        "file_name": f"{track.song_no + 1:02d}_{song_title.lower().replace(' ', '_')}.{codec}",
        "musicbrainz_albumartistid": [album.artist.mbid],
        "musicbrainz_albumid": [album.release_mbid],
        "musicbrainz_artistid": [album.artist.mbid],
        "musicbrainz_recordingid": [track.mbid],
        "musicbrainz_releasegroupid": [album.release_group_mbid],
        "title": [song_title],
        "tracknumber": [f"{track.song_no + 1:02d}" if rng.random() < 0.5 else str(track.song_no + 1)],
        "tracktotal": [str(len(album.songs))],
    }
    if rng.random() < 0.5:
        tags["label"] = [album.label]
        tags["media"] = ["CD"]
    if track.asin_tag:
        tags["asin"] = [album.asin]
    if track.genre_tag:
        options = _GENRE_TAGS[GENRES[album.genre]]
        other = GENRES[int(rng.integers(len(GENRES)))]
        tag_genre = options[int(rng.integers(len(options)))] if rng.random() < 0.9 else _GENRE_TAGS[other][0]
        tags["genre"] = [tag_genre]
    return {
        "audio_properties": {
            "analysis_sample_rate": 44100,
            "bit_rate": 0 if lossless else int(rng.choice([128000, 192000, 256000, 320000])),
            "codec": codec,
            "downmix": "mix",
            "equal_loudness": 0,
            "length": np.float32(length),
            "lossless": lossless,
            "md5_encoded": rng.bytes(16).hex(),
            "replay_gain": np.float32(-(14.0 * loudness - 3.0) + rng.normal(0.0, 1.0)),
            "sample_rate": 44100,
        },
        "tags": dict(sorted(tags.items())),
        "version": {
            "essentia": "2.1-beta2",
            "essentia_build_sha": _ESSENTIA_BUILDS[int(rng.integers(len(_ESSENTIA_BUILDS)))],
            "essentia_git_sha": "v2.1_beta2",
            "extractor": "music 1.0",
        },
    }


def _serialize_doc(doc: dict[str, Any], quirk: str | None, rng: np.random.Generator) -> tuple[bytes, str]:
    """Serialise a document (2-space indent like the real files), applying a file-level quirk if any."""
    detail = ""
    if quirk == "missing_mfcc":
        del doc["lowlevel"]["mfcc"]
    elif quirk == "nan_value":
        name = _NAN_TARGETS[int(rng.integers(len(_NAN_TARGETS)))]
        stat = _STATS[int(rng.integers(len(_STATS)))]
        doc["lowlevel"][name][stat] = _NAN_SENTINEL
        detail = f"lowlevel.{name}.{stat}"
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    if quirk == "nan_value":
        data = data.replace(_NAN_SENTINEL_JSON, b"NaN")  # Python's json writes NaN; Essentia output has it too
    elif quirk == "broken_descriptor":
        cut = int(len(data) * rng.uniform(0.1, 0.9))
        detail = f"truncated at byte {cut} of {len(data)}"
        data = data[:cut]
    return data + (b"" if quirk == "broken_descriptor" else b"\n"), detail


def _descriptor_name(asin: str, mbid: str, bad: bool, rng: np.random.Generator) -> str:
    """`<amazon-id>_<mbid>.json`, or (quirk) a near miss of that pattern that a strict parser must reject."""
    if not bad:
        return f"{asin}_{mbid}.json"
    variant = int(rng.integers(3))
    if variant == 0:
        return f"{asin}_{mbid.replace('-', '')}.json"
    if variant == 1:
        return f"{asin}-{mbid}.json"
    return f"{asin[:9]}_{mbid}.json"
