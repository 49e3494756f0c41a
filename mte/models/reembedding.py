"""The margin loss as *described*, computed by re-embedding every copy — a yardstick, not something to train with.

(The published step as it actually *ran* — permutation negatives, blocks, the loss overwritten per block — is
:func:`mte.models.published_step.published_step`. This module checks only that embedding each item once changes
nothing.)

``mte.models.losses.margin_ranking_loss`` embeds every item of a batch once and gathers the K false pairs of each true
pair by index from the B×B distance matrix. The published code did it the expensive way: for each true pair and
each of its K false items it built one (anchor, positive, negative) triple by *copying the raw inputs*, and ran
every copy through its encoder (≈3·K forward passes per true pair and direction). The two are mathematically the
same loss, and this module keeps the literal form so that:

* ``tests/test_losses.py`` can check that the embed-once loss has the same value and gradients as the published
  one for every option (bidirectional, neighbourhood terms, cosine distance, hardest-negative mining);
* ``scripts/bench_train.py`` can measure what embedding once buys, step for step, on real batches.

Only the embedding is literal. The triples are built with one advanced-indexing gather per role (which copies
the rows, as the published data pipeline did) instead of a Python loop over triples, so a benchmark compares the
cost of re-embedding the copies, not interpreter overhead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from mte.models.losses import Distance

Inputs = Tensor | Mapping[str, Tensor]
"""Raw inputs of one branch: a tensor, or a batch dict whose every value is indexed by row (e.g. tokens, lengths)."""
Encoder = Callable[[Inputs], Tensor]


def take_rows(inputs: Inputs, rows: Tensor) -> Inputs:
    """Copies of ``rows`` of the raw inputs (advanced indexing allocates new storage: real duplicates)."""
    if isinstance(inputs, Tensor):
        return inputs[rows]
    return {key: value[rows] for key, value in inputs.items()}


def literal_distance(x: Tensor, y: Tensor, distance: Distance = "euclidean") -> Tensor:
    """Row-wise distance of paired embeddings as the published code wrote it (no matrix-product identity)."""
    if distance == "euclidean":
        return torch.sqrt(((x - y) ** 2).sum(-1))
    if distance == "cosine":
        return 1.0 - (x * y).sum(-1)
    raise ValueError(f"unknown distance {distance!r}; expected 'euclidean' or 'cosine'")


def _triples(positive_rows: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(anchor, positive, negative) row indices of every valid slot, in row-major (anchor, slot) order.

    A slot is valid when its negative index is ≥ 0 and the anchor has a positive (≥ 0) — the same slots
    ``mte.models.losses.margin_ranking_loss`` averages over.
    """
    anchors = torch.arange(negatives.shape[0], device=negatives.device)[:, None].expand_as(negatives)
    positives = positive_rows[:, None].expand_as(negatives)
    valid = (negatives >= 0) & (positives >= 0)
    return anchors[valid], positives[valid], negatives[valid]


def reembedded_margin_loss(
    text_encoder: Encoder,
    audio_encoder: Encoder,
    text_inputs: Inputs,
    audio_inputs: Inputs,
    album: Tensor,
    *,
    margin: float,
    negatives_t2a: Tensor | None = None,
    negatives_a2t: Tensor | None = None,
    positives: Tensor | None = None,
    negatives_tt: Tensor | None = None,
    negatives_aa: Tensor | None = None,
    weights: Sequence[float] = (1.0, 1.0, 0.0, 0.0),
    distance: Distance = "euclidean",
) -> Tensor:
    """The described loss, re-embedded: duplicate the raw inputs of every triple, re-embed each copy, average.

    Takes the same index arguments as :func:`mte.models.losses.margin_ranking_loss` (−1 = ignored slot) and returns its
    ``"loss"``: ``Σ_d λ_d · mean over the triples of direction d of max(0, margin + d(a, p) − d(a, n))``, where
    the directions are text→audio (λ1), audio→text (λ2), text↔text (λ3) and audio↔audio (λ4); the intra-modal
    positive of row i is row ``positives[i]``. ``album`` is accepted for signature parity only: the indices
    already encode which rows are admissible.
    """
    del album  # the samplers already excluded same-album rows; kept so both losses take the same arguments
    identity = torch.arange(input_rows(text_inputs), device=input_device(text_inputs))
    text = (text_encoder, text_inputs)
    audio = (audio_encoder, audio_inputs)
    # (anchor branch, positive branch, negative branch, positive row of each anchor, negatives)
    directions = [
        (text, audio, audio, identity, negatives_t2a),
        (audio, text, text, identity, negatives_a2t),
        (text, text, text, positives, negatives_tt),
        (audio, audio, audio, positives, negatives_aa),
    ]
    total: Tensor | None = None
    for weight, (anchor, positive, negative, positive_rows, negatives) in zip(weights, directions, strict=True):
        if weight == 0:
            continue
        if negatives is None or positive_rows is None:
            raise ValueError("a direction with a non-zero weight needs its indices (and positives for λ3/λ4)")
        a_rows, p_rows, n_rows = _triples(positive_rows, negatives)
        if len(a_rows) == 0:
            continue
        a = anchor[0](take_rows(anchor[1], a_rows))
        p = positive[0](take_rows(positive[1], p_rows))
        n = negative[0](take_rows(negative[1], n_rows))
        term = torch.clamp(margin + literal_distance(a, p, distance) - literal_distance(a, n, distance), min=0).mean()
        total = weight * term if total is None else total + weight * term
    if total is None:  # no valid triple anywhere: the loss is 0 (embed one row only to get dtype and device)
        return text_encoder(take_rows(text_inputs, identity[:1])).sum() * 0.0
    return total


def input_rows(inputs: Inputs) -> int:
    """Rows of one branch's raw inputs (a tensor, or a batch dict indexed by row)."""
    tensor = inputs if isinstance(inputs, Tensor) else next(iter(inputs.values()))
    return int(tensor.shape[0])


def input_device(inputs: Inputs) -> torch.device:
    """The device of one branch's raw inputs."""
    tensor = inputs if isinstance(inputs, Tensor) else next(iter(inputs.values()))
    return tensor.device
