"""Search a trained model's joint space: text → albums, descriptor/audio → reviews and albums, a 2-D map.

This is the reusable core behind ``python -m mte.search``, ``python -m mte.export`` and the web page: load once
(:meth:`SearchEngine.from_checkpoint`), then answer many queries cheaply. Everything a front end needs comes back
as plain dataclasses (:class:`AlbumHit`, :class:`ReviewHit`) or dicts of lists, so it serialises to JSON as is.

The gallery
    * albums = every album with at least one descriptor (all splits, paired or not): its embedding is the
      L2-normalised mean of its tracks' audio embeddings — the ``album`` protocol the retrieval metrics use
      (:func:`mte.train.callbacks.album_embeddings`), so search ranks albums exactly as evaluation does;
    * reviews = every review with text the model can read (non-empty tokens for bow/lstm, a non-blank
      summary/text for transformers), embedded from the same input the model was trained on;
    * tracks = every descriptor file (exported for external use; search itself ranks albums and reviews).

Why an export exists: embedding the gallery is cheap for bag-of-words (seconds) but takes hours for a
transformer over MARD's 263k reviews on a CPU. :meth:`SearchEngine.export` writes the embeddings to Parquet
(+ optional FAISS indexes); :meth:`SearchEngine.from_checkpoint` with ``index_dir`` loads them instead of
re-embedding, after checking they were made from the same checkpoint and processed dir.

Scores are cosine similarities (all embeddings have unit length, so this ranks exactly like the Euclidean distance
the margin loss trains with). Queries only read shared state, so one engine can serve concurrent requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch

from mte.cli import UserError
from mte.data.descriptors import DescriptorError, extract_features, load_descriptor
from mte.models.inference import LoadedModel, load_checkpoint

__all__ = [
    "DEFAULT_NPROBE",
    "EXPORT_FORMAT",
    "IVF_MIN_SIZE",
    "AlbumHit",
    "Gallery",
    "ReviewHit",
    "SearchEngine",
    "SearchError",
    "build_faiss_index",
    "checkpoint_identity",
    "default_index_dir",
    "find_index_dir",
    "load_document",
]

Progress = Callable[[str], None]

EXPORT_FORMAT = "mte-export/1"
# FAISS index choice (see build_faiss_index). Below IVF_MIN_SIZE vectors: a flat (exact) inner-product index.
# Measured on the 2-core dev machine, D=128: an exact scan of MARD's 263k reviews takes ~40 ms per query (flat
# FAISS and torch alike), while IVF (nlist 2053, nprobe 32) takes ~0.1 ms but found only 28% of the true top 10
# on isotropic random vectors (100% on tightly clustered ones) — so at MARD scale exactness wins and IVF starts at
# 1M vectors, with nlist = 4·√n lists (1M → 4000) probing DEFAULT_NPROBE of them (raise it for better recall).
IVF_MIN_SIZE = 1_000_000
DEFAULT_NPROBE = 64
SNIPPET_CHARS = 240
N_SNIPPETS = 2
# Reviews are embedded in chunks: big for the cheap word models, small for transformers (activation memory).
_WORD_BATCH = 2048
_HF_BATCH = 64
_TABLES = ("albums", "reviews", "tracks")


class SearchError(ValueError, UserError):
    """A query or index that cannot be used; the message is one line saying what is wrong and what to do.

    A :class:`mte.cli.UserError`, so entry points print it as one ``error:`` line and exit with status 2.
    """


@dataclass(frozen=True)
class AlbumHit:
    """One album in a ranking. ``snippets``: its reviews closest to the query (best first), shortened."""

    amazon_id: str
    artist: str | None
    title: str | None
    genre: str | None
    score: float
    snippets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReviewHit:
    """One review in a ranking, with its album's metadata and a shortened text."""

    review_idx: int
    amazon_id: str
    artist: str | None
    title: str | None
    genre: str | None
    score: float
    snippet: str


# --------------------------------------------------------------------------------------------------- gallery
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
    def embed(cls, loaded: LoadedModel, progress: Progress | None = None) -> Gallery:
        """Embed every track (→ albums) and every readable review of the model's processed dir."""
        say = progress or _quiet
        data = loaded.data
        say(f"embedding {len(data.tracks)} tracks")
        track_emb = loaded.embed_raw_features(data.raw_features()) if len(data.tracks) else _empty(loaded)
        album_emb, album_ids = _albums_from_tracks(track_emb, data.tracks.get_column("amazon_id"))
        meta = data.albums.select("amazon_id", "artist", "title", "genre", "split", "n_tracks", "n_reviews")
        albums = pl.DataFrame({"amazon_id": album_ids}, schema={"amazon_id": pl.String}).join(
            meta, on="amazon_id", how="left", maintain_order="left"
        )
        rows = _readable_reviews(loaded)
        say(f"embedding {len(rows)} reviews")
        review_emb = loaded.embed_reviews(rows) if len(rows) else _empty(loaded)
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
        for name in _TABLES:
            table, emb = self._table(name)
            vectors = emb.detach().cpu().numpy().astype(np.float32, copy=False).reshape(len(table), self.embed_dim)
            table.with_columns(pl.Series("embedding", vectors)).write_parquet(
                out_dir / f"{name}.parquet", compression="zstd", statistics=False
            )

    @classmethod
    def load(cls, index_dir: Path, embed_dim: int) -> Gallery:
        """Read the Parquet files :meth:`save` wrote; :class:`SearchError` when one is missing or malformed."""
        parts: list[Any] = []
        for name in _TABLES:
            path = index_dir / f"{name}.parquet"
            try:
                table = pl.read_parquet(path)
            except (OSError, pl.exceptions.PolarsError) as e:
                raise SearchError(f"index dir {index_dir}: cannot read {name}.parquet ({_one_line(e)}); "
                                  f"re-run python -m mte.export") from None
            if "embedding" not in table.columns:
                raise SearchError(f"index dir {index_dir}: {name}.parquet has no embedding column")
            vectors = _embedding_matrix(table.get_column("embedding"), embed_dim, path)
            parts += [table.drop("embedding"), torch.from_numpy(vectors)]
        return cls(*parts)

    def _table(self, name: str) -> tuple[pl.DataFrame, torch.Tensor]:
        return {"albums": (self.albums, self.album_emb), "reviews": (self.reviews, self.review_emb),
                "tracks": (self.tracks, self.track_emb)}[name]


def _quiet(_message: str) -> None:
    return None


def _empty(loaded: LoadedModel) -> torch.Tensor:
    return torch.zeros(0, loaded.embed_dim)


def _albums_from_tracks(track_emb: torch.Tensor, track_album: pl.Series) -> tuple[torch.Tensor, list[str]]:
    """Album embeddings (normalised mean of their tracks) in sorted amazon_id order, and those ids."""
    from mte.train.callbacks import album_embeddings  # the metrics' own definition; lazy: it imports Lightning

    ids, codes = np.unique(track_album.to_numpy().astype(str), return_inverse=True)
    if len(ids) == 0:
        return track_emb[:0], []
    emb, order = album_embeddings(track_emb, torch.from_numpy(codes.astype(np.int64)))
    return emb, [str(ids[i]) for i in order.tolist()]


def _readable_reviews(loaded: LoadedModel) -> np.ndarray:
    """Rows of the reviews the model can read: non-empty token lists (bow/LSTM) or non-blank text (HF)."""
    if loaded.reads_tokens:
        lengths = loaded.data.reviews.get_column("tokens").list.len().fill_null(0).to_numpy()
        return np.flatnonzero(lengths > 0)
    return np.array([i for i, t in enumerate(loaded.review_texts()) if t.strip()], dtype=np.int64)


def _embedding_matrix(column: pl.Series, dim: int, path: Path) -> np.ndarray:
    if len(column) == 0:
        return np.zeros((0, dim), np.float32)
    matrix = column.to_numpy()
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise SearchError(f"{path}: embeddings have shape {matrix.shape}, expected (n, {dim})")
    return np.array(matrix, dtype=np.float32, order="C", copy=True)  # writable: torch shares its memory


# ------------------------------------------------------------------------------------------ checkpoint identity
def checkpoint_identity(path: str | Path, with_hash: bool = True) -> dict[str, Any]:
    """What an export records about its checkpoint: resolved path, size, mtime and (by default) SHA-256."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    ident: dict[str, Any] = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if with_hash:
        ident["sha256"] = _sha256(path)
    return ident


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_checkpoint(recorded: dict[str, Any], path: Path) -> bool:
    """Cheap test first (same file, size and mtime); the hash only when the file was copied or touched."""
    try:
        now = checkpoint_identity(path, with_hash=False)
    except OSError:
        return False
    if now["size"] != recorded.get("size"):
        return False
    if now["path"] == recorded.get("path") and now["mtime_ns"] == recorded.get("mtime_ns"):
        return True
    return _sha256(path) == recorded.get("sha256")


def default_index_dir(ckpt_path: str | Path) -> Path:
    """Where ``mte.export`` writes by default: beside the checkpoint, ``<dir>/<stem>-export`` (best-export/…)."""
    path = Path(ckpt_path).expanduser()
    return path.parent / f"{path.stem}-export"


def find_index_dir(ckpt_path: str | Path) -> Path | None:
    """The default export dir of this checkpoint when it exists and was made from this very checkpoint."""
    candidate = default_index_dir(ckpt_path)
    manifest = _read_manifest(candidate) if (candidate / "manifest.json").is_file() else None
    if manifest is None or not _same_checkpoint(manifest.get("checkpoint", {}), Path(ckpt_path).expanduser()):
        return None
    return candidate


def _read_manifest(index_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == EXPORT_FORMAT else None


# ------------------------------------------------------------------------------------------------------ FAISS
def build_faiss_index(
    vectors: np.ndarray, ivf_min_size: int = IVF_MIN_SIZE, nlist: int | None = None, nprobe: int = DEFAULT_NPROBE
) -> tuple[Any, dict[str, Any]]:
    """An inner-product FAISS index over ``vectors`` (rows = ids), and a description for the manifest.

    Flat (exact) below ``ivf_min_size`` vectors; IVF-Flat above, with ``nlist`` lists (default 4·√n, at most n/39
    so k-means has the 39 points per centroid FAISS asks for) trained on all vectors, searched with ``nprobe``.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n < max(ivf_min_size, 1):
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        return index, {"type": "flat", "n": n}
    lists = int(nlist) if nlist else round(4 * np.sqrt(n))
    lists = max(1, min(lists, n // 39 or 1))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0  # reproducible k-means
    index.train(x)
    index.add(x)
    index.nprobe = min(int(nprobe), lists)
    return index, {"type": "ivf", "n": n, "nlist": lists, "nprobe": index.nprobe}


def _load_faiss(index_dir: Path, spec: dict[str, Any]) -> Any | None:
    """The FAISS index a manifest entry names, or None when faiss is not installed (exact search then)."""
    try:
        import faiss
    except ImportError:
        return None
    path = index_dir / str(spec.get("file", ""))
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise SearchError(f"index dir {index_dir}: cannot read {path.name} ({_one_line(e)}); "
                          f"re-run python -m mte.export faiss=true") from None
    if spec.get("type") == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(spec.get("nprobe", DEFAULT_NPROBE))
    return index


# ------------------------------------------------------------------------------------------------ the engine
class SearchEngine:
    """Queries against one model's gallery. Build with :meth:`from_checkpoint`; every method is read-only."""

    def __init__(self, model: LoadedModel, gallery: Gallery, faiss_indexes: dict[str, Any] | None = None,
                 index_dir: Path | None = None) -> None:
        self.model = model
        self.gallery = gallery
        self.faiss_indexes = dict(faiss_indexes or {})
        self.index_dir = index_dir
        self._album_ids = gallery.albums.get_column("amazon_id").to_list()
        self._album_row = {aid: i for i, aid in enumerate(self._album_ids)}
        self._reviews_of = _group_rows(gallery.reviews.get_column("amazon_id"))
        self._vocab = model.vocabulary if model.reads_tokens else None
        self.embed_seconds: float | None = None  # time spent embedding the gallery (None: read from an export)

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | Path,
        index_dir: str | Path | None = None,
        *,
        processed_dir: str | Path | None = None,
        device: str = "cpu",
        progress: Progress | None = None,
    ) -> SearchEngine:
        """Load a checkpoint and its gallery: embedded now, or read from an export dir (``index_dir``).

        Raises :class:`mte.models.inference.CheckpointError` for an unusable checkpoint, ProcessedDirError when its
        processed dir is gone, and :class:`SearchError` when ``index_dir`` is not an export of this checkpoint.
        """
        say = progress or _quiet
        say(f"loading {ckpt_path}")
        loaded = load_checkpoint(ckpt_path, processed_dir=processed_dir, device=device)
        if index_dir is None:
            start = time.perf_counter()
            engine = cls(loaded, Gallery.embed(loaded, say))
            engine.embed_seconds = time.perf_counter() - start
            return engine
        index_dir = Path(index_dir).expanduser()
        manifest = _check_export(index_dir, loaded)
        say(f"reading embeddings from {index_dir}")
        gallery = Gallery.load(index_dir, int(manifest["embed_dim"]))
        if gallery.counts() != manifest.get("counts"):
            raise SearchError(f"index dir {index_dir}: row counts {gallery.counts()} differ from its manifest "
                              f"{manifest.get('counts')}; re-run python -m mte.export")
        indexes = {}
        for name, spec in (manifest.get("faiss") or {}).items():
            index = _load_faiss(index_dir, spec)
            if index is not None:
                indexes[name] = index
        return cls(loaded, gallery, indexes, index_dir)

    # -- facts ----------------------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """What a front end shows about the engine: checkpoint, model, gallery sizes, where embeddings came from."""
        data = self.model.data
        return {
            "checkpoint": str(self.model.checkpoint),
            "processed_dir": str(data.root),
            "feature_set": self.feature_set,
            "n_features": len(data.feature_names),
            "embed_dim": self.gallery.embed_dim,
            "text_backbone": str(self.model.model.hparams["text"].get("name", "")),  # type: ignore[attr-defined]
            "counts": self.gallery.counts(),
            "index_dir": str(self.index_dir) if self.index_dir else None,
            "faiss": sorted(self.faiss_indexes),
            "genres": self.genres,
        }

    @property
    def feature_set(self) -> str:
        """The descriptor feature set the model reads (seed169 | seed369 | lowlevel_all)."""
        data = self.model.data
        if data.feature_set:
            return data.feature_set
        return {169: "seed169", 369: "seed369"}.get(len(data.feature_names), "lowlevel_all")

    @cached_property
    def genres(self) -> list[str]:
        """The album gallery's genres, sorted (for filters and map legends)."""
        return sorted(self.gallery.albums.get_column("genre").drop_nulls().unique().to_list())

    # -- query embeddings -----------------------------------------------------------------------------------
    def embed_text(self, query: str) -> np.ndarray:
        """Unit-length embedding (D,) of a free-text query; :class:`SearchError` for blank or all-unknown words."""
        if not isinstance(query, str) or not query.strip():
            raise SearchError("empty query: describe the music in a few words, e.g. query=\"dreamy synth pop\"")
        if self._vocab is None:
            return self.model.embed_texts([query])[0].numpy()
        ids = self._vocab.encode(query)
        if not any(i > 1 for i in ids):  # 0 = [PAD], 1 = [UNK]
            raise SearchError(f"none of the words in {query!r} are in the model's vocabulary "
                              f"({self._vocab.size} words; stop words are ignored): try other words")
        return self.model.embed_token_ids([ids])[0].numpy()

    def embed_descriptor(self, doc_or_path: dict | str | Path | bytes | np.ndarray) -> np.ndarray:
        """Unit-length audio embedding (D,) of an AcousticBrainz document (dict, JSON path or bytes) or of a raw
        feature vector in the model's feature order; :class:`SearchError` (one line) when it does not fit."""
        raw = self.descriptor_features(doc_or_path)
        return self.model.embed_raw_features(raw[None, :])[0].numpy()

    def descriptor_features(self, doc_or_path: dict | str | Path | bytes | np.ndarray) -> np.ndarray:
        """The RAW feature vector (float64, model order) of a descriptor; see :meth:`embed_descriptor`."""
        names = self.model.data.feature_names
        if isinstance(doc_or_path, np.ndarray):
            vec = np.asarray(doc_or_path, dtype=np.float64).ravel()
            label = "descriptor vector"
        else:
            doc, label = load_document(doc_or_path)
            vec = self._document_features(doc, label)
        if vec.shape != (len(names),):
            raise SearchError(f"{label} has {vec.size} feature values; this model reads {len(names)} "
                              f"({self.feature_set})")
        if not np.isfinite(vec).all():
            raise SearchError(f"{label}: non-finite feature values")
        return vec

    def _document_features(self, doc: dict, label: str) -> np.ndarray:
        feature_set = self.feature_set
        try:
            feats = extract_features(doc, feature_set)
        except DescriptorError as e:
            raise SearchError(f"{label}: unusable descriptor for {feature_set} features ({e})") from None
        if isinstance(feats, np.ndarray):
            return feats.astype(np.float64)
        names = self.model.data.feature_names
        missing = [n for n in names if n not in feats]
        if missing:
            raise SearchError(
                f"{label}: lacks {len(missing)} of the model's {len(names)} {feature_set} features (e.g. "
                f"{', '.join(missing[:3])}); it comes from a different extractor version than the training data"
            )
        return np.array([feats[n] for n in names], dtype=np.float64)

    def describe_audio(self, path: str | Path, progress: Progress | None = None) -> dict[str, Any]:
        """An audio file's AcousticBrainz-shaped document (Essentia); :class:`SearchError` when unreadable.

        ImportError (one line naming the ``audio`` extra) when Essentia is not installed.
        """
        from mte.search.essentia import AudioError, extract_descriptor

        try:
            return extract_descriptor(path, progress=progress)
        except AudioError as e:
            raise SearchError(str(e)) from None

    # -- searches ---------------------------------------------------------------------------------------------
    def by_text(self, query: str, k: int = 10) -> list[AlbumHit]:
        """Albums whose audio is closest to a text query (text → audio), each with its closest review snippets."""
        return self.albums_near(self.embed_text(query), k)

    def by_descriptor(
        self, doc_or_path: dict | str | Path | bytes | np.ndarray, k: int = 10
    ) -> tuple[list[ReviewHit], list[AlbumHit]]:
        """Reviews closest to a descriptor's audio embedding (audio → text) and albums that sound closest."""
        q = self.embed_descriptor(doc_or_path)
        return self.reviews_near(q, k), self.albums_near(q, k)

    def by_audio(
        self, path: str | Path, k: int = 10, progress: Progress | None = None
    ) -> tuple[list[ReviewHit], list[AlbumHit]]:
        """:meth:`by_descriptor` for an audio file, described first with Essentia (~0.1× its duration)."""
        doc = self.describe_audio(path, progress)
        if progress:
            progress("searching")
        return self.by_descriptor(doc, k)

    def similar_albums(self, amazon_id: str, k: int = 10) -> list[AlbumHit]:
        """Albums that sound closest to a gallery album (itself excluded)."""
        row = self._album_row.get(amazon_id)
        if row is None:
            raise SearchError(f"unknown album {amazon_id!r}: not in the album gallery (albums with audio)")
        hits = self.albums_near(self.gallery.album_emb[row].numpy(), _check_k(k) + 1)
        return [h for h in hits if h.amazon_id != amazon_id][:k]

    def albums_near(self, vector: np.ndarray, k: int = 10) -> list[AlbumHit]:
        """The ``k`` gallery albums closest to a unit vector of the joint space, with review snippets."""
        q = _query_tensor(vector, self.gallery.embed_dim)
        scores, rows = self._nearest("albums", q, _check_k(k))
        albums = self.gallery.albums
        hits = []
        for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
            rec = albums.row(row, named=True)
            hits.append(AlbumHit(rec["amazon_id"], rec["artist"], rec["title"], rec["genre"], float(score),
                                 self._snippets(rec["amazon_id"], q)))
        return hits

    def reviews_near(self, vector: np.ndarray, k: int = 10) -> list[ReviewHit]:
        """The ``k`` gallery reviews closest to a unit vector of the joint space."""
        q = _query_tensor(vector, self.gallery.embed_dim)
        scores, rows = self._nearest("reviews", q, _check_k(k))
        reviews = self.gallery.reviews
        hits = []
        for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
            rec = reviews.row(row, named=True)
            hits.append(ReviewHit(int(rec["review_idx"]), rec["amazon_id"], rec["artist"], rec["title"],
                                  rec["genre"], float(score), snippet(rec["summary"], rec["text"])))
        return hits

    def _nearest(self, which: Literal["albums", "reviews"], q: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        emb = self.gallery.album_emb if which == "albums" else self.gallery.review_emb
        k = min(k, len(emb))
        if k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        index = self.faiss_indexes.get(which)
        if index is not None:
            scores, ids = index.search(q.numpy()[None, :].astype(np.float32), k)
            keep = ids[0] >= 0  # IVF returns -1 when the probed lists hold fewer than k vectors
            return scores[0][keep], ids[0][keep].astype(np.int64)
        return exact_search(emb, q, k)

    def _snippets(self, amazon_id: str, q: torch.Tensor, n: int = N_SNIPPETS) -> list[str]:
        rows = self._reviews_of.get(amazon_id)
        if rows is None or len(rows) == 0:
            return []
        _, best = exact_search(self.gallery.review_emb[torch.from_numpy(rows)], q, min(n, len(rows)))
        reviews = self.gallery.reviews
        return [snippet(reviews["summary"][int(rows[i])], reviews["text"][int(rows[i])]) for i in best.tolist()]

    # -- map ----------------------------------------------------------------------------------------------------
    def map_2d(self) -> dict[str, Any]:
        """2-D PCA coordinates of the album gallery, for a scatter plot coloured by genre.

        Returns ``{amazon_id, artist, title, genre, x, y}`` (parallel lists, gallery order) plus ``genres`` and
        ``explained_variance`` (share of variance of each axis). The PCA is fitted once per engine
        (``torch.pca_lowrank`` with a fixed seed, signs fixed), so :meth:`project` places queries on the same map.
        """
        xy = self.project(self.gallery.album_emb.numpy())
        albums = self.gallery.albums
        return {
            "amazon_id": self._album_ids,
            "artist": albums.get_column("artist").to_list(),
            "title": albums.get_column("title").to_list(),
            "genre": albums.get_column("genre").to_list(),
            "x": xy[:, 0].tolist(),
            "y": xy[:, 1].tolist(),
            "genres": self.genres,
            "explained_variance": self._pca[2],
        }

    def project(self, vectors: np.ndarray | torch.Tensor) -> np.ndarray:
        """(n, D) or (D,) joint-space vectors → (n, 2) map coordinates (float32), e.g. a query's embedding."""
        mean, components, _ = self._pca
        v = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        v = v.reshape(-1, self.gallery.embed_dim)
        return ((v - mean) @ components).numpy()

    @cached_property
    def _pca(self) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        return fit_pca_2d(self.gallery.album_emb)

    # -- export -------------------------------------------------------------------------------------------------
    def export(
        self,
        out_dir: str | Path | None = None,
        *,
        faiss: bool = False,
        ivf_min_size: int = IVF_MIN_SIZE,
        nlist: int | None = None,
        nprobe: int = DEFAULT_NPROBE,
        progress: Progress | None = None,
    ) -> Path:
        """Write the gallery (Parquet + manifest, optional FAISS indexes) atomically; returns the dir.

        Default ``out_dir``: :func:`default_index_dir` (beside the checkpoint), which ``mte.search`` picks up by
        itself. The dir is built under a temp name next to it and renamed into place, so readers never see a
        half-written export and a failed export leaves the previous one intact.
        """
        say = progress or _quiet
        start = time.perf_counter()
        out = Path(out_dir).expanduser() if out_dir else default_index_dir(self.model.checkpoint)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            say(f"writing Parquet to {out}")
            self.gallery.save(tmp)
            indexes: dict[str, Any] = {}
            if faiss:
                indexes = self._write_faiss(tmp, ivf_min_size, nlist, nprobe, say)
            manifest = self._export_manifest(indexes, ivf_min_size, time.perf_counter() - start)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    def _write_faiss(self, out: Path, ivf_min_size: int, nlist: int | None, nprobe: int,
                     say: Progress) -> dict[str, Any]:
        import faiss

        specs = {}
        for name in ("albums", "reviews"):
            _, emb = self.gallery._table(name)
            say(f"building the FAISS index of {len(emb)} {name}")
            index, spec = build_faiss_index(emb.numpy(), ivf_min_size=ivf_min_size, nlist=nlist, nprobe=nprobe)
            faiss.write_index(index, str(out / f"{name}.faiss"))
            specs[name] = {**spec, "file": f"{name}.faiss"}
        return specs

    def _export_manifest(self, faiss_specs: dict[str, Any], ivf_min_size: int, elapsed: float) -> dict[str, Any]:
        import mte

        data = self.model.data
        return {
            "format": EXPORT_FORMAT,
            "mte_version": getattr(mte, "__version__", "unknown"),
            "checkpoint": checkpoint_identity(self.model.checkpoint),
            "processed_dir": str(Path(data.root).resolve()),
            "processed_fingerprint": data.manifest.get("fingerprint"),
            "feature_set": self.feature_set,
            "embed_dim": self.gallery.embed_dim,
            "text_backbone": self.info["text_backbone"],
            "counts": self.gallery.counts(),
            "faiss": faiss_specs,
            "ivf_min_size": ivf_min_size,
            "score": "cosine similarity (inner product of unit vectors)",
            "embed_s": round(self.embed_seconds, 3) if self.embed_seconds is not None else None,
            "write_s": round(elapsed, 3),
        }


def _check_export(index_dir: Path, loaded: LoadedModel) -> dict[str, Any]:
    """The manifest of an export dir made from this checkpoint and processed dir, else SearchError."""
    if not (index_dir / "manifest.json").is_file():
        raise SearchError(f"not an export dir: {index_dir} has no manifest.json; make one with "
                          f"python -m mte.export ckpt_path={loaded.checkpoint}")
    manifest = _read_manifest(index_dir)
    if manifest is None:
        raise SearchError(f"{index_dir}/manifest.json is not an {EXPORT_FORMAT} manifest; re-run python -m mte.export")
    if not _same_checkpoint(manifest.get("checkpoint", {}), Path(loaded.checkpoint)):
        raise SearchError(f"index dir {index_dir} was exported from another checkpoint "
                          f"({manifest.get('checkpoint', {}).get('path')}); re-run python -m mte.export "
                          f"ckpt_path={loaded.checkpoint}")
    fingerprint = loaded.data.manifest.get("fingerprint")
    if manifest.get("processed_fingerprint") != fingerprint:
        raise SearchError(f"index dir {index_dir} was exported from other processed data; re-run python -m mte.export")
    if int(manifest.get("embed_dim", -1)) != loaded.embed_dim:
        raise SearchError(f"index dir {index_dir} holds {manifest.get('embed_dim')}-d embeddings; the model makes "
                          f"{loaded.embed_dim}-d ones")
    return manifest


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished dir into place; an existing one is renamed away first and deleted after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- helpers
def exact_search(emb: torch.Tensor, q: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``emb`` by inner product with ``q`` (scores descending; ties → lower row first)."""
    k = min(k, len(emb))
    if k == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = emb @ q
    top = torch.topk(scores, k, sorted=True)
    return top.values.numpy(), top.indices.numpy().astype(np.int64)


def fit_pca_2d(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(mean (D,), components (D, 2), explained-variance shares) of ``emb``; deterministic and sign-fixed."""
    n, dim = emb.shape
    mean = emb.mean(dim=0) if n else torch.zeros(dim)
    if n < 2:
        return mean, torch.zeros(dim, 2), [0.0, 0.0]
    centred = emb - mean
    q = min(6, n, dim)
    with torch.random.fork_rng(devices=[]):  # pca_lowrank draws a random projection: fixed seed, same map
        torch.manual_seed(0)
        _, s, v = torch.pca_lowrank(centred, q=q, center=False, niter=6)
    components = torch.zeros(dim, 2)
    width = min(2, v.shape[1])
    components[:, :width] = v[:, :width]
    # An eigenvector's sign is arbitrary: make each axis's largest loading positive so maps are stable.
    signs = torch.sign(components[components.abs().argmax(dim=0), torch.arange(2)])
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    total = float((centred**2).sum())
    shares = [(float(s[i] ** 2) / total if total > 0 and i < len(s) else 0.0) for i in range(2)]
    return mean, components, shares


def snippet(summary: str | None, text: str | None, limit: int = SNIPPET_CHARS) -> str:
    """A review shortened for display: "summary — start of text…", cut at a word boundary."""
    summary = " ".join((summary or "").split())
    text = " ".join((text or "").split())
    full = f"{summary} — {text}" if summary and text else summary or text
    if len(full) <= limit:
        return full
    cut = full[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:—-") + "…"


def _group_rows(keys: pl.Series) -> dict[str, np.ndarray]:
    """amazon_id → the table rows holding it (ascending)."""
    if len(keys) == 0:
        return {}
    frame = pl.DataFrame({"key": keys}).with_row_index("row").group_by("key", maintain_order=True).agg("row")
    return {k: np.asarray(r, dtype=np.int64) for k, r in zip(frame["key"].to_list(), frame["row"].to_list(),
                                                              strict=True)}


def _query_tensor(vector: np.ndarray | torch.Tensor, dim: int) -> torch.Tensor:
    q = torch.as_tensor(np.asarray(vector, dtype=np.float32)).reshape(-1)
    if q.shape != (dim,):
        raise SearchError(f"query vector has {q.numel()} values; the joint space has {dim}")
    return q


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SearchError(f"k must be a positive integer, got {k!r}")
    return int(k)


def load_document(source: dict | str | Path | bytes) -> tuple[dict, str]:
    """A descriptor document from a dict, a JSON file path or JSON bytes, and a label for messages."""
    if isinstance(source, dict):
        return source, "descriptor"
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), "descriptor"
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        label = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SearchError(f"descriptor file not found: {path}") from None
        except OSError as e:
            raise SearchError(f"cannot read descriptor {path}: {e.strerror or e}") from None
    else:
        raise SearchError(f"a descriptor must be a dict, a JSON file path or bytes, not {type(source).__name__}")
    try:
        return load_descriptor(data), label
    except DescriptorError as e:
        raise SearchError(f"{label}: broken descriptor ({e})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__
