"""Album- and artist-grouped train/val/test splits.

Why albums and not reviews: a review and a track of the same album form a positive pair, so if an album's reviews
(or tracks) sat in two splits the model would be evaluated on albums it was trained on. Splitting the album ids
keeps every review and track of an album together. Only *paired* albums (≥ 1 valid descriptor and ≥ 1 usable
review) are split; the others cannot form pairs and get no split.

Determinism: ids are sorted before shuffling with ``numpy.random.default_rng(seed)``, so the split depends only on
the set of paired albums and the seed — not on file order, worker count or dict order.

Why artists too (``data.split=artist``): reviews name artists, and an artist's albums sound alike, so with an
album split a model can score on val/test by recognising an artist it trained on. The artist split keeps every
album of an artist in one split, so val/test measure music the model never heard (see :func:`artist_split`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from mte.data.names import SPLIT_METHODS, SPLITS

__all__ = ["SPLITS", "SPLIT_METHODS", "album_split", "artist_groups", "artist_split", "make_splits",
           "normalise_artist", "paper_split", "split_of_album", "split_sizes"]
# The published project held out 10% of albums as its dev set and reported that one held-out set.
PAPER_FRACTIONS = (0.9, 0.1)


def normalise_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative fractions with a positive train share, rescaled to sum to 1."""
    if len(fractions) != 3:
        raise ValueError(f"split_fractions needs 3 values (train, val, test), got {list(fractions)}")
    values = [float(f) for f in fractions]
    if any(not math.isfinite(f) or f < 0 for f in values) or values[0] <= 0:
        raise ValueError(f"split_fractions must be finite, >= 0, with train > 0; got {values}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes summing to ``n``: largest-remainder rounding, and ≥ 1 for each non-zero fraction when n allows.

    Without the minimum a small dataset (tests, a 60-album demo) could end up with an empty val split.
    """
    sizes = [math.floor(f * n) for f in fractions]
    order = sorted(range(len(fractions)), key=lambda i: (-(fractions[i] * n - sizes[i]), i))
    for i in order[: n - sum(sizes)]:
        sizes[i] += 1
    for i, f in enumerate(fractions):
        if f > 0 and sizes[i] == 0:
            donor = max(range(len(sizes)), key=lambda j: (sizes[j], -j))
            if sizes[donor] > 1:
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes


def _shuffled(album_ids: Iterable[str], seed: int) -> list[str]:
    import numpy as np

    ids = sorted(set(album_ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    return [ids[i] for i in order]


def album_split(album_ids: Iterable[str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Random album-grouped train/val/test split; each list sorted."""
    ids = _shuffled(album_ids, seed)
    n_train, n_val, _ = split_sizes(len(ids), normalise_fractions(fractions))
    parts = ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :]
    return {name: sorted(part) for name, part in zip(SPLITS, parts, strict=True)}


def paper_split(album_ids: Iterable[str], seed: int) -> dict[str, list[str]]:
    """The published protocol: 90% train, 10% held out; ``test`` is the same held-out albums as ``val``.

    The paper reported one held-out ("dev") set, so evaluating on "test" here reproduces its numbers; model
    selection on the same set is what it did too (and is optimistic — use split=album for a clean test set).
    """
    ids = _shuffled(album_ids, seed)
    n_train, _ = split_sizes(len(ids), PAPER_FRACTIONS)
    held_out = sorted(ids[n_train:])
    return {"train": sorted(ids[:n_train]), "val": held_out, "test": list(held_out)}


def normalise_artist(name: str | None) -> str | None:
    """The artist name as a grouping key: accents, case, punctuation, '&'/'and' and a leading 'the' ignored.

    Why: metadata spells one artist several ways ("Beyoncé" / "Beyonce", "Simon & Garfunkel" / "Simon and
    Garfunkel", "The Beatles" / "Beatles"); treating those as different artists would let one straddle splits.
    """
    if not name:
        return None
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold().replace("&", " and ")
    text = re.sub(r"[\W_]+", " ", text).strip()
    if text.startswith("the "):
        text = text[4:]
    return text or None


def artist_groups(artists: Mapping[str, tuple[str | None, str | None]]) -> list[list[str]]:
    """Albums grouped by artist: ``{album id: (artist MBID, artist name)}`` → sorted groups of album ids.

    Two albums share a group when they share an MBID or a normalised name, transitively (union-find): so an
    artist with an MBID on one album and only a name on another is one group, as is one whose name is spelt two
    ways under one MBID. An album with neither is its own group. Groups are sorted by their first album id.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for aid in sorted(artists):
        node = f"album:{aid}"
        parent.setdefault(node, node)
        mbid, name = artists[aid]
        keys = ([f"mbid:{mbid.strip().lower()}"] if mbid and mbid.strip() else []) + \
            ([f"name:{n}"] if (n := normalise_artist(name)) else [])
        for key in keys:
            parent.setdefault(key, key)
            union(node, key)
    groups: dict[str, list[str]] = {}
    for aid in sorted(artists):
        groups.setdefault(find(f"album:{aid}"), []).append(aid)
    return sorted(groups.values(), key=lambda g: g[0])


def artist_split(
    artists: Mapping[str, tuple[str | None, str | None]],
    fractions: Sequence[float],
    seed: int,
    only: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Artist-grouped train/val/test split of the albums in ``artists`` (see :func:`artist_groups`); lists sorted.

    ``only``: split just these albums, while every album of ``artists`` still links keys. Why: in MARD most albums
    have no audio and are not split, yet one of them may be the only album carrying both an artist's MBID and the
    name another (MBID-less) album of that artist uses; grouping without it would let that artist straddle splits.
    The groups are shuffled with ``seed`` and each goes to the split furthest below its target album count
    (targets from :func:`split_sizes`), so the fractions hold to within about one artist's album count, and an
    artist's albums never straddle splits.
    """
    import numpy as np

    groups = artist_groups(artists)
    if only is not None:
        keep = set(only)
        groups = [kept for group in groups if (kept := [aid for aid in group if aid in keep])]
    targets = split_sizes(sum(len(g) for g in groups), normalise_fractions(fractions))
    counts = [0, 0, 0]
    parts: list[list[str]] = [[], [], []]
    for i in np.random.default_rng(seed).permutation(len(groups)):
        group = groups[int(i)]
        best = max(range(3), key=lambda j: (targets[j] - counts[j], -j))
        parts[best].extend(group)
        counts[best] += len(group)
    return {name: sorted(part) for name, part in zip(SPLITS, parts, strict=True)}


def make_splits(
    album_ids: Iterable[str], method: str, fractions: Sequence[float], seed: int,
    artists: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> dict[str, list[str]]:
    """Dispatch on ``data.split``: 'album', 'artist' (``artists``: album id → (MBID, name) of every album, split or
    not, so keys link through albums without audio too) or 'paper'."""
    if method == "album":
        return album_split(album_ids, fractions, seed)
    if method == "artist":
        ids = sorted(set(album_ids))
        known = {**{aid: (None, None) for aid in ids}, **(artists or {})}  # artists may name unsplit albums too
        return artist_split(known, fractions, seed, only=ids)
    if method == "paper":
        return paper_split(album_ids, seed)
    if method == "published":  # splits files, not albums: needs the tracks table
        raise ValueError("split=published splits descriptor files: see mte.data.published_split.apply_published_split")
    raise ValueError(f"unknown split {method!r}; choose one of {', '.join(SPLIT_METHODS)}")


def split_of_album(splits: dict[str, list[str]]) -> dict[str, str]:
    """album id → its split name for the per-row ``split`` columns.

    With the paper split an album is in both val and test; the column says 'val' (splits.json lists both).
    """
    out: dict[str, str] = {}
    for name in reversed(SPLITS):  # train, then val overwrite test: 'val' wins over 'test'
        for aid in splits.get(name, []):
            out[aid] = name
    return out
