"""The published training step as it ran: every copy re-embedded, one hinge mean per block, the overwrite.

The paper describes a margin ranking loss over K = 10 false pairs per true pair in both directions, plus
intra-modal terms under neighbourhood sampling. The published code (``Training.py`` of
``noah-rush/Joint-Music-Text-Embeddings``) computes something else, and Table 1 measures that:

* **blocks of copies.** For ``k`` in ``0..K-1`` it draws ``perm = randperm(B)`` and appends a copy of the batch
  whose text is the true text and whose audio is ``audio[perm]`` (a text→audio block), then, with
  ``--bidirectional``, a copy with ``text[perm]`` and the true audio (an audio→text block). Block order is
  ``t2a_0, a2t_0, t2a_1, …``. Every copy is embedded again.
* **permutation negatives.** ``perm[i]`` may be ``i`` itself (hinge = margin, zero gradient) or a row of the
  anchor's own album (pushed away as if it were another album).
* **the overwrite.** The block loop reads ``if i == 0 or not neighbor: loss = … else: loss += …``: without
  neighbourhood sampling each block *replaces* the loss, so only the last block (one negative set; the audio→text
  one when bidirectional) reaches ``backward()``. With neighbourhood sampling the intra-modal terms computed
  before the loop (5 negative sets each, drawn from ``randperm(B)[:n]``) are discarded at ``i == 0`` and all
  blocks are summed — a sum of per-block batch means, ≈ K (2K) times the described mean.

:func:`published_step` is that step, literally: copies re-embedded, one hinge mean per block, the overwrite. It is a
yardstick for ``tests/test_published.py`` (which checks it against a line-by-line transcription of the published
loop) and ``scripts/bench_train.py``, not something to train with. What training uses is
:func:`mte.models.losses.published.published_margin_loss` (``loss.negative_sampling``, ``loss.intra_negatives``,
``loss.reduction``, ``loss.published_overwrite`` on :class:`~mte.models.losses.MarginRankingLoss`): each item
embedded once, the false pairs gathered by index from the B×B distance matrix, every quirk its own switch. Given the
same random stream (same generator, same draw order) the two give the same value and the same gradients.

Where the published neighbourhood differs and cannot be reproduced inside a batch: its neighbour review and track
come from the whole training set (not the batch) and its audio "neighbour" is any row of the same review, itself
included. Under the overwrite those terms never reach the loss, so only the random draws they consume matter; the
embed-once loss draws them in the same order (from in-batch positives).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mte.models.reembedding import Inputs, input_device, input_rows, take_rows

PUBLISHED_INTRA_NEGATIVES = 5
"""Negative sets per intra-modal term in the published code (hard-coded ``range(5)``)."""

TwoBranch = Callable[[Inputs, Inputs], tuple[Tensor, Tensor]]
"""``model(text_inputs, audio_inputs) → (text embeddings, audio embeddings)``, the published model's signature."""


# --------------------------------------------------------------------------------------------------------------
# the literal step
# --------------------------------------------------------------------------------------------------------------


def row_distance(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distance of paired rows as the published code wrote it, except where two rows coincide.

    There the published ``sqrt`` has an infinite slope and its gradient is NaN: an intra-modal negative drawn
    from ``randperm`` can be the anchor row itself (distance exactly 0). Under the overwrite those terms never
    reach ``backward()``; with ``overwrite=False`` the published code would train on NaN. Here a zero distance
    gets a zero gradient, as in :func:`mte.models.losses.pairwise_distance`; every other value is the published one.
    """
    squared = torch.sum(torch.square(x - y), dim=1)
    positive = squared > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, squared, 1.0)), 0.0)


def _hinge_mean(true: Tensor, fake: Tensor, margin: float) -> Tensor:
    """``torch.nn.MarginRankingLoss(margin)(true, fake, -1)``: mean of ``max(0, true − fake + margin)``."""
    return torch.clamp(true - fake + margin, min=0).mean()


def published_step(
    model: TwoBranch,
    text: Inputs,
    audio: Inputs,
    *,
    margin: float = 0.05,
    negatives: int = 10,
    bidirectional: bool = True,
    neighborhood: bool = False,
    text_home: Tensor | None = None,
    text_neighbors: Inputs | None = None,
    audio_home: Tensor | None = None,
    audio_neighbors: Inputs | None = None,
    intra_negatives: int = PUBLISHED_INTRA_NEGATIVES,
    overwrite: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The loss one published training step sends to ``backward()``, with every copy re-embedded.

    Args:
        model: the two-branch model, called on (text rows, audio rows) as the published code called it.
        text, audio: raw inputs of the batch's B true pairs (a tensor, or a dict of row-indexed tensors).
        neighborhood: compute the intra-modal terms (``--neighborhood 1``); needs the four neighbour arguments.
        text_home, audio_home: ``LongTensor`` rows of the batch that have a neighbour (published: rows whose
            album has another review / rows whose review has a track), in batch order.
        text_neighbors, audio_neighbors: raw inputs of those neighbours, one per home row.
        intra_negatives: negative sets per intra-modal term (published 5).
        overwrite: True is the published line ``if i == 0 or not neighbor: loss = …``; False adds every block.
        generator: the source of every ``randperm``; draws are made in the published order (intra-modal sets
            first, text then audio, then one permutation per block pair).
    """
    items = input_rows(text)
    device = input_device(text)
    loss: Tensor | None = None
    if neighborhood:
        if text_home is None or audio_home is None or text_neighbors is None or audio_neighbors is None:
            raise ValueError("neighborhood=True needs text_home, text_neighbors, audio_home and audio_neighbors")
        home_text, home_audio = model(take_rows(text, text_home), take_rows(audio, audio_home))
        near_text, near_audio = model(text_neighbors, audio_neighbors)
        true_text, true_audio = row_distance(home_text, near_text), row_distance(home_audio, near_audio)
        for _ in range(intra_negatives):
            fake_text_rows = torch.randperm(items, generator=generator, device=device)[: len(text_home)]
            fake_audio_rows = torch.randperm(items, generator=generator, device=device)[: len(audio_home)]
            fake_text, fake_audio = model(take_rows(text, fake_text_rows), take_rows(audio, fake_audio_rows))
            term = _hinge_mean(true_text, row_distance(home_text, fake_text), margin)
            term = term + _hinge_mean(true_audio, row_distance(home_audio, fake_audio), margin)
            loss = term if loss is None else loss + term
    # the batch, then its K (2K) copies, stacked and embedded in one forward pass as the published code did
    identity = torch.arange(items, device=device)
    text_rows, audio_rows = [identity], [identity]
    for _ in range(negatives):
        perm = torch.randperm(items, generator=generator, device=device)
        text_rows.append(identity)
        audio_rows.append(perm)
        if bidirectional:
            text_rows.append(perm)
            audio_rows.append(identity)
    text_emb, audio_emb = model(take_rows(text, torch.cat(text_rows)), take_rows(audio, torch.cat(audio_rows)))
    dists = row_distance(text_emb, audio_emb).view(len(text_rows), items)
    for i, fake in enumerate(dists[1:]):
        block = _hinge_mean(dists[0], fake, margin)
        replace = loss is None or (overwrite and (i == 0 or not neighborhood))  # the published line
        loss = block if replace else loss + block
    assert loss is not None  # negatives ≥ 1: at least one block
    return loss
