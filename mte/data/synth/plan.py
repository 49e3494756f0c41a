"""The plan: everything that needs a global view (categories, exact totals, guaranteed quirk slots).

Drawn once in the parent process from `seed`, then sliced into chunks (album ranges) for the worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mte.data.synth.common import (
    _DEMO_SHARES,
    _FILE_CATS,
    _PAIRED_MEAN,
    _QUIRK_RATES,
    _REAL_PAIRED,
    _REVIEW_CATS,
    _TEXT_ONLY_MEAN,
    FULL_SCALE,
)


@dataclass(frozen=True)
class _Plan:
    """Per-album, per-file and per-review decisions drawn once in the parent process from `seed`."""

    seed: int
    world: int
    kind: np.ndarray  # int8 per album: 0 paired, 1 descriptor-only, 2 review-only
    n_reviews: np.ndarray  # int64 per album
    n_tracks: np.ndarray  # int64 per album (0 for review-only)
    artist: np.ndarray  # int64 per album
    broken_meta: np.ndarray  # bool per album
    file_cat: np.ndarray  # uint8 per descriptor file (code into _FILE_CATS)
    file_no_genre: np.ndarray  # bool per descriptor file
    review_cat: np.ndarray  # uint8 per review line (code into _REVIEW_CATS)
    review_dup: np.ndarray  # bool per review line: exact copy of the previous line
    review_off: np.ndarray  # int64 (albums + 1): first review line of each album
    file_off: np.ndarray  # int64 (albums + 1): first descriptor file of each album
    n_reviewers: int


def _category_counts(albums: int, proportions: str, enabled: frozenset[str]) -> tuple[int, int, int]:
    """(paired, descriptor-only, review-only) album counts for the chosen proportions."""
    if proportions == "real":
        desc_only = round(albums * (FULL_SCALE["descriptor_files"] - _REAL_PAIRED["albums"]) / FULL_SCALE["albums"])
        text_only = round(albums * (FULL_SCALE["albums"] - FULL_SCALE["descriptor_files"]) / FULL_SCALE["albums"])
        return albums - desc_only - text_only, desc_only, text_only
    desc_only = round(albums * _DEMO_SHARES[1]) if "descriptor_without_reviews" in enabled else 0
    text_only = round(albums * _DEMO_SHARES[2]) if "album_without_descriptor" in enabled else 0
    if albums >= 3:  # "at least one of each" for small demo runs
        desc_only = max(desc_only, int("descriptor_without_reviews" in enabled))
        text_only = max(text_only, int("album_without_descriptor" in enabled))
    return albums - desc_only - text_only, desc_only, text_only


def _allocate_reviews(rng: np.random.Generator, n: int, total: int) -> np.ndarray:
    """Split `total` reviews over `n` albums: each ≥ 1, heavy-tailed (lognormal shares), exact sum."""
    if n == 0:
        return np.zeros(0, np.int64)
    total = max(total, n)
    weights = rng.lognormal(0.0, 1.2, n)
    share = (total - n) * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    remainder = int(total - n - counts.sum())
    if remainder > 0:
        counts[np.argsort(counts - share, kind="stable")[:remainder]] += 1
    return counts + 1


def _track_counts(rng: np.random.Generator, n: int, tracks_per_album: int) -> np.ndarray:
    """Descriptor files per album: 1 (MARD) or heavy-tailed 1..K (the 'augmented' layout), p(k) ∝ k^-0.8."""
    if tracks_per_album <= 1:
        return np.ones(n, np.int64)
    k = np.arange(1, tracks_per_album + 1)
    p = k**-0.8
    return rng.choice(k, size=n, p=p / p.sum()).astype(np.int64)


def _ensure_one(rng: np.random.Generator, cats: np.ndarray, code: int, eligible: np.ndarray) -> None:
    """Guarantee at least one unit carries quirk `code` (tests count every quirk even at 40 albums)."""
    if (cats == code).any():
        return
    candidates = np.flatnonzero(eligible & (cats == 0))
    if candidates.size:
        cats[candidates[rng.integers(candidates.size)]] = code


def _draw_categories(
    rng: np.random.Generator, n: int, names: tuple[str, ...], enabled: frozenset[str], eligible: np.ndarray
) -> np.ndarray:
    """Mutually exclusive quirk categories per unit at the configured rates, each enabled one ≥ 1 time."""
    rates = np.array([(_QUIRK_RATES[q] or 0.0) if q in enabled else 0.0 for q in names])
    u = rng.random(n)
    cats = np.searchsorted(np.cumsum(rates), u, side="right").astype(np.uint8) + 1
    cats[cats > len(names)] = 0
    cats[~eligible] = 0
    for code, name in enumerate(names, start=1):
        if name in enabled:
            _ensure_one(rng, cats, code, eligible)
    return cats


def _make_plan(
    albums: int, seed: int, tracks_per_album: int, enabled: frozenset[str], proportions: str, world: int = 0
) -> _Plan:
    """Draw the global plan: album categories (shuffled), exact review totals, files, and quirk slots."""
    rng = np.random.default_rng([seed, 1_000_003])
    n_paired, n_desc, n_text = _category_counts(albums, proportions, enabled)
    kind = rng.permutation(np.repeat(np.array([0, 1, 2], np.int8), [n_paired, n_desc, n_text]))
    n_reviews = np.zeros(albums, np.int64)  # at full scale the means give MARD's exact totals
    n_reviews[kind == 0] = _allocate_reviews(rng, n_paired, round(n_paired * _PAIRED_MEAN))
    n_reviews[kind == 2] = _allocate_reviews(rng, n_text, round(n_text * _TEXT_ONLY_MEAN))
    n_tracks = np.where(kind == 2, 0, _track_counts(rng, albums, tracks_per_album))
    n_artists = max(1, round(albums / 2.2))
    artist = np.floor(n_artists * rng.random(albums) ** 1.6).astype(np.int64)  # a few prolific artists

    broken_meta = np.zeros(albums, bool)
    if "broken_metadata" in enabled:
        broken_meta = rng.random(albums) < (_QUIRK_RATES["broken_metadata"] or 0.0)
        if not broken_meta.any() and albums:
            broken_meta[rng.integers(albums)] = True

    review_off = np.concatenate([[0], np.cumsum(n_reviews)])
    file_off = np.concatenate([[0], np.cumsum(n_tracks)])
    n_rev, n_files = int(review_off[-1]), int(file_off[-1])

    file_cat = _draw_categories(rng, n_files, _FILE_CATS, enabled, np.ones(n_files, bool))
    no_genre = np.zeros(n_files, bool)
    if "descriptor_without_genre" in enabled and n_files:
        no_genre = rng.random(n_files) < (_QUIRK_RATES["descriptor_without_genre"] or 0.0)
        readable = np.flatnonzero(file_cat != 1)
        if readable.size and not no_genre[readable].any():
            no_genre[readable[rng.integers(readable.size)]] = True

    first_line = np.zeros(n_rev, bool)
    first_line[review_off[:-1][n_reviews > 0]] = True
    review_dup = np.zeros(n_rev, bool)
    if "duplicate_review" in enabled and n_rev:
        review_dup = (rng.random(n_rev) < (_QUIRK_RATES["duplicate_review"] or 0.0)) & ~first_line
        later = np.flatnonzero(~first_line)
        if later.size and not review_dup.any():
            review_dup[later[rng.integers(later.size)]] = True
    # A duplicate copies its predecessor, so its own category would never show: keep categories off them.
    review_cat = _draw_categories(rng, n_rev, _REVIEW_CATS, enabled, ~review_dup)
    return _Plan(
        seed=seed,
        world=world,
        kind=kind,
        n_reviews=n_reviews,
        n_tracks=n_tracks,
        artist=artist,
        broken_meta=broken_meta,
        file_cat=file_cat,
        file_no_genre=no_genre,
        review_cat=review_cat,
        review_dup=review_dup,
        review_off=review_off,
        file_off=file_off,
        n_reviewers=max(20, int(n_rev / 2.5)),
    )


@dataclass(frozen=True)
class _Chunk:
    """A contiguous album range with its slice of the plan: the unit of work sent to a worker process."""

    seed: int
    world: int
    start: int
    stop: int
    n_albums: int
    n_reviewers: int
    out_dir: str
    kind: np.ndarray
    n_reviews: np.ndarray
    n_tracks: np.ndarray
    artist: np.ndarray
    broken_meta: np.ndarray
    file_cat: np.ndarray
    file_no_genre: np.ndarray
    review_cat: np.ndarray
    review_dup: np.ndarray
    review_line0: int  # global 0-based line of the chunk's first review


def _chunks(plan: _Plan, out_dir: Path, size: int) -> Iterator[_Chunk]:
    """Slice the plan into album ranges (the boundaries never change the output)."""
    n = plan.kind.size
    for start in range(0, n, size):
        stop = min(n, start + size)
        r0, r1 = int(plan.review_off[start]), int(plan.review_off[stop])
        f0, f1 = int(plan.file_off[start]), int(plan.file_off[stop])
        yield _Chunk(
            seed=plan.seed,
            world=plan.world,
            start=start,
            stop=stop,
            n_albums=n,
            n_reviewers=plan.n_reviewers,
            out_dir=str(out_dir),
            kind=plan.kind[start:stop],
            n_reviews=plan.n_reviews[start:stop],
            n_tracks=plan.n_tracks[start:stop],
            artist=plan.artist[start:stop],
            broken_meta=plan.broken_meta[start:stop],
            file_cat=plan.file_cat[f0:f1],
            file_no_genre=plan.file_no_genre[f0:f1],
            review_cat=plan.review_cat[r0:r1],
            review_dup=plan.review_dup[r0:r1],
            review_line0=r0,
        )
