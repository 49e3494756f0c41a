"""Ranking losses for the joint text–audio space.

Every loss here takes the batch as the model produces it: ``text[i]`` and ``audio[i]`` (both L2-normalised,
shape ``[B, E]``) are a true (review, track) pair of album ``album[i]``. Rows may share an album (two reviews
of one album in a batch, or neighbourhood sampling, which puts them there on purpose), so *an item of the
anchor's own album is never used as a negative*.

The margin ranking loss is the published model's objective, computed differently: the published code
duplicated the raw inputs of every (anchor, positive, negative) triple and re-embedded each copy (≈3·K
forward passes per true pair); here each item is embedded once and the K negatives are *gathered by index*
from the B×B distance matrix. Both give the same value and the same gradients — ``tests/test_losses.py``
checks this against a literal re-implementation — but this costs one forward pass.

Reduction (both directions and both intra-modal terms)::

    term_d = mean over valid (anchor i, negative n) of max(0, margin + d(a_i, p_i) - d(a_i, n))
    loss   = λ1·term_t2a + λ2·term_a2t + λ3·term_tt + λ4·term_aa

A (anchor, negative) slot is *valid* unless its index is −1 (no negative of another album exists, or, for the
intra-modal terms, no positive of the same album exists). A term with no valid slot is 0, not NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

    Vectorised: random keys, admissible rows sorted first (a uniform random permutation of them per row).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batch, device = album.shape[0], album.device
    admissible = _other_album(album)
    n_admissible = admissible.sum(1, keepdim=True)  # [B, 1]
    keys = torch.rand(batch, batch, generator=generator, device=device).masked_fill(~admissible, 2.0)
    shuffled = keys.argsort(dim=1)  # admissible columns first, in random order
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


# --------------------------------------------------------------------------------------------------------------
# the margin ranking loss
# --------------------------------------------------------------------------------------------------------------


def _hinge(dist: Tensor, positive: Tensor, negatives: Tensor, margin: float, anchor_ok: Tensor | None) -> Tensor:
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


def _intra_positive(dist: Tensor, positives: Tensor) -> tuple[Tensor, Tensor]:
    """Distances ``dist[i, positives[i]]`` and the mask of rows that have a positive."""
    ok = positives >= 0
    return dist.gather(1, positives.clamp(min=0)[:, None]).squeeze(1), ok


def margin_ranking_loss(
    text: Tensor,
    audio: Tensor,
    album: Tensor,
    *,
    margin: float = 0.05,
    negatives_t2a: Tensor | None = None,
    negatives_a2t: Tensor | None = None,
    positives: Tensor | None = None,
    negatives_tt: Tensor | None = None,
    negatives_aa: Tensor | None = None,
    weights: Sequence[float] = (1.0, 1.0, 0.0, 0.0),
    distance: Distance = "euclidean",
) -> dict[str, Tensor]:
    """The published bidirectional + intra-modal margin ranking loss, on embeddings computed once.

    Args:
        text, audio: ``[B, E]`` L2-normalised embeddings; row i is a true pair of album ``album[i]``.
        album: ``LongTensor[B]`` album index of each row.
        margin: hinge margin (published: 0.05).
        negatives_t2a: ``[B, K]`` rows whose *audio* is a negative for text anchor i (λ1).
        negatives_a2t: ``[B, K]`` rows whose *text* is a negative for audio anchor i (λ2).
        positives: ``[B]`` a row j ≠ i of the same album (−1: none); ``text[j]`` / ``audio[j]`` are the
            intra-modal positives of ``text[i]`` / ``audio[i]`` (λ3 / λ4).
        negatives_tt, negatives_aa: ``[B, K]`` rows whose text (λ3) / audio (λ4) are intra-modal negatives.
        weights: (λ1, λ2, λ3, λ4). A term with weight 0 is not computed (its indices may be None).
        distance: ``"euclidean"`` (published) or ``"cosine"``.

    Index −1 marks a slot to ignore. Indices of the same album as the anchor are *not* filtered here (the
    samplers never produce them); pass what :func:`sample_negatives` or :func:`hardest_negatives` return.

    Returns:
        ``{"loss", "t2a", "a2t", "tt", "aa"}``: the weighted sum and each term's unweighted mean hinge (a
        zero tensor for a term that is off).
    """
    weights = tuple(float(w) for w in weights)
    if len(weights) != 4:
        raise ValueError(f"weights must be (λ1, λ2, λ3, λ4), got {weights}")
    if text.shape != audio.shape or text.dim() != 2 or album.shape != text.shape[:1]:
        raise ValueError(
            f"expected text, audio [B, E] and album [B]; got {tuple(text.shape)}, {tuple(audio.shape)}, "
            f"{tuple(album.shape)}"
        )
    indices = dict(zip(TERMS, (negatives_t2a, negatives_a2t, negatives_tt, negatives_aa), strict=True))
    for name, weight in zip(TERMS, weights, strict=True):
        if weight != 0 and indices[name] is None:
            raise ValueError(f"weight of {name!r} is {weight} but its negatives were not given")
    if (weights[2] != 0 or weights[3] != 0) and positives is None:
        raise ValueError("the intra-modal terms (λ3, λ4) need `positives`")

    out = {name: text.new_zeros(()) for name in TERMS}
    if weights[0] != 0 or weights[1] != 0:
        text_audio = pairwise_distance(text, audio, distance)  # [i, j] = d(text_i, audio_j)
        true_pair = text_audio.diagonal()
        if weights[0] != 0:
            out["t2a"] = _hinge(text_audio, true_pair, negatives_t2a, margin, None)
        if weights[1] != 0:
            out["a2t"] = _hinge(text_audio.T, true_pair, negatives_a2t, margin, None)
    for name, weight, emb in (("tt", weights[2], text), ("aa", weights[3], audio)):
        if weight != 0:
            within = pairwise_distance(emb, emb, distance)
            positive, has_positive = _intra_positive(within, positives)
            out[name] = _hinge(within, positive, indices[name], margin, has_positive)

    loss = sum((w * out[name] for name, w in zip(TERMS, weights, strict=True) if w != 0), text.new_zeros(()))
    return {"loss": loss, **out}


class MarginRankingLoss(nn.Module):
    """Configurable margin ranking loss: samples (or mines) the indices, then calls :func:`margin_ranking_loss`.

    Args:
        margin: hinge margin (published 0.05).
        negatives: K, false pairs per true pair (published 10).
        bidirectional: also rank texts for each audio anchor (λ2); False keeps only text→audio (λ1).
        weights: (λ1, λ2, λ3, λ4). λ2 is ignored when ``bidirectional`` is False, λ3/λ4 unless
            ``neighborhood`` is True.
        distance: ``"euclidean"`` (published) or ``"cosine"``.
        mining: ``"random"`` negatives (published) or the ``"hardest"`` (closest other-album items in the batch).
        neighborhood: add the intra-modal terms (λ3 text, λ4 audio); the batch sampler must put several
            rows of an album in each batch, otherwise those terms have no positive and stay 0. For an album
            with a single track the audio positive is that same track (distance 0), so λ4 then only pushes
            other albums' tracks beyond the margin.

    The published code's quirks, each its own switch (defaults = the objective as described; the published code
    as it ran is ``negative_sampling="permutation", intra_negatives=5, reduction="sum_of_block_means",
    published_overwrite=True``; see :mod:`mte.models.published`, which implements these four):

        negative_sampling: ``"other_album"`` (uniform over rows of other albums) or ``"permutation"`` (false pair
            k of row i is row ``randperm(B)[i]``, one permutation per k shared by both directions: it can be the
            anchor itself or a row of its album).
        intra_negatives: negatives per intra-modal term (None: ``negatives``; published 5).
        reduction: ``"mean"`` over all valid slots, or ``"sum_of_block_means"``: each of the K (2K when
            bidirectional) negative blocks is a batch mean and the blocks are summed (≈ K × the mean).
        published_overwrite: the published line ``if i == 0 or not neighbor: loss = …`` that replaced the loss at
            every block: without ``neighborhood`` only the last block counts (the audio→text one when
            bidirectional); with it the intra-modal terms are computed but discarded and all blocks are summed.

    ``forward(text, audio, album, generator=None)`` returns ``{"loss", "t2a", "a2t", "tt", "aa"}``; the
    ``generator`` (on ``album``'s device) makes the sampled negatives reproducible.
    """

    def __init__(
        self,
        margin: float = 0.05,
        negatives: int = 10,
        bidirectional: bool = True,
        weights: Sequence[float] = (1.0, 1.0, 0.0, 0.0),
        distance: Distance = "euclidean",
        mining: Mining = "random",
        neighborhood: bool = False,
        negative_sampling: NegativeSampling = "other_album",
        intra_negatives: int | None = None,
        reduction: Reduction = "mean",
        published_overwrite: bool = False,
    ) -> None:
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4:
            raise ValueError(f"weights must be (λ1, λ2, λ3, λ4), got {weights}")
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1, got {negatives}")
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"unknown distance {distance!r}; expected 'euclidean' or 'cosine'")
        if mining not in ("random", "hardest"):
            raise ValueError(f"unknown mining {mining!r}; expected 'random' or 'hardest'")
        if neighborhood and weights[2] == 0 and weights[3] == 0:
            raise ValueError("neighborhood=True needs a non-zero λ3 or λ4 (weights[2], weights[3])")
        if negative_sampling not in ("other_album", "permutation"):
            raise ValueError(
                f"unknown negative_sampling {negative_sampling!r}; expected 'other_album' or 'permutation'"
            )
        if negative_sampling == "permutation" and mining != "random":
            raise ValueError("negative_sampling='permutation' draws random permutations; it needs mining='random'")
        if reduction not in ("mean", "sum_of_block_means"):
            raise ValueError(f"unknown reduction {reduction!r}; expected 'mean' or 'sum_of_block_means'")
        if intra_negatives is not None and intra_negatives < 1:
            raise ValueError(f"intra_negatives must be >= 1 (or null: as many as negatives), got {intra_negatives}")
        self.negative_sampling: NegativeSampling = negative_sampling
        self.intra_negatives = int(intra_negatives) if intra_negatives is not None else int(negatives)
        self.reduction: Reduction = reduction
        self.published_overwrite = bool(published_overwrite)
        self.margin = float(margin)
        self.negatives = int(negatives)
        self.bidirectional = bool(bidirectional)
        self.distance: Distance = distance
        self.mining: Mining = mining
        self.neighborhood = bool(neighborhood)
        lam1, lam2, lam3, lam4 = weights
        self.weights = (
            lam1,
            lam2 if bidirectional else 0.0,
            lam3 if neighborhood else 0.0,
            lam4 if neighborhood else 0.0,
        )

    def extra_repr(self) -> str:
        text = (
            f"margin={self.margin}, negatives={self.negatives}, weights={self.weights}, "
            f"distance={self.distance!r}, mining={self.mining!r}"
        )
        if self.published_blocks:
            text += (
                f", negative_sampling={self.negative_sampling!r}, intra_negatives={self.intra_negatives}, "
                f"reduction={self.reduction!r}, published_overwrite={self.published_overwrite}"
            )
        return text

    @property
    def published_blocks(self) -> bool:
        """True when a published-code option is on: the loss is then computed block by block
        (:func:`mte.models.published.published_margin_loss`); otherwise by :func:`margin_ranking_loss`."""
        return (
            self.negative_sampling != "other_album"
            or self.reduction != "mean"
            or self.published_overwrite
            or (self.neighborhood and self.intra_negatives != self.negatives)
        )

    def _negatives(self, anchors: Tensor, candidates: Tensor, album: Tensor, generator: torch.Generator | None):
        if self.mining == "hardest":
            with torch.no_grad():
                dist = pairwise_distance(anchors.detach(), candidates.detach(), self.distance)
            return hardest_negatives(dist, album, self.negatives)
        return sample_negatives(album, self.negatives, generator)

    def sample_indices(
        self, text: Tensor, audio: Tensor, album: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The keyword index arguments of :func:`margin_ranking_loss` for this batch (only the terms in use)."""
        lam1, lam2, lam3, lam4 = self.weights
        out: dict[str, Tensor] = {}
        if lam1 != 0:
            out["negatives_t2a"] = self._negatives(text, audio, album, generator)
        if lam2 != 0:
            out["negatives_a2t"] = self._negatives(audio, text, album, generator)
        if lam3 != 0 or lam4 != 0:
            out["positives"] = sample_positives(album, generator)
        if lam3 != 0:
            out["negatives_tt"] = self._negatives(text, text, album, generator)
        if lam4 != 0:
            out["negatives_aa"] = self._negatives(audio, audio, album, generator)
        return out

    def forward(
        self, text: Tensor, audio: Tensor, album: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        if self.published_blocks:
            from mte.models.published import published_margin_loss  # published imports this module

            return published_margin_loss(self, text, audio, album, generator)
        indices = self.sample_indices(text, audio, album, generator)
        return margin_ranking_loss(
            text, audio, album, margin=self.margin, weights=self.weights, distance=self.distance, **indices
        )


# --------------------------------------------------------------------------------------------------------------
# InfoNCE
# --------------------------------------------------------------------------------------------------------------


def info_nce_loss(
    text: Tensor, audio: Tensor, album: Tensor, logit_scale: Tensor, margin: float = 0.0
) -> dict[str, Tensor]:
    """Symmetric CLIP cross-entropy where other rows of the *same album* are not negatives.

    ``logits[i, j] = logit_scale · (text_i·audio_j − margin·[i = j])``; entries (i, j ≠ i) with
    ``album[j] == album[i]`` are set to −inf before the softmax, so two reviews of one album in a batch are not
    pushed apart (plain CLIP would treat the second one as a false negative). ``logit_scale`` is the multiplier
    itself (1/temperature).

    ``margin`` is an additive cosine margin on the true pair (as in CosFace / AM-softmax): the true pair must beat
    every negative by ``margin`` in cosine similarity before its loss flattens out, which is what ``loss.margin``
    means for the margin ranking loss too. ``margin=0`` is plain InfoNCE.

    Returns ``{"loss": (t2a + a2t) / 2, "t2a", "a2t"}``, each a mean over the B rows.
    """
    similarity = text @ audio.T
    if margin:
        similarity = similarity - margin * torch.eye(len(text), dtype=similarity.dtype, device=similarity.device)
    logits = logit_scale * similarity
    same_album = album[:, None] == album[None, :]
    same_album.fill_diagonal_(False)
    logits = logits.masked_fill(same_album, -math.inf)
    target = torch.arange(text.shape[0], device=text.device)
    t2a = F.cross_entropy(logits, target)
    a2t = F.cross_entropy(logits.T, target)
    return {"loss": (t2a + a2t) / 2, "t2a": t2a, "a2t": a2t}


class InfoNCELoss(nn.Module):
    """CLIP-style InfoNCE with a learnable temperature and same-album masking (see :func:`info_nce_loss`).

    The temperature is learnt as ``logit_scale = log(1/temperature)`` (init 1/0.07) and, as in CLIP, kept in
    ``[0, log(max_logit_scale)]``: the parameter is clamped in place before each use — the same as CLIP's
    clamp after each optimiser step — so it can still come back down once it hits the ceiling (clamping
    only the value used in the forward pass would zero its gradient there and freeze it).
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        max_logit_scale: float = 100.0,
        bidirectional: bool = True,
        margin: float = 0.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= margin < 2.0:
            raise ValueError(f"margin is a cosine-similarity margin in [0, 2), got {margin}")
        self.margin = float(margin)
        # False: only the text→audio cross-entropy, the counterpart of the margin loss's unidirectional mode
        self.bidirectional = bidirectional
        self.max_log_scale = math.log(max_logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.logit_scale.detach()))

    def forward(
        self, text: Tensor, audio: Tensor, album: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``generator`` is unused (nothing is sampled); it keeps the signature of :class:`MarginRankingLoss`."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, self.max_log_scale)
        terms = info_nce_loss(text, audio, album, self.logit_scale.exp().to(text.dtype), self.margin)
        if not self.bidirectional:
            terms = {**terms, "loss": terms["t2a"], "a2t": torch.zeros_like(terms["a2t"])}
        return terms


# --------------------------------------------------------------------------------------------------------------
# Sigmoid (SigLIP)
# --------------------------------------------------------------------------------------------------------------


def sigmoid_loss(
    text: Tensor, audio: Tensor, album: Tensor, logit_scale: Tensor, logit_bias: Tensor
) -> dict[str, Tensor]:
    """SigLIP's pairwise sigmoid loss: every (review i, track j) pair of the batch is one binary decision.

    ``z_ij = logit_scale · text_i·audio_j + logit_bias``; the pair is a match (label +1) when both come from the
    same album — the true pair and any other pair of that album in the batch — else −1, and
    ``loss = −(1/B) Σ_ij log σ(label_ij · z_ij)`` (Zhai et al., 2023). Unlike InfoNCE no softmax couples the rows, so
    same-album pairs need no masking: they are simply positives. Returns ``{"loss", "positive", "negative"}``: the
    loss and its two parts (matching and non-matching pairs), each normalised by B like the loss.
    """
    logits = logit_scale * (text @ audio.T) + logit_bias
    match = album[:, None] == album[None, :]
    signed = torch.where(match, logits, -logits)
    per_pair = -F.logsigmoid(signed)
    batch = text.shape[0]
    positive = per_pair.masked_fill(~match, 0.0).sum() / batch
    negative = per_pair.masked_fill(match, 0.0).sum() / batch
    return {"loss": positive + negative, "positive": positive, "negative": negative}


class SigmoidLoss(nn.Module):
    """The pairwise sigmoid loss of SigLIP with a learnable temperature and bias (see :func:`sigmoid_loss`).

    Initialised as in SigLIP (``logit_scale = 10``, ``logit_bias = −10``): with B−1 negatives per positive in a
    batch, the bias starts the model off predicting "no match", which keeps the early loss from being dominated by
    the many easy negatives. The log-scale is clamped like :class:`InfoNCELoss`'s.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        bias: float = -10.0,
        learn_temperature: bool = True,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.max_log_scale = math.log(max_logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)
        self.logit_bias = nn.Parameter(torch.tensor(float(bias)), requires_grad=learn_temperature)

    def forward(
        self, text: Tensor, audio: Tensor, album: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``generator`` is unused (nothing is sampled); it keeps the signature of :class:`MarginRankingLoss`."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, self.max_log_scale)
        return sigmoid_loss(text, audio, album, self.logit_scale.exp().to(text.dtype), self.logit_bias.to(text.dtype))
