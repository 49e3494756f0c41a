"""The margin ranking loss (the published objective as described), each item embedded once.

The K false pairs of each true pair are gathered by index from the B×B distance matrix instead of re-embedding
copies (see :mod:`mte.models.losses` for the reduction and :mod:`mte.models.reembedding` for the check that both
give the same value and gradients); the published code's quirks are options computed by
:mod:`mte.models.losses.published`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mte.models.losses.common import (
    TERMS,
    Distance,
    Mining,
    NegativeSampling,
    Reduction,
    hardest_negatives,
    hinge,
    intra_positive,
    pairwise_distance,
    sample_negatives,
    sample_positives,
)
from mte.models.losses.published import published_margin_loss

# --------------------------------------------------------------------------------------------------------------
# the margin ranking loss
# --------------------------------------------------------------------------------------------------------------


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
            out["t2a"] = hinge(text_audio, true_pair, negatives_t2a, margin, None)
        if weights[1] != 0:
            out["a2t"] = hinge(text_audio.T, true_pair, negatives_a2t, margin, None)
    for name, weight, emb in (("tt", weights[2], text), ("aa", weights[3], audio)):
        if weight != 0:
            within = pairwise_distance(emb, emb, distance)
            positive, has_positive = intra_positive(within, positives)
            out[name] = hinge(within, positive, indices[name], margin, has_positive)

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
    published_overwrite=True``; see :mod:`mte.models.losses.published`, which implements these four):

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
        (:func:`mte.models.losses.published.published_margin_loss`); otherwise by :func:`margin_ranking_loss`."""
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
            return published_margin_loss(self, text, audio, album, generator)
        indices = self.sample_indices(text, audio, album, generator)
        return margin_ranking_loss(
            text, audio, album, margin=self.margin, weights=self.weights, distance=self.distance, **indices
        )
