"""What every margin-style loss shares: the distance, the index samplers and the masked hinge mean.

Every loss takes the batch as the model produces it: ``text[i]`` and ``audio[i]`` (both L2-normalised, ``[B, E]``)
are a true (review, track) pair of album ``album[i]``; rows may share an album, so *an item of the anchor's own
album is never a negative* (unless a published-code option asks for exactly that).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Distance = Literal["euclidean", "cosine"]
Mining = Literal["random", "hardest"]
NegativeSampling = Literal["other_album", "permutation"]
Reduction = Literal["mean", "sum_of_block_means"]

TERMS = ("t2a", "a2t", "tt", "aa")
"""Names of the four margin terms, in the order of the weights (λ1, λ2, λ3, λ4)."""


# --------------------------------------------------------------------------------------------------------------
# distances and index sampling
# --------------------------------------------------------------------------------------------------------------


def pairwise_distance(a: Tensor, b: Tensor, kind: Distance = "euclidean", eps: float | None = None) -> Tensor:
    """Distance matrix ``[len(a), len(b)]`` between two sets of embeddings.

    ``euclidean`` is ``sqrt(|a|² + |b|² − 2·a·b)`` (= ``sqrt(2 − 2·a·b)`` for unit vectors), built from one matrix
    product instead of a ``[Na, Nb, E]`` difference tensor. A squared distance below ``eps`` counts as 0, with a
    zero gradient, so the gradient stays finite where two embeddings coincide (``sqrt`` has an infinite slope
    at 0: a plain ``sqrt(((a - b) ** 2).sum(-1))`` gives NaN there). The default ``eps`` is the dtype's machine
    epsilon, the rounding noise of ``2 − 2·a·b`` itself (so float32 resolves distances down to ~3e-4, far below
    any margin in use). ``cosine`` is ``1 − a·b`` and assumes
    L2-normalised inputs, which both branches produce.
    """
    sim = a @ b.T
    if kind == "cosine":
        return 1.0 - sim
    if kind == "euclidean":
        eps = torch.finfo(sim.dtype).eps if eps is None else eps
        squared = a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1) - 2.0 * sim
        # the inner clamp keeps sqrt's gradient finite, the where() makes coinciding points exactly 0 apart
        return torch.where(squared > eps, squared.clamp(min=eps).sqrt(), 0.0)
    raise ValueError(f"unknown distance {kind!r}; expected 'euclidean' or 'cosine'")


def _other_album(album: Tensor) -> Tensor:
    """``[B, B]`` mask: True where row j belongs to another album than row i (the admissible negatives)."""
    return album[:, None] != album[None, :]


def sample_negatives(album: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """For each row i, ``k`` indices of rows of *other* albums, drawn uniformly — ``LongTensor[B, k]``.

    Without replacement while row i has at least ``k`` admissible rows; when it has fewer (``n < k``) every
    admissible row is used once and the remaining ``k − n`` slots are drawn with replacement, so each anchor
    still contributes ``k`` terms. A row with no admissible negative at all (the whole batch is one album) gets
    −1 in every slot; the loss masks those slots out.

    Vectorised: random keys, admissible rows sorted first (a uniform random permutation of them per row). Only
    the first ``min(k, B)`` of that order are ever used (a slot beyond the admissible rows redraws among them), so
    a partial sort (``topk``) gives them: the same draw as a full ``argsort``, at a quarter of its cost per step
    (four such draws per step with the intra-modal terms). Rows whose keys tie may come in another order.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batch, device = album.shape[0], album.device
    admissible = _other_album(album)
    n_admissible = admissible.sum(1, keepdim=True)  # [B, 1]
    keys = torch.rand(batch, batch, generator=generator, device=device).masked_fill(~admissible, 2.0)
    # admissible columns first, in random order; positions below are always < min(k, B)
    shuffled = keys.topk(min(k, batch), dim=1, largest=False, sorted=True).indices
    slot = torch.arange(k, device=device).expand(batch, k)
    extra = torch.rand(batch, k, generator=generator, device=device) * n_admissible
    extra = extra.long().clamp(max=(n_admissible - 1).clamp(min=0))  # rand·n can round up to n in float32
    position = torch.where(slot < n_admissible, slot, extra)
    chosen = shuffled.gather(1, position)
    return chosen.masked_fill(n_admissible == 0, -1)


def hardest_negatives(dist: Tensor, album: Tensor, k: int) -> Tensor:
    """For each row i, the ``k`` columns of other albums closest to row i — ``LongTensor[B, k]``, closest first.

    ``dist[i, j]`` is the distance from anchor i to candidate j (same row order as ``album``). When fewer than
    ``k`` candidates exist they are reused cyclically (closest first), so each anchor still contributes ``k``
    terms, as in :func:`sample_negatives`; no candidate at all gives −1. Indices only: no gradient flows here.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batch = album.shape[0]
    admissible = _other_album(album)
    n_admissible = admissible.sum(1, keepdim=True)
    masked = dist.detach().masked_fill(~admissible, math.inf)
    order = masked.topk(min(k, batch), dim=1, largest=False).indices
    slot = torch.arange(k, device=album.device).expand(batch, k)
    position = slot % n_admissible.clamp(min=1)  # < min(k, B) because n_admissible ≤ B − 1
    return order.gather(1, position).masked_fill(n_admissible == 0, -1)


def sample_positives(album: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """For each row i, a uniformly drawn other row j ≠ i of the *same* album (−1 if none) — ``LongTensor[B]``.

    Used by the intra-modal terms: under neighbourhood sampling row j holds another review and another track of
    album[i], so ``text[j]`` is the text positive of ``text[i]`` and ``audio[j]`` the audio positive of
    ``audio[i]``.
    """
    batch, device = album.shape[0], album.device
    same = ~_other_album(album)
    same.fill_diagonal_(False)
    keys = torch.rand(batch, batch, generator=generator, device=device).masked_fill(~same, -1.0)
    return keys.argmax(dim=1).masked_fill(~same.any(dim=1), -1)


def hinge(dist: Tensor, positive: Tensor, negatives: Tensor, margin: float, anchor_ok: Tensor | None) -> Tensor:
    """Mean of ``max(0, margin + positive[i] − dist[i, n])`` over the valid slots (n ≥ 0, anchor_ok[i])."""
    if negatives.dim() != 2 or negatives.shape[0] != dist.shape[0]:
        raise ValueError(f"negatives must be [B, K] with B={dist.shape[0]}, got {tuple(negatives.shape)}")
    valid = negatives >= 0
    if anchor_ok is not None:
        valid = valid & anchor_ok[:, None]
    negative = dist.gather(1, negatives.clamp(min=0))
    terms = (margin + positive[:, None] - negative).clamp(min=0)
    # where() (not a product with the mask) so a masked slot contributes exactly 0 to value and gradient
    return torch.where(valid, terms, 0.0).sum() / valid.sum().clamp(min=1)


def intra_positive(dist: Tensor, positives: Tensor) -> tuple[Tensor, Tensor]:
    """Distances ``dist[i, positives[i]]`` and the mask of rows that have a positive."""
    ok = positives >= 0
    return dist.gather(1, positives.clamp(min=0)[:, None]).squeeze(1), ok
