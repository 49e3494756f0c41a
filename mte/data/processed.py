"""A processed dir (the output of ``python -m mte.prepare``) loaded into memory.

Training, evaluation and search all start here, so the checks live here too: a dir without a complete
``manifest.json`` (an interrupted or foreign dir) is refused with a one-line message that says how to make one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mte.cli import UserError
from mte.data.cache import DATA_NAMES, FEATURES_MATRIX
from mte.data.descriptors import standardize
from mte.data.names import SPLITS
from mte.data.text import Vocabulary


class ProcessedDirError(ValueError, UserError):
    """Not a (complete) processed dir; the message is one line."""


@dataclass
class ProcessedData:
    """The tables, feature statistics and manifest of one processed dir (columns: mte.data.prepare._final_columns)."""

    root: Path
    albums: pl.DataFrame
    reviews: pl.DataFrame
    tracks: pl.DataFrame
    features: np.ndarray  # raw descriptor values, float32 [len(tracks), len(feature_names)] (features.npy)
    feature_names: list[str]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    manifest: dict[str, Any]
    splits: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path | str) -> ProcessedData:
        """Read every table; raise :class:`ProcessedDirError` when ``root`` is not a complete processed dir."""
        root = Path(root).expanduser()
        manifest = _read_manifest(root)
        features = json.loads((root / "features.json").read_text(encoding="utf-8"))
        splits = json.loads((root / "splits.json").read_text(encoding="utf-8"))
        tracks = pl.read_parquet(root / "tracks.parquet")
        names = list(features["names"])
        return cls(
            root=root,
            albums=pl.read_parquet(root / "albums.parquet"),
            reviews=pl.read_parquet(root / "reviews.parquet"),
            tracks=tracks,
            features=_read_feature_matrix(root / FEATURES_MATRIX, len(tracks), len(names)),
            feature_names=names,
            feature_mean=np.asarray(features["mean"], dtype=np.float64),
            feature_std=np.asarray(features["std"], dtype=np.float64),
            manifest=manifest,
            splits={name: list(splits.get(name, [])) for name in SPLITS},
        )

    @property
    def feature_set(self) -> str:
        return str(self.manifest.get("config", {}).get("features", ""))

    def vocabulary(self) -> Vocabulary:
        """The word vocabulary the review tokens were encoded with (also encodes search queries)."""
        return Vocabulary.load(self.root / "vocab")

    def raw_features(self) -> np.ndarray:
        """(n_tracks, D) float32 raw descriptor values, in track_idx order (read-only: mapped from features.npy)."""
        return self.features

    def standardized_features(self) -> np.ndarray:
        """(n_tracks, D) float32 ``(x - mean) / std`` with the TRAIN-split statistics from features.json."""
        return standardize(self.raw_features(), self.feature_mean, self.feature_std)

    def split_albums(self, split: str) -> list[str]:
        """Album ids of a split, from splits.json.

        Use this rather than ``albums.split == name``: with ``data.split=paper`` the test set *is* the val set,
        and the per-row ``split`` column can only say 'val' for those albums.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return list(self.splits.get(split, []))

    def split_review_indices(self, split: str) -> np.ndarray:
        """review_idx of the paired reviews of ``split`` (int64, ascending); works for the paper split too."""
        return self._rows_of(self.reviews, split)

    def split_track_indices(self, split: str) -> np.ndarray:
        """track_idx of the tracks of ``split`` (int64, ascending); works for the paper split too.

        With ``data.split=published`` files, not albums, are split: a track is in its own ``split`` only."""
        if self.manifest.get("config", {}).get("split") == "published":
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
            return np.flatnonzero((self.tracks.get_column("split") == split).fill_null(False).to_numpy()).astype(
                np.int64)
        return self._rows_of(self.tracks, split)

    def _rows_of(self, table: pl.DataFrame, split: str) -> np.ndarray:
        ids = pl.Series(self.split_albums(split), dtype=pl.String)
        mask = table.get_column("amazon_id").is_in(ids.implode())
        return np.flatnonzero(mask.to_numpy()).astype(np.int64)


def _read_feature_matrix(path: Path, n_tracks: int, n_features: int) -> np.ndarray:
    """features.npy, checked against the tracks table and the feature names (one-line error otherwise)."""
    try:
        # mapped, not read: the model input is computed from it once (standardised into a new array), so a copy of
        # its 300 MB at full MARD size would only cost memory and ~0.2 s of every run's start
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ProcessedDirError(f"{path}: not a readable descriptor matrix ({e}); prepare it again") from None
    if matrix.dtype != np.float32 or matrix.shape != (n_tracks, n_features):
        raise ProcessedDirError(f"{path}: holds {matrix.dtype}{list(matrix.shape)}, expected float32"
                                f"[{n_tracks}, {n_features}] (tracks.parquet rows × features.json names); "
                                "prepare it again")
    return matrix


def _read_manifest(root: Path) -> dict[str, Any]:
    hint = "run `python -m mte.prepare` (data.raw_dir=PATH) to build one, or pass the path it prints"
    if not root.is_dir():
        raise ProcessedDirError(f"not a processed dir: {root} does not exist; {hint}")
    try:
        manifest = json.loads((root / "manifest.json").read_bytes())
    except FileNotFoundError:
        raise ProcessedDirError(
            f"not a processed dir: {root} has no manifest.json (incomplete or interrupted prepare?); {hint}"
        ) from None
    except (OSError, ValueError) as e:
        raise ProcessedDirError(f"not a processed dir: {root}/manifest.json is unreadable ({e}); {hint}") from None
    missing = [name for name in DATA_NAMES if not (root / name).exists()]
    if not isinstance(manifest, dict) or missing:
        raise ProcessedDirError(f"not a complete processed dir: {root} lacks {', '.join(missing) or 'a manifest'}; "
                                f"{hint}")
    return manifest
