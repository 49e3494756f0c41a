"""The evaluation core on embeddings: which reviews query, album pooling, the protocols, and their metrics.

Everything that scores a model ends in :func:`evaluate_embeddings` — the training callback
(:class:`mte.train.callbacks.RetrievalMetrics`), ``python -m mte.evaluate`` (:mod:`mte.eval.evaluation`) and the
baselines (:mod:`mte.train.baselines`) — so training-time metrics equal ``mte.evaluate`` on the same embeddings by
construction, not by a copy kept in step.

Queries
-------
A review is a query when the model has input for it (:func:`query_mask`): at least one vocabulary id left after
stop-word removal for the bag-of-words / LSTM branches, a non-blank text (the configured text fields joined) for
transformer branches. An empty input would get one shared embedding (the text branch's bias) that says nothing
about the model, so such reviews are left out everywhere: training's metrics, ``mte.evaluate``, the baselines and
search.

Protocols (exact definitions; R@K and mAP@10 in %, ranks 1-based)
-----------------------------------------------------------------
``album`` (default; the protocol of the training-time metrics)
    An album's audio embedding is the L2-normalised mean of its tracks' embeddings (:func:`album_embeddings`); the
    gallery holds one row per album of the set. ``t2a``: each review queries the albums; a hit at K when the
    review's album is among the top K. ``a2t``: each album queries the reviews; a hit at K when one of its reviews
    is among the top K; AP@10 counts all its reviews as relevant.
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
equal scores the irrelevant items come first, see :mod:`mte.eval.ranking`); ``R@K`` is the share of queries whose
first relevant item ranks ≤ K; ``mAP@10`` is the mean over queries of ``(1 / min(R, 10)) Σ_{i ≤ 10} P(i) rel(i)``
with R relevant items; ``MedR`` / ``MeanR`` are the median / mean rank of the first relevant item. Each metric gets
a 95% percentile **cluster** bootstrap interval: every query belongs to its album, and a resample draws albums
(all their queries together), since an album's reviews are not independent (:mod:`mte.eval.bootstrap`). Under the
album protocol a2t has one query per album, so there it is the ordinary bootstrap. ``bootstrap`` resamples, shared
by all metrics of a direction, seeded, so reruns give the same interval. ``n_queries`` counts the scored queries
(``n_excluded`` those without a relevant item — none in a normal split) and ``n_gallery`` the gallery rows. Metric
names are ``{stage}/{direction}/{metric}`` (+ ``_lo`` / ``_hi``), e.g. ``test/t2a/R@10``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mte.cli import UserError
from mte.eval.metrics import metrics_from_ranks
from mte.eval.ranking import retrieval_ranks

PROTOCOLS = ("album", "track", "seed")
DIRECTIONS = ("t2a", "a2t")
KS = (1, 5, 10)
MAP_K = 10
DIRECTION_TITLES = {
    "album": {"t2a": "review → album", "a2t": "album → reviews"},
    "track": {"t2a": "review → tracks", "a2t": "track → reviews"},
    "seed": {"t2a": "review → audio rows", "a2t": "audio row → reviews"},
}


class EvaluationError(ValueError, UserError):
    """An evaluation request that cannot be met (unknown protocol, empty split, mismatched data); one line."""


def query_mask(*, token_lengths: Sequence[int] | np.ndarray | None = None,
               texts: Sequence[str | None] | None = None) -> np.ndarray:
    """Which reviews are queries — the one rule (see the module docstring), as a bool array.

    Pass ``token_lengths`` (vocabulary ids per review) for models that read tokens (bag-of-words, LSTM), or
    ``texts`` (the strings a transformer reads) for the others: a review queries when its input is non-empty
    (≥ 1 token) or non-blank. Exactly one of the two.
    """
    if (token_lengths is None) == (texts is None):
        raise ValueError("query_mask: pass exactly one of token_lengths and texts")
    if token_lengths is not None:
        return np.asarray(token_lengths, dtype=np.int64).reshape(-1) > 0
    return np.fromiter((bool(t and t.strip()) for t in texts), dtype=bool, count=len(texts))  # type: ignore[arg-type]


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
    """One direction of a protocol: queries rank the gallery; relevant = equal labels; ``query_cluster`` is each
    query's album, the unit the bootstrap resamples."""

    query: Tensor
    gallery: Tensor
    query_labels: Tensor
    gallery_labels: Tensor
    query_cluster: Tensor


def album_embeddings(track_emb: Tensor, track_album: Tensor) -> tuple[Tensor, Tensor]:
    """One row per album: the L2-normalised mean of its tracks' embeddings, and the sorted album ids.

    The one definition of an album's audio embedding: the album protocol, search's album gallery and the report's
    embedding map all pool through here.
    """
    albums, inverse = torch.unique(track_album, return_inverse=True)
    sums = torch.zeros(len(albums), track_emb.shape[1], dtype=track_emb.dtype, device=track_emb.device)
    sums.index_add_(0, inverse, track_emb)
    return F.normalize(sums, dim=1), albums


def protocol_tasks(data: EvalSet, protocol: str) -> dict[str, RetrievalTask]:
    """The ``t2a`` and ``a2t`` retrieval tasks of ``protocol`` (see the module docstring)."""
    text, audio = data.text.float(), data.audio.float()
    review_album, track_album = data.review_album, data.track_album
    if protocol == "album":
        albums, ids = album_embeddings(audio, track_album)
        return {
            "t2a": RetrievalTask(text, albums, review_album, ids, review_album),
            "a2t": RetrievalTask(albums, text, ids, review_album, ids),
        }
    if protocol == "track":
        return {
            "t2a": RetrievalTask(text, audio, review_album, track_album, review_album),
            "a2t": RetrievalTask(audio, text, track_album, review_album, track_album),
        }
    if protocol == "seed":
        if data.album_title is None:
            raise EvaluationError("the seed protocol needs album titles (EvalSet.album_title)")
        albums, ids = album_embeddings(audio, track_album)
        slot = torch.searchsorted(ids, review_album).clamp(max=len(ids) - 1)
        if not torch.equal(ids[slot], review_album):
            raise EvaluationError("seed protocol: some reviews' albums have no audio in the evaluation set")
        rows = albums[slot]  # one audio row per review row
        labels = data.album_title[review_album]
        return {
            "t2a": RetrievalTask(text, rows, labels, labels, review_album),
            "a2t": RetrievalTask(rows, text, labels, labels, review_album),
        }
    raise EvaluationError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def evaluate_embeddings(
    data: EvalSet,
    protocol: str = "album",
    stage: str = "test",
    bootstrap: int = 1000,
    seed: int = 0,
    chunk_size: int = 4096,
    ks: Sequence[int] = KS,
    map_k: int = MAP_K,
) -> dict[str, float]:
    """Every metric of both directions: ``{stage}/{direction}/{R@k…, mAP@{map_k}, MedR, MeanR}`` with ``_lo`` /
    ``_hi`` bootstrap bounds (when ``bootstrap`` > 0), ``n_queries``, ``n_excluded`` and ``n_gallery``.

    One generator seeded with ``seed`` serves t2a, then a2t; each direction is one pass of the ranking kernel.
    The training callback and ``mte.evaluate`` both call this, so their numbers agree whenever their embeddings do.
    """
    if len(data.text) == 0 or len(data.audio) == 0:
        raise EvaluationError(f"nothing to evaluate: {len(data.text)} review queries and {len(data.audio)} tracks")
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for direction, task in protocol_tasks(data, protocol).items():
        prefix = f"{stage}/{direction}"
        rank, ap = retrieval_ranks(task.query, task.gallery, task.query_labels, task.gallery_labels, map_k,
                                   chunk_size)
        out.update(metrics_from_ranks(rank, ap if map_k > 0 else None, ks, map_k, prefix, bootstrap, generator,
                                      task.query_cluster))
        out[f"{prefix}/n_gallery"] = float(len(task.gallery))
    return out
