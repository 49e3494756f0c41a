"""The published code's margin objective, each item embedded once: the published quirks of
:class:`~mte.models.losses.MarginRankingLoss` (``negative_sampling``, ``intra_negatives``, ``reduction``,
``published_overwrite``), computed block by block. :func:`mte.models.published_step.published_step` is the step as it
ran (copies re-embedded); ``tests/test_published.py`` checks that both give the same value and gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mte.models.losses.common import hinge, pairwise_distance, sample_negatives, sample_positives

if TYPE_CHECKING:
    from mte.models.losses.margin import MarginRankingLoss

def _column(batch: int, rows: Tensor, values: Tensor) -> Tensor:
    """``[B, 1]`` negative indices: ``values[j]`` at row ``rows[j]``, −1 (ignored) elsewhere."""
    out = torch.full((batch, 1), -1, dtype=torch.long, device=rows.device)
    out[rows, 0] = values
    return out


def _intra_blocks(
    loss: MarginRankingLoss,
    text: Tensor,
    audio: Tensor,
    album: Tensor,
    positives: Tensor,
    generator: torch.Generator | None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-set batch means of the text↔text and audio↔audio hinges (``intra_negatives`` sets each).

    Home rows are the rows with an in-batch positive; with ``permutation`` sampling the negative of the j-th
    home row is ``randperm(B)[j]``, drawn text then audio per set, as in the published loop.
    """
    batch = text.shape[0]
    home = torch.nonzero(positives >= 0).squeeze(1)
    has_positive = positives >= 0
    within_text = pairwise_distance(text, text, loss.distance)
    within_audio = pairwise_distance(audio, audio, loss.distance)
    positive_text = within_text.gather(1, positives.clamp(min=0)[:, None]).squeeze(1)
    positive_audio = within_audio.gather(1, positives.clamp(min=0)[:, None]).squeeze(1)
    tt: list[Tensor] = []
    aa: list[Tensor] = []
    if loss.negative_sampling == "permutation":
        for _ in range(loss.intra_negatives):
            fake_text = torch.randperm(batch, generator=generator, device=album.device)[: len(home)]
            fake_audio = torch.randperm(batch, generator=generator, device=album.device)[: len(home)]
            tt.append(hinge(within_text, positive_text, _column(batch, home, fake_text), loss.margin, has_positive))
            aa.append(hinge(within_audio, positive_audio, _column(batch, home, fake_audio), loss.margin, has_positive))
        return tt, aa
    negatives_tt = sample_negatives(album, loss.intra_negatives, generator)
    negatives_aa = sample_negatives(album, loss.intra_negatives, generator)
    for k in range(loss.intra_negatives):
        tt.append(hinge(within_text, positive_text, negatives_tt[:, k : k + 1], loss.margin, has_positive))
        aa.append(hinge(within_audio, positive_audio, negatives_aa[:, k : k + 1], loss.margin, has_positive))
    return tt, aa


def _negative_indices(
    loss: MarginRankingLoss, text: Tensor, audio: Tensor, album: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor | None]:
    """``[B, K]`` text→audio and audio→text negatives: one shared permutation per k, or the usual samplers."""
    bidirectional = loss.weights[1] != 0
    if loss.negative_sampling == "permutation":
        batch = text.shape[0]
        perms = [torch.randperm(batch, generator=generator, device=album.device) for _ in range(loss.negatives)]
        stacked = torch.stack(perms, dim=1)
        return stacked, (stacked if bidirectional else None)
    t2a = loss._negatives(text, audio, album, generator)
    return t2a, (loss._negatives(audio, text, album, generator) if bidirectional else None)


def published_margin_loss(
    loss: MarginRankingLoss,
    text: Tensor,
    audio: Tensor,
    album: Tensor,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The margin loss block by block, with ``loss``'s published options, on embeddings computed once.

    Blocks are ``t2a_0, a2t_0, t2a_1, …`` (λ1 / λ2 weigh each of its kind), intra-modal sets ``tt_k`` / ``aa_k``
    (λ3 / λ4). Combination:

    * ``published_overwrite`` without ``neighborhood``: the last block only;
    * ``published_overwrite`` with ``neighborhood``: the sum of the blocks (intra-modal terms computed, logged,
      discarded — they still consume their random draws);
    * otherwise ``sum_of_block_means`` adds every block and intra-modal set, and ``mean`` averages each kind over
      its blocks before weighting (the described loss, up to masked slots).

    Returns ``{"loss", "t2a", "a2t", "tt", "aa"}``, each term the mean of its block means (0 when off).
    """
    lam1, lam2, lam3, lam4 = loss.weights
    zero = text.new_zeros(())
    tt: list[Tensor] = []
    aa: list[Tensor] = []
    if lam3 != 0 or lam4 != 0:
        positives = sample_positives(album, generator)
        tt, aa = _intra_blocks(loss, text, audio, album, positives, generator)
    negatives_t2a, negatives_a2t = _negative_indices(loss, text, audio, album, generator)
    text_audio = pairwise_distance(text, audio, loss.distance)
    true_pair = text_audio.diagonal()
    blocks: list[tuple[str, float, Tensor]] = []
    for k in range(loss.negatives):
        blocks.append(("t2a", lam1, hinge(text_audio, true_pair, negatives_t2a[:, k : k + 1], loss.margin, None)))
        if negatives_a2t is not None:
            a2t = hinge(text_audio.T, true_pair, negatives_a2t[:, k : k + 1], loss.margin, None)
            blocks.append(("a2t", lam2, a2t))

    def mean_of(items: list[Tensor]) -> Tensor:
        return torch.stack(items).mean() if items else zero

    terms = {
        "t2a": mean_of([b for name, _, b in blocks if name == "t2a"]),
        "a2t": mean_of([b for name, _, b in blocks if name == "a2t"]),
        "tt": mean_of(tt),
        "aa": mean_of(aa),
    }
    weighted_blocks = [w * b for _, w, b in blocks if w != 0] or [zero]
    if loss.published_overwrite and not loss.neighborhood:
        total = weighted_blocks[-1]
    elif loss.published_overwrite:
        total = torch.stack(weighted_blocks).sum()
    elif loss.reduction == "sum_of_block_means":
        intra = [lam3 * t for t in tt if lam3 != 0] + [lam4 * a for a in aa if lam4 != 0]
        total = torch.stack(weighted_blocks + intra).sum()
    else:
        total = sum((w * terms[name] for name, w in zip(("t2a", "a2t", "tt", "aa"), loss.weights, strict=True) if w),
                    zero)
    return {"loss": total, **terms}
