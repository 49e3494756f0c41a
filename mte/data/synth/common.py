"""Shared constants of the synthetic MARD: real-MARD scale, file names, quirk rates, quirk flags and identifiers.

Identifiers are pure functions of (seed, index) so that worker processes need no shared state and ids never collide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from mte.data.synth.vocabulary import _FIRST, _LAST

FULL_SCALE = {"albums": 65566, "reviews": 263525, "descriptor_files": 28403}
# Real MARD: albums with both descriptors and reviews, and their reviews.
_REAL_PAIRED = {"albums": 8683, "reviews": 84747}
_DEMO_SHARES = (0.80, 0.08, 0.12)  # paired, descriptor-only, review-only
_PAIRED_MEAN = _REAL_PAIRED["reviews"] / _REAL_PAIRED["albums"]  # 9.76
_TEXT_ONLY_MEAN = (FULL_SCALE["reviews"] - _REAL_PAIRED["reviews"]) / (
    FULL_SCALE["albums"] - FULL_SCALE["descriptor_files"]
)  # 4.81

SYNTH_INFO_FILE = ".synth.json"  # hidden: prepare ignores unknown files
_META_FILE = "mard_metadata.json"
_REVIEWS_FILE = "mard_reviews.json"
_DESC_DIR = "acousticbrainz_descriptors"
_FORMAT_VERSION = 2  # 2: worlds, artist names unique across seeds, filler words from wordfreq
_WORLD_SEED = 0x4D5445  # "MTE": root of every world's rules (mte.data.synth.world); albums change with `seed`

# Quirk name → rate per unit (file, album or review line); None = structural (album categories).
_QUIRK_RATES: dict[str, float | None] = {
    "album_without_descriptor": None,
    "descriptor_without_reviews": None,
    "broken_descriptor": 0.0002,
    "missing_mfcc": 0.0003,
    "nan_value": 0.0003,
    "bad_filename": 0.0002,
    "descriptor_without_genre": 0.45,
    "broken_metadata": 0.0002,
    "duplicate_review": 0.004,
    "empty_review": 0.003,
    "long_review": 0.002,
    "html_entities": 0.02,
    "non_ascii": 0.02,
    "non_utf8_review": 0.0005,
}
QUIRKS: tuple[str, ...] = tuple(_QUIRK_RATES)
# Rare quirks whose affected items are listed in .synth.json (the frequent ones only get counts).
_LISTED_QUIRKS = frozenset(
    {
        "broken_descriptor",
        "missing_mfcc",
        "nan_value",
        "bad_filename",
        "broken_metadata",
        "duplicate_review",
        "empty_review",
        "long_review",
        "non_utf8_review",
    }
)
# Mutually exclusive per-file and per-review quirk categories (code = position + 1; 0 = none).
_FILE_CATS = ("broken_descriptor", "missing_mfcc", "nan_value", "bad_filename")
_REVIEW_CATS = ("empty_review", "long_review", "html_entities", "non_ascii", "non_utf8_review")

# --------------------------------------------------------------------------------------------------------------
# Quirk flags
# --------------------------------------------------------------------------------------------------------------


def normalize_quirks(quirks: bool | Iterable[str] | Mapping[str, bool]) -> frozenset[str]:
    """Turn the user's `quirks` (True/False, names, or {name: bool}) into the set of enabled quirk names.

    Why a set: each quirk is switchable on its own (e.g. keep the structural ones, drop the broken files) while
    `True` keeps the common case one word.
    """
    if isinstance(quirks, bool):
        return frozenset(QUIRKS) if quirks else frozenset()
    if isinstance(quirks, Mapping):
        names = {str(k) for k, v in quirks.items() if v}
        given = {str(k) for k in quirks}
    else:
        names = {str(k) for k in quirks}
        given = names
    unknown = sorted(given - set(QUIRKS))
    if unknown:
        raise ValueError(f"unknown quirk(s) {unknown}; known: {', '.join(QUIRKS)}")
    return frozenset(names)


# --------------------------------------------------------------------------------------------------------------
# Identifiers: pure functions of (seed, index) so workers need no shared state and ids never collide
# --------------------------------------------------------------------------------------------------------------

_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MULT = 0x9E3779B97F4A7C13  # coprime to 2, 3 and 5 → index ↦ id is a bijection modulo 36**k and 10**k


def _base36(x: int, width: int) -> str:
    """Fixed-width upper-case base-36 digits of x (x < 36**width)."""
    out = []
    for _ in range(width):
        x, r = divmod(x, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def amazon_id(seed: int, index: int) -> str:
    """The album's 10-char amazon-id: mostly ASIN-like ('B0' + 8 base-36), ~3% ISBN-like digits; unique."""
    if (index * 2_654_435_761 + seed * 97) % 100 < 3:
        return "0" + f"{(index * _MULT + seed * 7_919 + 13) % 10**9:09d}"
    return "B0" + _base36((index * _MULT + seed * 104_729 + 4_242) % 36**8, 8)


def _reviewer_id(seed: int, k: int) -> str:
    """Amazon-style reviewer id ('A' + 13 base-36), unique per reviewer index."""
    return "A" + _base36((k * _MULT + seed * 15_485_863 + 77) % 36**13, 13)


def _reviewer_name(seed: int, k: int) -> str | None:
    """A stable display name per reviewer (None → the key is absent, as for some real reviews)."""
    h = (k * 2_654_435_761 + seed * 40_503 + 11) % 2**32
    style = h % 20
    first, last = _FIRST[(h >> 5) % len(_FIRST)], _LAST[(h >> 11) % len(_LAST)]
    if style == 0:
        return None
    if style < 4:
        return f'{first} {last} "{first.lower()}{(h >> 17) % 100}"'
    if style < 7:
        return f"{first[0]}. {last}"
    if style == 7:
        return "Amazon Customer"
    if style == 8:
        return f"music lover {(h >> 17) % 1000}"
    return f"{first} {last}"


def _uuid(rng: np.random.Generator) -> str:
    """A random (version 4) canonical lowercase UUID from the album's generator."""
    b = bytearray(rng.bytes(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
