"""The searchable items of one model: albums, reviews and tracks of a processed dir, embedded once.

* albums = every album with at least one descriptor (all splits, paired or not): its embedding is the
  L2-normalised mean of its tracks' audio embeddings — the ``album`` protocol the retrieval metrics use
  (:func:`mte.eval.protocols.album_embeddings`), so search ranks albums exactly as evaluation does;
* reviews = the evaluation's queries (:func:`mte.eval.protocols.query_mask`: non-empty tokens for word-id models,
  non-blank text for transformers), embedded as training-time evaluation embeds them;
* tracks = every descriptor file (exported for external use; search itself ranks albums and reviews).

The processed dir is the model's training data or another MARD dir prepared with its input contract
(``data.raw_dir=…``); :meth:`Gallery.save` / :meth:`Gallery.load` are the Parquet form an export keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from mte.data.processed import ProcessedData
from mte.eval.protocols import album_embeddings, query_mask
from mte.models.inference import LoadedModel
from mte.search.errors import Progress, SearchError, one_line, quiet

TABLES = ("albums", "reviews", "tracks")


@dataclass(frozen=True)
class GallerySource:
    """Where a gallery's items come from: the model's training data, another MARD dir (``raw_dir``) prepared with
    the model's contract, or an export of either (then ``index_dir``); ``fingerprint`` is the processed dir's
    input fingerprint, which an export must match."""

    processed_dir: str | None
    fingerprint: str | None
    raw_dir: str | None = None
    index_dir: str | None = None

    @property
    def description(self) -> str:
        what = f"MARD dir {self.raw_dir}" if self.raw_dir else "the training data"
        return f"{what} (export {self.index_dir})" if self.index_dir else what


@dataclass
class Gallery:
    """The searchable items: three tables whose row i is embedding row i (float32, unit length)."""

    albums: pl.DataFrame  # amazon_id, artist, title, genre, split, n_tracks, n_reviews
    album_emb: torch.Tensor
    reviews: pl.DataFrame  # review_idx, amazon_id, artist, title, genre, rating, split, summary, text
    review_emb: torch.Tensor
    tracks: pl.DataFrame  # track_idx, amazon_id, mbid, file, tag_artist, tag_title, split
    track_emb: torch.Tensor

    @classmethod
    def embed(cls, loaded: LoadedModel, data: ProcessedData, progress: Progress | None = None) -> Gallery:
        """Embed every track (→ albums) and every readable review of ``data`` (read through the model's contract)."""
        say = progress or quiet
        say(f"embedding {len(data.tracks)} tracks")
        track_emb = loaded.embed_raw_features(data.raw_features()) if len(data.tracks) else _empty(loaded)
        album_emb, album_ids = _albums_from_tracks(track_emb, data.tracks.get_column("amazon_id"))
        meta = data.albums.select("amazon_id", "artist", "title", "genre", "split", "n_tracks", "n_reviews")
        albums = pl.DataFrame({"amazon_id": album_ids}, schema={"amazon_id": pl.String}).join(
            meta, on="amazon_id", how="left", maintain_order="left"
        )
        rows = _readable_reviews(loaded, data)
        say(f"embedding {len(rows)} reviews")
        review_emb = loaded.embed_reviews(data.reviews[rows]) if len(rows) else _empty(loaded)
        reviews = (
            data.reviews[rows]
            .select("review_idx", "amazon_id", "rating", "split", "summary", "text")
            .join(data.albums.select("amazon_id", "artist", "title", "genre"), on="amazon_id", how="left",
                  maintain_order="left")
            .select("review_idx", "amazon_id", "artist", "title", "genre", "rating", "split", "summary", "text")
        )
        tracks = data.tracks.select("track_idx", "amazon_id", "mbid", "file", "tag_artist", "tag_title", "split")
        return cls(albums, album_emb, reviews, review_emb, tracks, track_emb)

    @property
    def embed_dim(self) -> int:
        return int(self.album_emb.shape[1])

    def counts(self) -> dict[str, int]:
        return {"albums": len(self.albums), "reviews": len(self.reviews), "tracks": len(self.tracks)}

    def save(self, out_dir: Path) -> None:
        """Write albums/reviews/tracks.parquet, each with an ``embedding`` Array(Float32, D) column (zstd)."""
        for name in TABLES:
            table, emb = self.table(name)
            vectors = emb.detach().cpu().numpy().astype(np.float32, copy=False).reshape(len(table), self.embed_dim)
            table.with_columns(pl.Series("embedding", vectors)).write_parquet(
                out_dir / f"{name}.parquet", compression="zstd", statistics=False
            )

    @classmethod
    def load(cls, index_dir: Path, embed_dim: int) -> Gallery:
        """Read the Parquet files :meth:`save` wrote; :class:`SearchError` when one is missing or malformed."""
        parts: list[Any] = []
        for name in TABLES:
            path = index_dir / f"{name}.parquet"
            try:
                table = pl.read_parquet(path)
            except (OSError, pl.exceptions.PolarsError) as e:
                raise SearchError(f"index dir {index_dir}: cannot read {name}.parquet ({one_line(e)}); "
                                  f"re-run python -m mte.export") from None
            if "embedding" not in table.columns:
                raise SearchError(f"index dir {index_dir}: {name}.parquet has no embedding column")
            vectors = _embedding_matrix(table.get_column("embedding"), embed_dim, path)
            parts += [table.drop("embedding"), torch.from_numpy(vectors)]
        return cls(*parts)

    def table(self, name: str) -> tuple[pl.DataFrame, torch.Tensor]:
        """One of :data:`TABLES` and its embeddings."""
        return {"albums": (self.albums, self.album_emb), "reviews": (self.reviews, self.review_emb),
                "tracks": (self.tracks, self.track_emb)}[name]


def _empty(loaded: LoadedModel) -> torch.Tensor:
    return torch.zeros(0, loaded.embed_dim)


def _albums_from_tracks(track_emb: torch.Tensor, track_album: pl.Series) -> tuple[torch.Tensor, list[str]]:
    """Album embeddings (normalised mean of their tracks) in sorted amazon_id order, and those ids."""
    ids, codes = np.unique(track_album.to_numpy().astype(str), return_inverse=True)
    if len(ids) == 0:
        return track_emb[:0], []
    emb, order = album_embeddings(track_emb, torch.from_numpy(codes.astype(np.int64)))
    return emb, [str(ids[i]) for i in order.tolist()]


def _readable_reviews(loaded: LoadedModel, data: ProcessedData) -> np.ndarray:
    """Rows of the reviews the model can read: the evaluation's query rule, applied to the whole dir."""
    if loaded.reads_tokens:
        lengths = data.reviews.get_column("tokens").list.len().fill_null(0).to_numpy()
        return np.flatnonzero(query_mask(token_lengths=lengths))
    return np.flatnonzero(query_mask(texts=loaded.contract.review_texts(data.reviews)))


def _embedding_matrix(column: pl.Series, dim: int, path: Path) -> np.ndarray:
    if len(column) == 0:
        return np.zeros((0, dim), np.float32)
    matrix = column.to_numpy()
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise SearchError(f"{path}: embeddings have shape {matrix.shape}, expected (n, {dim})")
    return np.array(matrix, dtype=np.float32, order="C", copy=True)  # writable: torch shares its memory
