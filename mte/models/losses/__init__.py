"""Ranking losses for the joint text–audio space.

Every loss here takes the batch as the model produces it: ``text[i]`` and ``audio[i]`` (both L2-normalised,
shape ``[B, E]``) are a true (review, track) pair of album ``album[i]``. Rows may share an album (two reviews
of one album in a batch, or neighbourhood sampling, which puts them there on purpose), so *an item of the
anchor's own album is never used as a negative*.

The margin ranking loss is the published model's objective, computed differently: the published code
duplicated the raw inputs of every (anchor, positive, negative) triple and re-embedded each copy (≈3·K
forward passes per true pair); here each item is embedded once and the K negatives are *gathered by index*
from the B×B distance matrix. Both give the same value and the same gradients — ``tests/test_losses.py``
checks this against the re-embedding form (:mod:`mte.models.reembedding`) — but this costs one forward pass.

Reduction (both directions and both intra-modal terms)::

    term_d = mean over valid (anchor i, negative n) of max(0, margin + d(a_i, p_i) - d(a_i, n))
    loss   = λ1·term_t2a + λ2·term_a2t + λ3·term_tt + λ4·term_aa

A (anchor, negative) slot is *valid* unless its index is −1 (no negative of another album exists, or, for the
intra-modal terms, no positive of the same album exists). A term with no valid slot is 0, not NaN.

Modules: :mod:`~mte.models.losses.common` (distances, samplers, the hinge), :mod:`~mte.models.losses.margin`,
:mod:`~mte.models.losses.published` (the published code's quirks of the margin loss) and
:mod:`~mte.models.losses.contrastive` (InfoNCE, sigmoid).
"""

# the public API: the losses, their functional forms, and the distance and samplers tests and benchmarks reuse
from mte.models.losses.common import Distance, hardest_negatives, pairwise_distance, sample_negatives, sample_positives
from mte.models.losses.contrastive import InfoNCELoss, SigmoidLoss, info_nce_loss, sigmoid_loss
from mte.models.losses.margin import MarginRankingLoss, margin_ranking_loss
from mte.models.losses.published import published_margin_loss

__all__ = [
    "Distance",
    "InfoNCELoss",
    "MarginRankingLoss",
    "SigmoidLoss",
    "hardest_negatives",
    "info_nce_loss",
    "margin_ranking_loss",
    "pairwise_distance",
    "published_margin_loss",
    "sample_negatives",
    "sample_positives",
    "sigmoid_loss",
]
