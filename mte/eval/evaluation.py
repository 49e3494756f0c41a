"""Evaluate a trained checkpoint: retrieval metrics under a named protocol → ``metrics.json`` + ``metrics.md``.

``python -m mte.evaluate ckpt_path=…`` (see :mod:`mte.evaluate`) calls :func:`evaluate`; everything it does lives
here so tests, notebooks and benchmarks run exactly the same code.

What is evaluated
-----------------
The *evaluation set* is either a split of the checkpoint's own processed dir (``split=test`` by default; with
``data.split=paper`` test and val are the same albums), or — with ``raw_dir`` — every paired album of another
MARD-format dir, prepared with the checkpoint's vocabulary, feature set, feature statistics and text fields
(:func:`mte.data.prepare.prepare` with ``reference=``; all its paired albums form its ``test`` split), so a model
can be tested on data it never saw. Review *queries* are the set's paired reviews that have text: non-empty tokens
for the bag-of-words / LSTM branches, every review for Hugging Face text (empty-token reviews would all get one
identical embedding — the text branch's bias — and say nothing about the model). Audio is embedded per track
(descriptor vector standardised with the training statistics).

Protocols (exact definitions; R@K and mAP@10 in %, ranks 1-based)
-----------------------------------------------------------------
``album`` (default; the protocol of the training-time metrics, :func:`mte.train.callbacks.split_metrics`)
    An album's audio embedding is the L2-normalised mean of its tracks' embeddings; the gallery holds one row per
    album of the set. ``t2a``: each review queries the albums; a hit at K when the review's album is among the top
    K. ``a2t``: each album queries the reviews; a hit at K when one of its reviews is among the top K; AP@10 counts
    all its reviews as relevant.
``track``
    The gallery holds one row per track. ``t2a``: each review queries the tracks; a hit when a track of the
    review's album is among the top K. ``a2t``: each track queries the reviews; a hit when a review of the
    track's album is among the top K.
``seed``
    The published protocol, literally, so numbers can be set beside the paper's: the evaluation data are
    (review, audio) *rows*, one per review, whose audio is the review's album's audio (its only track in MARD's
    one-descriptor layout; the normalised track mean otherwise) — so the gallery repeats an album's audio once
    per review. Relevance is an *album title* match (metadata ``title``; the amazon-id when the title is missing),
    as the published code matched by album name: two albums with the same title count as a hit for each other.
    ``t2a``: each review row queries the audio rows; ``a2t``: each audio row queries the review rows.

In every protocol and direction: the score is the dot product of unit vectors; **ties are pessimistic** (among
equal scores the irrelevant items come first, see :mod:`mte.eval.metrics`); ``R@K`` is the share of queries whose
first relevant item ranks ≤ K; ``mAP@10`` is the mean over queries of ``(1 / min(R, 10)) Σ_{i ≤ 10} P(i) rel(i)``
with R relevant items; ``MedR`` / ``MeanR`` are the median / mean rank of the first relevant item. Each metric
gets a 95% percentile bootstrap interval over queries (``bootstrap`` resamples, shared by all metrics of a
direction; seeded, so reruns give the same interval). ``n_queries`` counts the scored queries (``n_excluded`` those
without a relevant item — none in a normal split) and ``n_gallery`` the gallery rows. Metric names are
``{split}/{direction}/{metric}`` (+ ``_lo`` / ``_hi``), e.g. ``test/t2a/R@10``.

Same numbers as training
------------------------
Reviews and tracks are embedded in training's evaluation order and batches (1024, stored token ids), and the
album protocol runs the same ranking code with the same bootstrap seed as :class:`mte.train.callbacks.RetrievalMetrics`,
so evaluating a checkpoint on its own test split reproduces its ``metrics.json`` test numbers exactly (a test
checks it; frozen-HF text is recomputed rather than read from the training feature cache, so there equal up to
float rounding). One difference by design: training also scores reviews with no tokens left after stop-word
removal; they are not queries here (none in the synthetic data).

Speed and memory
----------------
Scores are never held as a ``Q×G`` matrix (chunks of ≤ 16 Mi scores, see :mod:`mte.eval.metrics`). Every protocol's
a2t task is its t2a task transposed, so above :data:`FUSED_MIN_SCORES` both directions come from one chunked
product (:func:`bidirectional_ranks`, exact, checked against two separate passes); at MARD scale (85k reviews ×
8.7k albums) that is ~40% less work than ranking each direction on its own.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mte.cli import UserError
from mte.eval.metrics import (
    MAX_CHUNK_ELEMENTS,
    _average_precision,
    _check_inputs,
    _relevant_positions,
    metrics_from_ranks,
    retrieval_ranks,
)

if TYPE_CHECKING:
    import polars as pl

    from mte.data.processed import ProcessedData
    from mte.models.inference import LoadedModel

PROTOCOLS = ("album", "track", "seed")
DIRECTIONS = ("t2a", "a2t")
SPLITS = ("train", "val", "test")
KS = (1, 5, 10)
MAP_K = 10
COLUMNS = ("R@1", "R@5", "R@10", "mAP@10", "MedR", "MeanR")
FUSED_MIN_SCORES = 1 << 22
"""Score matrices at least this big rank both directions from one product (:func:`bidirectional_ranks`);
smaller ones run :func:`mte.eval.metrics.retrieval_ranks` per direction — literally the training-time code path."""
MIN_COLUMN_BLOCK = 64
"""Column blocks of the score product are at least this wide: MKL then computes every element with the same
kernel as the full product (narrower ones take a GEMV-like path with another rounding). Checked, not assumed."""
DIRECTION_TITLES = {
    "album": {"t2a": "review → album", "a2t": "album → reviews"},
    "track": {"t2a": "review → tracks", "a2t": "track → reviews"},
    "seed": {"t2a": "review → audio rows", "a2t": "audio row → reviews"},
}


class EvaluationError(ValueError, UserError):
    """An evaluation request that cannot be met (unknown protocol, empty split, mismatched data); one line."""


# --------------------------------------------------------------------------------------------------------------
# the protocols, on embeddings
# --------------------------------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """Both modalities of one evaluation set, as unit-length embeddings with their albums.

    ``review_album`` / ``track_album`` are album *rows* of the processed dir's ``albums.parquet`` (any integer id
    works); ``album_title`` maps an album row to its title class (the ``seed`` protocol's relevance), indexed by
    the same ids. Rows are in item-index order, as during training, so bootstrap resamples match.
    """

    text: Tensor
    review_album: Tensor
    audio: Tensor
    track_album: Tensor
    album_title: Tensor | None = None
    review_idx: np.ndarray | None = None
    track_idx: np.ndarray | None = None


@dataclass
class RetrievalTask:
    """One direction of a protocol: queries rank the gallery; relevant = equal labels."""

    query: Tensor
    gallery: Tensor
    query_labels: Tensor
    gallery_labels: Tensor


def album_embeddings(track_emb: Tensor, track_album: Tensor) -> tuple[Tensor, Tensor]:
    """One row per album: the L2-normalised mean of its tracks' embeddings, and the sorted album ids.

    The same operations as :func:`mte.train.callbacks.album_embeddings` (kept here so evaluation does not import
    Lightning's callback module), hence bit-identical album vectors and training-time numbers; a test checks it.
    """
    albums, inverse = torch.unique(track_album, return_inverse=True)
    sums = torch.zeros(len(albums), track_emb.shape[1], dtype=track_emb.dtype, device=track_emb.device)
    sums.index_add_(0, inverse, track_emb)
    return F.normalize(sums, dim=1), albums


def protocol_tasks(data: EvalSet, protocol: str) -> dict[str, RetrievalTask]:
    """The ``t2a`` and ``a2t`` retrieval tasks of ``protocol`` (see the module docstring)."""
    text, audio = data.text.float(), data.audio.float()
    if protocol == "album":
        albums, ids = album_embeddings(audio, data.track_album)
        return {
            "t2a": RetrievalTask(text, albums, data.review_album, ids),
            "a2t": RetrievalTask(albums, text, ids, data.review_album),
        }
    if protocol == "track":
        return {
            "t2a": RetrievalTask(text, audio, data.review_album, data.track_album),
            "a2t": RetrievalTask(audio, text, data.track_album, data.review_album),
        }
    if protocol == "seed":
        if data.album_title is None:
            raise EvaluationError("the seed protocol needs album titles (EvalSet.album_title)")
        albums, ids = album_embeddings(audio, data.track_album)
        slot = torch.searchsorted(ids, data.review_album).clamp(max=len(ids) - 1)
        if not torch.equal(ids[slot], data.review_album):
            raise EvaluationError("seed protocol: some reviews' albums have no audio in the evaluation set")
        rows = albums[slot]  # one audio row per review row
        labels = data.album_title[data.review_album]
        return {"t2a": RetrievalTask(text, rows, labels, labels), "a2t": RetrievalTask(rows, text, labels, labels)}
    raise EvaluationError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def evaluate_embeddings(
    data: EvalSet,
    protocol: str = "album",
    stage: str = "test",
    bootstrap: int = 1000,
    seed: int = 0,
    chunk_size: int = 4096,
    fused: bool | None = None,
) -> dict[str, float]:
    """Every metric of both directions: ``{stage}/{direction}/{R@1,R@5,R@10,mAP@10,MedR,MeanR}`` with ``_lo`` /
    ``_hi`` bootstrap bounds (when ``bootstrap`` > 0), ``n_queries``, ``n_excluded`` and ``n_gallery``.

    One generator seeded with ``seed`` serves t2a, then a2t — as in training's test stage, so the album protocol
    on a checkpoint's own test split reproduces its ``metrics.json`` to the last digit, intervals included.
    ``fused`` picks :func:`bidirectional_ranks` (True), two :func:`~mte.eval.metrics.retrieval_ranks` passes (False),
    or by size (None, see :data:`FUSED_MIN_SCORES`); all give the same ranks (tests check it).
    """
    if len(data.text) == 0 or len(data.audio) == 0:
        raise EvaluationError(f"nothing to evaluate: {len(data.text)} review queries and {len(data.audio)} tracks")
    tasks = protocol_tasks(data, protocol)
    t2a = tasks["t2a"]
    if fused is None:
        fused = t2a.query.shape[0] * t2a.gallery.shape[0] >= FUSED_MIN_SCORES
    ranks = bidirectional_ranks(t2a.query, t2a.gallery, t2a.query_labels, t2a.gallery_labels, MAP_K, chunk_size) \
        if fused else None
    if ranks is None:  # not asked for, or the product's rounding could not be reproduced: one pass per direction
        ranks = {d: retrieval_ranks(t.query, t.gallery, t.query_labels, t.gallery_labels, MAP_K, chunk_size)
                 for d, t in tasks.items()}
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for direction, task in tasks.items():
        prefix = f"{stage}/{direction}"
        out.update(metrics_from_ranks(*ranks[direction], KS, MAP_K, prefix, bootstrap, generator))
        out[f"{prefix}/n_gallery"] = float(len(task.gallery))
    return out


# --------------------------------------------------------------------------------------------------------------
# both directions from one score product
# --------------------------------------------------------------------------------------------------------------


def _padded_columns(columns: Tensor, n_gallery: int) -> Tensor:
    """Sorted unique ``columns``, topped up with the first other columns to at least :data:`MIN_COLUMN_BLOCK`."""
    columns = torch.unique(columns)
    if len(columns) < MIN_COLUMN_BLOCK:
        extra = torch.arange(min(n_gallery, MIN_COLUMN_BLOCK + len(columns)), device=columns.device)
        columns = torch.unique(torch.cat([columns, extra]))
    return columns


@torch.no_grad()
def bidirectional_ranks(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    map_k: int = MAP_K,
    chunk_size: int = 4096,
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
) -> dict[str, tuple[Tensor, Tensor]] | None:
    """``{"t2a": (rank, ap), "a2t": (rank, ap)}`` — query→gallery and gallery→query — from ONE pass of products.

    Why: every protocol's a2t task is its t2a task transposed (same pairs, same relevance), and the product
    ``Q·Gᵀ`` is most of the cost of a direction; computing it once saves ~40% of the ranking work at MARD scale
    (12.4 → 7.6 CPU-s for 85k × 8.7k, random vectors).

    How, keeping :func:`mte.eval.metrics.retrieval_ranks`' exactness (every comparison on values of one product):

    1. Pre-pass: per query chunk, the relevant scores alone, from a product with the same query rows and a
       column block (≥ :data:`MIN_COLUMN_BLOCK` wide) of the relevant gallery items: a few % of the work. Each
       gallery item's (a2t query's) best relevant score follows.
    2. Main pass, chunked exactly as ``retrieval_ranks`` (so t2a is bit-identical to it, hence to training):
       t2a as there; the relevant scores gathered from the full product are compared with the pre-pass values —
       any difference and this function returns None (the caller then runs one pass per direction). a2t: each
       gallery column counts the irrelevant scores ≥ its best relevant score (the relevant entries are already
       −inf for t2a), so ``rank = 1 + count`` — ties pessimistic, as everywhere.
    3. AP@k of a2t needs the k best irrelevant scores only for items with rank < k and ≥ 2 relevant queries
       (see ``mte.eval.metrics._average_precision``): ``retrieval_ranks`` runs a2t for those items only; its ranks
       must equal the main pass's, else None. (So the saving shrinks as a2t R@10 grows: at R@10 = 55% the fused
       path still costs ~0.8 of two passes.)

    Returns None as well when a float32 count could be inexact (≥ 2²⁴ items) or ``map_k`` < 1.
    """
    _check_inputs(query, gallery, query_labels, gallery_labels)
    n_query, n_gallery = query.shape[0], gallery.shape[0]
    if n_query == 0 or max(n_query, n_gallery) >= 1 << 24 or map_k < 1 or chunk_size < 1:
        return None
    device = query.device
    query_labels, gallery_labels = query_labels.to(device), gallery_labels.to(device)
    order, start, count = _relevant_positions(query_labels, gallery_labels)
    dtype = torch.promote_types(torch.promote_types(query.dtype, gallery.dtype), torch.float32)
    query, gallery = query.to(dtype), gallery.to(dtype)
    gallery_t = gallery.T
    rows = max(1, min(chunk_size, n_query, max_chunk_elements // n_gallery))  # == retrieval_ranks' chunking
    chunks = [(lo, min(lo + rows, n_query)) for lo in range(0, n_query, rows)]

    def layout(lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor]:
        """(n_rel, is_rel [C, width], rel_index [C, width]) of a chunk, as retrieval_ranks lays them out."""
        n_rel = count[lo:hi]
        offset = torch.arange(int(n_rel.max()), device=device)
        is_rel = offset < n_rel[:, None]
        return n_rel, is_rel, order[start[lo:hi, None] + torch.where(is_rel, offset, 0)]

    # 1. pre-pass: relevant scores as the full product will compute them
    expected: list[Tensor | None] = []
    pair_gallery, pair_score = [], []
    for lo, hi in chunks:
        n_rel, is_rel, rel_index = layout(lo, hi)
        if not is_rel.any():
            expected.append(None)
            continue
        columns = _padded_columns(rel_index[is_rel], n_gallery)
        block = torch.mm(query[lo:hi], gallery[columns].T)
        values = block.gather(1, torch.searchsorted(columns, rel_index))[is_rel]
        expected.append(values)
        pair_gallery.append(rel_index[is_rel])
        pair_score.append(values)
    if not pair_gallery:
        return None
    pair_g, pair_s = torch.cat(pair_gallery), torch.cat(pair_score)
    col_n_rel = torch.bincount(pair_g, minlength=n_gallery)
    best_col = torch.full((n_gallery,), -math.inf, dtype=dtype, device=device)
    best_col.scatter_reduce_(0, pair_g, pair_s, reduce="amax")
    threshold = torch.where(col_n_rel > 0, best_col, math.inf)  # a column without relevant queries counts nothing

    # 2. main pass
    rank_t2a = torch.full((n_query,), -1, dtype=torch.long, device=device)
    ap_t2a = torch.full((n_query,), math.nan, dtype=torch.float64, device=device)
    above_col = torch.zeros(n_gallery, dtype=torch.long, device=device)
    scores_buffer = torch.empty(rows, n_gallery, dtype=dtype, device=device)
    flags_buffer = torch.empty_like(scores_buffer)
    for (lo, hi), values in zip(chunks, expected, strict=True):
        scores = torch.mm(query[lo:hi], gallery_t, out=scores_buffer[: hi - lo])
        flags = flags_buffer[: hi - lo]
        if values is not None:
            n_rel, is_rel, rel_index = layout(lo, hi)
            rel_scores = scores.gather(1, rel_index)
            if not torch.equal(rel_scores[is_rel], values):
                return None
            rel_scores = rel_scores.masked_fill(~is_rel, -math.inf)
            best = rel_scores.max(dim=1, keepdim=True).values
            # a query without relevant items has one padding slot (the gallery's first item by label): its score
            # is irrelevant to that gallery item's a2t ranking and must survive the −inf scatter
            lonely = (n_rel == 0).nonzero().squeeze(1)
            kept = scores[lonely, rel_index[lonely, 0]]
            scores.scatter_(1, rel_index, -math.inf)
            scores[lonely, rel_index[lonely, 0]] = kept
            chunk_rank = 1 + torch.ge(scores, best, out=flags).sum(dim=1).long()
            has_rel = n_rel > 0
            rank_t2a[lo:hi] = torch.where(has_rel, chunk_rank, -1)
            ap = _average_precision(scores, rel_scores, n_rel, chunk_rank, map_k)
            ap_t2a[lo:hi] = torch.where(has_rel, ap, math.nan)
        above_col += torch.ge(scores, threshold, out=flags).sum(dim=0).long()
    rank_a2t = torch.where(col_n_rel > 0, 1 + above_col, -1)

    # 3. AP@k of a2t
    ap_a2t = _column_average_precision(query, gallery, query_labels, gallery_labels, col_n_rel, rank_a2t, map_k,
                                       chunk_size)
    if ap_a2t is None:
        return None
    return {"t2a": (rank_t2a, ap_t2a), "a2t": (rank_a2t, ap_a2t)}


def _column_average_precision(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    n_rel: Tensor,
    rank: Tensor,
    k: int,
    chunk_size: int,
) -> Tensor | None:
    """AP@k of every gallery item as a query, given its rank; None when a re-derived rank disagrees.

    As in ``mte.eval.metrics._average_precision``: the first relevant item gives ``1/rank`` when ``rank ≤ k``; only
    items with ``rank < k`` and ≥ 2 relevant queries can score deeper, and for those (plus padding to a full
    column block) :func:`~mte.eval.metrics.retrieval_ranks` runs the a2t direction itself — the exact two-pass
    computation, on a subset. Its ranks must equal the fused pass's, else None.
    """
    rank_f = rank.to(torch.float64)
    total = torch.where((rank >= 1) & (rank <= k), 1.0 / rank_f, 0.0)
    ap = torch.where(n_rel > 0, total / n_rel.clamp(min=1, max=k).to(torch.float64), math.nan)
    deeper = ((n_rel >= 2) & (rank >= 1) & (rank < k)).nonzero().squeeze(1)
    if deeper.numel():
        columns = _padded_columns(deeper, gallery.shape[0])
        sub_rank, sub_ap = retrieval_ranks(gallery[columns], query, gallery_labels[columns], query_labels, map_k=k,
                                           chunk_size=chunk_size)
        where = torch.searchsorted(columns, deeper)
        if not torch.equal(sub_rank[where], rank[deeper]):
            return None
        ap[deeper] = sub_ap[where]
    return ap


# --------------------------------------------------------------------------------------------------------------
# from a checkpoint and a processed dir to an EvalSet
# --------------------------------------------------------------------------------------------------------------


def title_labels(albums: pl.DataFrame) -> Tensor:
    """Per album row, an integer class of its title (the ``seed`` protocol's relevance).

    Titles are matched literally (no case folding: the published code compared the strings as they were); an
    album without a title (null or blank) is its own class, keyed by its amazon-id.
    """
    titles = albums.get_column("title").to_list()
    ids = albums.get_column("amazon_id").to_list()
    keys = [t if t is not None and t.strip() else f"\0{aid}" for t, aid in zip(titles, ids, strict=True)]
    _, inverse = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    return torch.from_numpy(inverse.astype(np.int64).reshape(-1))


def album_rows(albums: pl.DataFrame, amazon_ids: pl.Series) -> np.ndarray:
    """Row numbers in ``albums`` (unique ``amazon_id``) of each id; the label every protocol groups by."""
    import polars as pl

    table = albums.select("amazon_id").with_row_index("row")
    joined = amazon_ids.rename("amazon_id").to_frame().join(table, on="amazon_id", how="left", maintain_order="left")
    rows = joined.get_column("row")
    if rows.null_count():
        raise EvaluationError("some reviews or tracks name an album missing from albums.parquet")
    return np.array(rows.cast(pl.Int64).to_numpy(), dtype=np.int64)  # a writable copy for torch.from_numpy


def text_query_mask(tokens: pl.Series | None, n: int) -> np.ndarray:
    """Which reviews query: those with non-empty tokens (bow/lstm), every review when ``tokens`` is None (HF)."""
    if tokens is None:
        return np.ones(n, dtype=bool)
    return tokens.list.len().fill_null(0).to_numpy() > 0


def embed_split(model: LoadedModel, data: ProcessedData, split: str, batch_size: int = 1024) -> EvalSet:
    """Embed the paired reviews (with text) and tracks of ``split`` of ``data`` with ``model``.

    ``data`` is the checkpoint's own processed dir or one prepared with its input contract (both verified against
    the contract when loaded); reviews are embedded as training-time evaluation embeds them
    (:meth:`~mte.models.inference.LoadedModel.embed_reviews`).
    """
    if split not in SPLITS:
        raise EvaluationError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    review_idx, track_idx = data.split_review_indices(split), data.split_track_indices(split)
    if len(review_idx) == 0 or len(track_idx) == 0:
        raise EvaluationError(f"{data.root}: the {split!r} split has {len(review_idx)} paired reviews and "
                              f"{len(track_idx)} tracks; nothing to evaluate")
    reviews = data.reviews[review_idx]
    model.batch_size = batch_size
    text = model.embed_reviews(reviews)
    keep = text_query_mask(reviews.get_column("tokens") if model.reads_tokens else None, len(reviews))
    audio = model.embed_raw_features(data.raw_features()[track_idx])
    review_album = album_rows(data.albums, reviews.get_column("amazon_id"))
    track_album = album_rows(data.albums, data.tracks.get_column("amazon_id").gather(track_idx))
    keep_t = torch.from_numpy(keep)
    return EvalSet(
        text=text[keep_t],
        review_album=torch.from_numpy(review_album)[keep_t],
        audio=audio,
        track_album=torch.from_numpy(track_album),
        album_title=title_labels(data.albums),
        review_idx=review_idx[keep],
        track_idx=track_idx,
    )



# --------------------------------------------------------------------------------------------------------------
# output: where, the markdown table, atomic writes
# --------------------------------------------------------------------------------------------------------------


def data_tag(raw_dir: Path | str) -> str:
    """A short, file-name-safe tag for another raw dir: its name plus a hash of its absolute path."""
    path = Path(raw_dir).expanduser().absolute()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name).strip("._") or "data"
    return f"{name[:40]}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def default_out_dir(ckpt_path: Path | str, split: str, protocol: str, tag: str | None = None) -> Path:
    """``<run>/eval/<split>-<protocol>[-<tag>]`` for ``<run>/checkpoints/x.ckpt`` (else beside the checkpoint), so
    evaluations of one run under different splits, protocols or data never overwrite each other."""
    ckpt = Path(ckpt_path).expanduser().absolute()
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "eval" / "-".join(p for p in (split, protocol, tag) if p)


def _cell(metrics: Mapping[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "—"
    low, high = metrics.get(f"{key}_lo"), metrics.get(f"{key}_hi")
    return f"{value:.2f}" if low is None or high is None else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def markdown_table(metrics: Mapping[str, float], stage: str, protocol: str, header: Mapping[str, Any]) -> str:
    """The results as a markdown document: what was evaluated, then one row per direction."""
    lines = [f"# Evaluation — {protocol} protocol, {stage}", ""]
    lines += [f"- {name}: {value}" for name, value in header.items() if value is not None]
    lines += ["- R@K and mAP@10 in %; MedR/MeanR in ranks; [95% bootstrap interval over queries]; ties pessimistic",
              ""]
    lines.append("| direction | queries | gallery | " + " | ".join(COLUMNS) + " |")
    lines.append("|---|---:|---:|" + "---:|" * len(COLUMNS))
    for direction in DIRECTIONS:
        prefix = f"{stage}/{direction}"
        if f"{prefix}/n_queries" not in metrics:
            continue
        queries = f"{int(metrics[f'{prefix}/n_queries']):,}"
        excluded = int(metrics.get(f"{prefix}/n_excluded", 0))
        if excluded:
            queries += f" (+{excluded:,} without a relevant item)"
        cells = [_cell(metrics, f"{prefix}/{c}") for c in COLUMNS]
        title = f"{direction} ({DIRECTION_TITLES.get(protocol, {}).get(direction, direction)})"
        lines.append(f"| {title} | {queries} | {int(metrics[f'{prefix}/n_gallery']):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same dir and rename: readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------------
# the whole thing
# --------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Metrics (flat, named ``{stage}/{direction}/{metric}``), the JSON payload, where it went, the printed table."""

    metrics: dict[str, float]
    payload: dict[str, Any]
    out_dir: Path
    table: str
    timings: dict[str, float] = field(default_factory=dict)


def evaluate(
    ckpt_path: str | Path,
    *,
    split: str = "test",
    protocol: str = "album",
    bootstrap: int = 1000,
    raw_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    processed_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    device: str = "cpu",
    batch_size: int = 1024,
    seed: int = 0,
    write: bool = True,
) -> EvaluationResult:
    """Evaluate ``ckpt_path`` under ``protocol`` and write ``metrics.json`` / ``metrics.md`` (see module docstring).

    ``raw_dir``: evaluate on every paired album of that MARD dir instead of the checkpoint's own split (prepared,
    and cached under ``cache_dir``, with the checkpoint's vocabulary and statistics; ``split`` must be ``test``).
    ``processed_dir`` overrides the processed dir recorded in the checkpoint (e.g. after moving the cache).
    ``out_dir`` defaults to :func:`default_out_dir`. Raises :class:`~mte.cli.UserError` subclasses (one line) for
    anything the user can fix.
    """
    from mte.models.inference import load_checkpoint

    if protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if split not in SPLITS:
        raise EvaluationError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if bootstrap < 0 or batch_size < 1:
        raise EvaluationError(f"need bootstrap >= 0 and batch_size >= 1, got {bootstrap} and {batch_size}")
    if raw_dir is not None and split != "test":
        raise EvaluationError(f"data.raw_dir={raw_dir}: every paired album of another dir is in its test split; "
                              f"use split=test (got {split!r})")
    t0, c0 = time.perf_counter(), time.process_time()
    model = load_checkpoint(ckpt_path, processed_dir=processed_dir, device=device)
    if raw_dir is not None:  # prepared with the checkpoint's contract: the checkpoint file alone is enough
        data, tag = model.prepare_raw_dir(raw_dir, cache_dir, workers), data_tag(raw_dir)
    else:  # the processed dir it was trained on, verified against its contract
        data, tag = model.data, None
    t1, c1 = time.perf_counter(), time.process_time()
    eval_set = embed_split(model, data, split, batch_size)
    t2, c2 = time.perf_counter(), time.process_time()
    metrics = evaluate_embeddings(eval_set, protocol, split, bootstrap, seed)
    t3, c3 = time.perf_counter(), time.process_time()
    # wall and CPU seconds per stage (CPU time, summed over threads, is the figure that survives a busy machine)
    timings = {"load_s": t1 - t0, "embed_s": t2 - t1, "metrics_s": t3 - t2,
               "load_cpu_s": c1 - c0, "embed_cpu_s": c2 - c1, "metrics_cpu_s": c3 - c2}
    target = Path(out_dir).expanduser() if out_dir else default_out_dir(model.checkpoint, split, protocol, tag)
    header = {
        "checkpoint": f"`{model.checkpoint}`",
        "data": f"`{data.root}`" + (f" (all paired albums of `{raw_dir}`)" if raw_dir is not None else ""),
        "bootstrap": f"{bootstrap} resamples, seed {seed}" if bootstrap else "off",
    }
    table = markdown_table(metrics, split, protocol, header)
    payload = {
        "protocol": protocol,
        "split": split,
        "checkpoint": str(model.checkpoint),
        "processed_dir": str(data.root),
        "raw_dir": str(raw_dir) if raw_dir is not None else None,
        "reference": data.manifest.get("reference"),
        "bootstrap": bootstrap,
        "seed": seed,
        "text_queries": "non-empty tokens" if model.reads_tokens else "all reviews",
        "metrics": metrics,
        "elapsed_s": {k: round(v, 3) for k, v in timings.items()},
    }
    if write:
        from mte.train.run import write_json_atomic

        target.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target / "metrics.json", payload)
        write_text_atomic(target / "metrics.md", table)
    return EvaluationResult(metrics, payload, target, table, timings)


def evaluate_from_config(cfg: Any) -> EvaluationResult:
    """The Hydra entry point's body: ``conf/evaluate.yaml`` keys → :func:`evaluate`, then print the table."""
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise EvaluationError("ckpt_path is not set: python -m mte.evaluate ckpt_path=<run>/checkpoints/best.ckpt")
    data = cfg.get("data") or {}
    result = evaluate(
        str(cfg.ckpt_path),
        split=str(cfg.get("split", "test")),
        protocol=str(cfg.get("protocol", "album")),
        bootstrap=int(cfg.get("bootstrap", 1000)),
        raw_dir=data.get("raw_dir") or None,
        out_dir=cfg.get("out_dir") or None,
        processed_dir=cfg.get("processed_dir") or None,
        cache_dir=data.get("cache_dir") or None,
        workers=int(data.get("workers", 0) or 0),
        device=str(cfg.get("device", "cpu")),
        batch_size=int(cfg.get("batch_size", 1024)),
        seed=int(cfg.get("seed", 0)),
    )
    print(result.table, flush=True)
    print(f"wrote {result.out_dir / 'metrics.json'} and metrics.md", flush=True)
    return result
