"""Contrastive losses over in-batch pairs: InfoNCE (CLIP-style, with an optional additive margin) and SigLIP's
pairwise sigmoid loss. Rows of one album are never negatives of each other."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


class _LearnedTemperature(nn.Module):
    """A learnable ``logit_scale = log(1/temperature)`` kept in ``[0, log(max_logit_scale)]``, as in CLIP.

    The parameter is clamped in place before each use — the same as CLIP's clamp after each optimiser step — so it
    can still come back down once it hits the ceiling (clamping only the value used in the forward pass would zero
    its gradient there and freeze it).
    """

    def __init__(self, temperature: float, learn_temperature: bool, max_logit_scale: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.max_log_scale = math.log(max_logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.logit_scale.detach()))

    def scale(self, dtype: torch.dtype) -> Tensor:
        """``exp(logit_scale)`` after the in-place clamp: the multiplier of the similarities."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, self.max_log_scale)
        return self.logit_scale.exp().to(dtype)


class InfoNCELoss(_LearnedTemperature):
    """CLIP-style InfoNCE with a learnable temperature (init 1/0.07) and same-album masking (see
    :func:`info_nce_loss`)."""

    def __init__(
        self,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        max_logit_scale: float = 100.0,
        bidirectional: bool = True,
        margin: float = 0.0,
    ) -> None:
        super().__init__(temperature, learn_temperature, max_logit_scale)
        if not 0.0 <= margin < 2.0:
            raise ValueError(f"margin is a cosine-similarity margin in [0, 2), got {margin}")
        self.margin = float(margin)
        # False: only the text→audio cross-entropy, the counterpart of the margin loss's unidirectional mode
        self.bidirectional = bidirectional

    def forward(
        self, text: Tensor, audio: Tensor, album: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``generator`` is unused (nothing is sampled); it keeps the signature of :class:`MarginRankingLoss`."""
        terms = info_nce_loss(text, audio, album, self.scale(text.dtype), self.margin)
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


class SigmoidLoss(_LearnedTemperature):
    """The pairwise sigmoid loss of SigLIP with a learnable temperature and bias (see :func:`sigmoid_loss`).

    Initialised as in SigLIP (``logit_scale = 10``, ``logit_bias = −10``): with B−1 negatives per positive in a
    batch, the bias starts the model off predicting "no match", which keeps the early loss from being dominated by
    the many easy negatives.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        bias: float = -10.0,
        learn_temperature: bool = True,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__(temperature, learn_temperature, max_logit_scale)
        self.logit_bias = nn.Parameter(torch.tensor(float(bias)), requires_grad=learn_temperature)

    def forward(
        self, text: Tensor, audio: Tensor, album: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``generator`` is unused (nothing is sampled); it keeps the signature of :class:`MarginRankingLoss`."""
        return sigmoid_loss(text, audio, album, self.scale(text.dtype), self.logit_bias.to(text.dtype))
