"""Albums: artist, names and latent factors, each a pure function of (seed, index) — never of the world."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

import numpy as np

from mte.data.synth.common import _base36, _uuid, amazon_id
from mte.data.synth.lexicon import FillerStream, lexicon
from mte.data.synth.vocabulary import (
    _ALBUM_SD,
    _ARTIST_SD,
    _FACTOR_HI,
    _FACTOR_LO,
    _GENRE_PRIORS,
    _GENRE_WEIGHTS,
    _LABELS,
    GENRES,
)


@dataclass
class _Artist:
    """Shared by all of an artist's albums: the name (which reviews mention), a home genre, factor offsets."""

    name: str
    genre: int
    offset: np.ndarray  # factor offsets shared by all the artist's albums
    mbid: str
    url_id: str


@dataclass
class _Album:
    """Everything drawn for one album; `rng`/`text_rng`/`filler` continue its private random streams."""

    index: int
    asin: str
    artist: _Artist
    genre: int
    factors: np.ndarray  # valence, arousal, bpm, brightness, distortion, acousticness
    title: str
    year: int
    songs: list[tuple[str, str]]  # (title, recording mbid)
    release_mbid: str
    release_group_mbid: str
    label: str
    track_length: float  # typical track length (s) of the album
    mapped: bool  # has MusicBrainz ids (always true when it has descriptors)
    rng: np.random.Generator
    filler: FillerStream  # the album's filler words (its own stream: the text stream stays independent of it)
    text_rng: random.Random = field(repr=False, default_factory=random.Random)


def _artist_name(rng: np.random.Generator, genre: str, core: tuple[str, str]) -> str:
    """A plausible artist name around its unique two-word core; some styles are genre-flavoured (DJ, Trio …)."""
    a, b = core
    style = rng.integers(10)
    if genre == "Dance & Electronic" and style < 4:
        return f"DJ {a} {b}"
    if genre == "Rap & Hip-Hop" and style < 4:
        return f"Lil {a} {b}" if style < 2 else f"MC {a} {b}"
    if genre in ("Jazz", "Classical") and style < 5:
        band = ("Trio", "Quartet") if genre == "Jazz" else ("Ensemble", "Philharmonic")
        return f"{a} {b} {band[style % 2]}"
    if style < 3:
        return f"The {a} {b}"
    if style < 6:
        return f"{a} {b}"
    if style < 8:
        return f"{a} and the {b}"
    return f"{b} of {a}"


def _album_title(rng: np.random.Generator) -> str:
    """Album titles from ordinary words (never factor words: a title must not hint at the audio)."""
    word = lexicon().title_word
    w1, w2 = word(rng), word(rng)
    style = rng.integers(8)
    if style == 0:
        return f"The {w1} of {w2}"
    if style == 1:
        return w1
    if style == 2:
        return f"Live at the {w1}"
    if style == 3:
        return f"{w1} {w2} (Remastered)"
    if style == 4:
        return f"Greatest Hits Vol. {rng.integers(1, 4)}"
    return f"{w1} {w2}"


def _track_title(rng: np.random.Generator) -> str:
    """Track titles, quoted by reviews ('My favorite song is …') and written to the descriptor tags."""
    word = lexicon().title_word
    w1 = word(rng)
    style = rng.integers(6)
    if style == 0:
        return f"{w1} Song"
    if style == 1:
        return f"The {w1}"
    if style < 4:
        return w1
    return f"{w1} {word(rng)}"


@functools.lru_cache(maxsize=4096)
def _artist(seed: int, index: int) -> _Artist:
    """Artist attributes are a pure function of (seed, artist index): every worker sees the same artist."""
    rng = np.random.default_rng([seed, 1, index])
    genre = int(rng.choice(len(GENRES), p=_GENRE_WEIGHTS))
    return _Artist(
        name=_artist_name(rng, GENRES[genre], lexicon().artist_core(seed, index)),
        genre=genre,
        offset=rng.normal(0.0, _ARTIST_SD),
        mbid=_uuid(rng),
        url_id="B000" + _base36(int(rng.integers(36**6)), 6),
    )


def _make_album(seed: int, index: int, artist_index: int, n_tracks: int, has_descriptor: bool) -> _Album:
    """Draw one album: genre (mostly its artist's), factors = prior + artist + album noise, names, songs."""
    rng = np.random.default_rng([seed, 0, index])
    artist = _artist(seed, artist_index)
    genre = artist.genre if rng.random() < 0.85 else int(rng.choice(len(GENRES), p=_GENRE_WEIGHTS))
    factors = _GENRE_PRIORS[genre] + artist.offset + rng.normal(0.0, _ALBUM_SD)
    factors = np.clip(factors, _FACTOR_LO, _FACTOR_HI)
    n_songs = max(n_tracks, int(rng.integers(6, 19)))
    songs = [(_track_title(rng), _uuid(rng)) for _ in range(n_songs)]
    typical = 420.0 if GENRES[genre] == "Classical" else 235.0
    return _Album(
        index=index,
        asin=amazon_id(seed, index),
        artist=artist,
        genre=genre,
        factors=factors,
        title=_album_title(rng),
        year=int(np.clip(round(rng.normal(1994, 12)), 1950, 2014)),
        songs=songs,
        release_mbid=_uuid(rng),
        release_group_mbid=_uuid(rng),
        label=_LABELS[rng.integers(len(_LABELS))],
        track_length=float(typical * rng.lognormal(0.0, 0.2)),
        mapped=has_descriptor or bool(rng.random() < 0.5),
        rng=rng,
        text_rng=random.Random(int(rng.integers(2**63))),
        filler=FillerStream(np.random.default_rng([seed, 2, index])),
    )
