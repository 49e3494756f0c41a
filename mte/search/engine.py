"""Search a trained model's joint space: text → albums, descriptor/audio → reviews and albums, a 2-D map.

This is the reusable core behind ``python -m mte.search``, ``python -m mte.export`` and the web page: load once
(:meth:`SearchEngine.from_checkpoint`), then answer many queries cheaply. Everything a front end needs comes back
as plain dataclasses (:class:`AlbumHit`, :class:`ReviewHit`) or dicts of lists, so it serialises to JSON as is.

The gallery (:mod:`mte.search.gallery`) is the model's training data, another MARD-format dir prepared with the
model's input contract (``raw_dir``: a user's own collection), or an export of either (:mod:`mte.search.export`,
with optional FAISS indexes, :mod:`mte.search.faiss_index`). Queries become model input through the same contract,
so free text and descriptors are read exactly as in training.

Scores are cosine similarities (all embeddings have unit length, so this ranks exactly like the Euclidean distance
the margin loss trains with). Queries only read shared state, so one engine can serve concurrent requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch

from mte.data.descriptors import DescriptorError, extract_features, load_descriptor
from mte.models.inference import LoadedModel, load_checkpoint
from mte.search.errors import Progress, SearchError, quiet
from mte.search.export import load_export, write_export
from mte.search.faiss_index import DEFAULT_NPROBE, IVF_MIN_SIZE
from mte.search.gallery import Gallery, GallerySource

__all__ = ["AlbumHit", "ReviewHit", "SearchEngine", "SearchError", "exact_search", "fit_pca_2d", "load_document",
           "snippet"]

SNIPPET_CHARS = 240
N_SNIPPETS = 2


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


# ------------------------------------------------------------------------------------------------ the engine
class SearchEngine:
    """Queries against one model's gallery. Build with :meth:`from_checkpoint`; every method is read-only."""

    def __init__(self, model: LoadedModel, gallery: Gallery, source: GallerySource,
                 faiss_indexes: dict[str, Any] | None = None) -> None:
        self.model = model
        self.gallery = gallery
        self.source = source
        self.faiss_indexes = dict(faiss_indexes or {})
        self.index_dir = Path(source.index_dir) if source.index_dir else None
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
        raw_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        workers: int = 0,
        device: str = "cpu",
        progress: Progress | None = None,
    ) -> SearchEngine:
        """Load a checkpoint and its gallery: embedded now, or read from an export dir (``index_dir``).

        The gallery holds the model's training data (its processed dir, checked against the checkpoint's input
        contract; ``processed_dir`` overrides where it is), or with ``raw_dir`` every album of that MARD-format dir,
        prepared with the contract (cached under ``cache_dir``). An export must match the checkpoint and the data.
        Raises :class:`mte.models.inference.CheckpointError` for an unusable checkpoint or a training data dir that
        is gone or changed, and :class:`SearchError` when ``index_dir`` is not an export of this checkpoint and data.
        """
        say = progress or quiet
        say(f"loading {ckpt_path}")
        loaded = load_checkpoint(ckpt_path, processed_dir=processed_dir, device=device)
        data = None
        if raw_dir is not None:
            say(f"preparing {raw_dir} with the model's input contract")
            data = loaded.prepare_raw_dir(raw_dir, cache_dir, workers, verbose=False)  # stdout is for results
            say(f"gallery: {len(data.albums)} albums, {len(data.reviews)} reviews of {raw_dir} ({data.root})")
        elif index_dir is None or processed_dir is not None:
            data = loaded.data
        if data is not None:
            source = GallerySource(str(data.root), data.manifest.get("fingerprint"),
                                   str(data.manifest.get("raw_dir")) if raw_dir is not None else None)
        else:  # an export of the training data: the contract knows which data that was, the dir is not needed
            source = GallerySource(loaded.contract.processed_dir, loaded.contract.source.get("fingerprint"))
        if index_dir is None:
            assert data is not None
            start = time.perf_counter()
            engine = cls(loaded, Gallery.embed(loaded, data, say), source)
            engine.embed_seconds = time.perf_counter() - start
            return engine
        gallery, indexes, exported = load_export(Path(index_dir).expanduser(), loaded, source, say)
        return cls(loaded, gallery, exported, indexes)

    # -- facts ----------------------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """What a front end shows about the engine: checkpoint, model, gallery sizes, where embeddings came from."""
        return {
            "checkpoint": str(self.model.checkpoint),
            "processed_dir": self.source.processed_dir,
            "raw_dir": self.source.raw_dir,
            "gallery": self.source.description,
            "feature_set": self.feature_set,
            "n_features": len(self.model.contract.feature_names),
            "embed_dim": self.gallery.embed_dim,
            "text_backbone": self.model.text_backbone_name,
            "counts": self.gallery.counts(),
            "index_dir": str(self.index_dir) if self.index_dir else None,
            "faiss": sorted(self.faiss_indexes),
            "genres": self.genres,
        }

    @property
    def feature_set(self) -> str:
        """The descriptor feature set the model reads (seed169 | seed369 | lowlevel_all)."""
        contract = self.model.contract
        if contract.feature_set:
            return contract.feature_set
        return {169: "seed169", 369: "seed369"}.get(len(contract.feature_names), "lowlevel_all")

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
        names = self.model.contract.feature_names
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
        names = self.model.contract.feature_names
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
        """Write the gallery to disk (see :func:`mte.search.export.write_export`); returns the export dir."""
        return write_export(self, out_dir, faiss=faiss, ivf_min_size=ivf_min_size, nlist=nlist, nprobe=nprobe,
                            progress=progress)


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
