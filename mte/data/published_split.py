"""The published code's split (``data.split=published``): descriptor *files*, not albums, are split.

What the published ``Data.py`` did: list the descriptor folder, shuffle the file names, send the first 2,600 files to
test, the next 2,660 to dev and the rest to train; then every review of a file's album becomes a row (review × file)
of that file's split. With one file per album (MARD's layout) that is an album split of fixed size. With several
files per album (the "augmented" layout the published project fetched, ~344k files) an album's files land in
different splits, so the *same review text* is a training row (paired with one track) and a dev row (paired with
another track of the same album): the model is scored on reviews it trained on. That is the leak this split keeps
on purpose, to reproduce the published numbers; :func:`leak_counts` measures it and prepare records it in the
manifest (``leaky: true``, ``leak: {...}``).

Here: ``val`` is the published dev set (the one Table 1 reports), ``test`` its test set. An album is listed in
every split that holds one of its files (splits.json may list it twice); a track belongs to exactly one split.

Sizes (the documented rule): the published counts, 2,600 test and 2,660 dev files, when the dir has at least MARD's
28,403 descriptor files; in a smaller dir both are scaled by ``n_files / 28,403`` and rounded, keeping at least one
file in each split when there are three or more. Only descriptor files that parse are counted (the published code
listed every file and would have crashed on a broken one). The shuffle is seeded (``data.split_seed``; published:
unseeded ``random.shuffle``) over the sorted file names, so the split depends only on the set of files and the seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # polars is imported where used: prepare's light paths import this module's names
    import polars as pl

PUBLISHED_TEST_FILES = 2600
PUBLISHED_DEV_FILES = 2660
MARD_DESCRIPTOR_FILES = 28403
"""The descriptor files MARD ships; below this many files the published sizes are scaled down."""


def published_split_sizes(n_files: int) -> tuple[int, int]:
    """(test, dev) file counts for a dir of ``n_files`` descriptor files (see the module doc for the rule)."""
    if n_files < 0:
        raise ValueError(f"n_files must be >= 0, got {n_files}")
    if n_files >= MARD_DESCRIPTOR_FILES:
        return PUBLISHED_TEST_FILES, PUBLISHED_DEV_FILES
    scale = n_files / MARD_DESCRIPTOR_FILES
    test, dev = round(PUBLISHED_TEST_FILES * scale), round(PUBLISHED_DEV_FILES * scale)
    if n_files >= 3:
        test, dev = max(test, 1), max(dev, 1)
    return test, dev


def published_file_split(file_names: Iterable[str], seed: int) -> dict[str, list[str]]:
    """File names of each split (``train``, ``val`` = published dev, ``test``), each list sorted."""
    import numpy as np

    names = sorted(set(file_names))
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    n_test, n_dev = published_split_sizes(len(names))
    parts = {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_dev],
        "train": shuffled[n_test + n_dev :],
    }
    return {name: sorted(parts[name]) for name in ("train", "val", "test")}


def albums_by_split(
    file_split: Mapping[str, Sequence[str]], album_of_file: Mapping[str, str], paired: Iterable[str]
) -> dict[str, list[str]]:
    """The paired albums holding at least one file of each split (an album may be in several), each list sorted."""
    keep = set(paired)
    return {
        name: sorted({album_of_file[f] for f in files if album_of_file[f] in keep})
        for name, files in file_split.items()
    }


def leak_counts(album_splits: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Albums shared by each pair of splits (their reviews are rows of both): the size of the leak."""
    sets = {name: set(ids) for name, ids in album_splits.items()}
    train, val, test = (sets.get(name, set()) for name in ("train", "val", "test"))
    return {
        "albums_train_val": len(train & val),
        "albums_train_test": len(train & test),
        "albums_val_test": len(val & test),
        "albums_val_also_in_train_share_pct": round(100.0 * len(train & val) / len(val), 2) if val else 0.0,
    }


def review_split_of_album(album_splits: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """album id → the one split name its reviews' ``split`` column shows: train wins, then val, then test.

    Train wins because such reviews *are* training rows (the vocabulary and statistics of the train split should
    include them, as the published vocabulary did); splits.json still lists the album under every split it is in.
    """
    out: dict[str, str] = {}
    for name in ("test", "val", "train"):  # later names overwrite earlier ones
        for album in album_splits.get(name, []):
            out[album] = name
    return out


def apply_published_split(
    tracks: pl.DataFrame, paired_ids: Sequence[str], seed: int
) -> tuple[dict[str, list[str]], dict[str, str], pl.DataFrame]:
    """Prepare's hook: ``(splits, album → review split, tracks)`` for ``data.split=published``.

    ``tracks`` needs ``amazon_id``, ``mbid`` and ``file`` (the descriptor's file name); every parsed file takes part
    in the shuffle and the sizes, as in the published code, but only files of paired albums get a ``split`` (the
    others form no pair). The returned tracks are sorted by (album, split, mbid), so an album's files of one split
    are contiguous rows (the training pair index relies on that); ``split`` is the file's own split.
    """
    import polars as pl

    file_split = published_file_split(tracks["file"].to_list(), seed)
    album_of_file = dict(zip(tracks["file"].to_list(), tracks["amazon_id"].to_list(), strict=True))
    splits = albums_by_split(file_split, album_of_file, paired_ids)
    paired = set(paired_ids)
    split_of_file = {f: name for name, files in file_split.items() for f in files if album_of_file[f] in paired}
    frame = pl.DataFrame(
        {"file": list(split_of_file), "split": list(split_of_file.values())},
        schema={"file": pl.String, "split": pl.String},
    )
    tracks = tracks.join(frame, on="file", how="left").sort(["amazon_id", "split", "mbid"], nulls_last=True)
    return splits, review_split_of_album(splits), tracks


def leak_record(tracks: pl.DataFrame, splits: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """The manifest's ``leak`` entry: the size rule, paired files per split, albums shared between splits."""
    counts = tracks["split"].value_counts()
    per_split = dict(zip(counts["split"].to_list(), counts["count"].to_list(), strict=True))
    return {
        "rule": f"{PUBLISHED_TEST_FILES} test / {PUBLISHED_DEV_FILES} dev descriptor files, scaled by "
        f"n_files/{MARD_DESCRIPTOR_FILES} below that many",
        "descriptor_files": len(tracks),
        **{f"paired_files_{name}": int(per_split.get(name, 0)) for name in ("train", "val", "test")},
        **leak_counts(splits),
    }
