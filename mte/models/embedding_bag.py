"""``embedding_bag``: torch's EmbeddingBag forward with a backward that makes one gradient row per distinct word.

Why: torch's backward of an embedding bag makes one gradient row per *position* of the padded ``[B, L]`` batch —
padding included — and the optimiser then sorts and sums them (``coalesce``). A MARD batch is 128 reviews padded
to the longest (often the 400-token cap) with ~60 real tokens on average: 51,200 rows × 300 floats (61 MB) per
step, most of them zeros, for ~3,000 distinct words. That was a third of a CPU training step.

Here the backward is itself an embedding bag, run "transposed": each distinct word is a bag over the batch rows
(reviews) that contain it, weighted by the word's coefficient in that review, summed. The result is the gradient's
``[distinct words, D]`` rows directly, already sorted and unique (a coalesced sparse tensor, or those rows of a
dense one). The forward is torch's own kernel on the batch's non-padding ids (:func:`padded_bags`), bit-identical to
torch's padded call; the gradient is the same sum taken in another order (float rounding differs at the ~1e-7
relative level).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mte.data.text import PAD_ID


class _EmbeddingBag(torch.autograd.Function):
    """Autograd node of :func:`embedding_bag` (gradients for ``weight`` only)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, tokens: Tensor, per_sample_weights: Tensor | None, mode: str,
                sparse: bool) -> Tensor:
        keep, counts, words = flat_ids(tokens)  # the backward reads the batch in this form too
        ctx.save_for_backward(keep, counts, words, per_sample_weights)
        ctx.mode, ctx.sparse, ctx.weight_shape = mode, sparse, weight.shape
        return padded_bags(weight, tokens, mode, per_sample_weights, flat=(keep, counts, words))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        keep, counts, words, per_sample_weights = ctx.saved_tensors
        rows, grad_rows = bag_gradient_rows(keep, counts, words, grad, per_sample_weights, ctx.mode)
        shape = ctx.weight_shape
        if ctx.sparse:
            weight_grad = torch.sparse_coo_tensor(rows.unsqueeze(0), grad_rows, shape, is_coalesced=True,
                                                  check_invariants=False)
        else:
            weight_grad = grad.new_zeros(shape).index_copy_(0, rows, grad_rows)
        return weight_grad, None, None, None, None


def flat_ids(tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A padded batch ``[B, L]`` (0 = padding) as (its non-padding mask, each review's count of ids, the ids end to
    end, row-major: review 0's, then review 1's, …)."""
    keep = tokens != PAD_ID
    return keep, keep.sum(dim=1), torch.masked_select(tokens, keep)  # masked_select: cheaper than tokens[keep]


def bag_gradient_rows(keep: Tensor, counts: Tensor, words: Tensor, grad: Tensor, per_sample_weights: Tensor | None,
                      mode: str) -> tuple[Tensor, Tensor]:
    """(sorted distinct word ids, their gradient rows ``[U, D]``) of a bag over a batch given by :func:`flat_ids`.

    ``mode="mean"``: review b's words each carry ``grad[b] / (its non-padding count)``; ``"sum"``: ``grad[b]``, times
    ``per_sample_weights[b, t]`` when given. Each word's row sums these over the positions it holds.
    """
    if mode == "mean":
        grad = grad / counts.clamp(min=1).unsqueeze(1).to(grad.dtype)
    elif mode != "sum":
        raise ValueError(f"embedding_bag mode must be 'mean' or 'sum', got {mode!r}")
    review = torch.repeat_interleave(torch.arange(len(keep), device=keep.device), counts)
    order = stable_order(words)  # stable: each word's reviews stay in batch order
    words = words.index_select(0, order)
    ids, per_word = torch.unique_consecutive(words, return_counts=True)
    if len(ids) == 0:
        return ids, grad.new_zeros((0, grad.shape[1]))
    offsets = per_word.cumsum(0) - per_word
    weights = per_sample_weights[keep][order].to(grad.dtype) if per_sample_weights is not None else None
    # the transposed bag: word u's row = Σ over its positions of (weight ×) the gradient of the review holding it
    rows = F.embedding_bag(review[order], grad, offsets, mode="sum", per_sample_weights=weights)
    return ids, rows


def stable_order(ids: Tensor) -> Tensor:
    """The permutation that sorts non-negative integer ``ids`` stably: ``ids.sort(stable=True).indices``.

    Why: on the CPU, numpy's stable sort of 16-bit keys is a radix sort — one linear pass where torch runs a merge
    sort of 64-bit keys (the 4,600 ids of a full-size MARD training batch: 53 against 372 µs on the dev machine, 4% of
    a training step). A stable sorting permutation is unique, so both give the same one. Ids of 2¹⁶ and beyond take a
    second pass on their high 16 bits (least significant digit first, which keeps the order stable); other devices,
    and ids beyond 2³², use torch's sort.
    """
    if ids.device.type == "cpu" and len(ids):
        low, top = (int(bound) for bound in torch.aminmax(ids))
        if low >= 0 and top < 1 << 32:
            keys = ids.numpy()
            order = np.argsort(keys.astype(np.uint16), kind="stable")  # low 16 bits (astype wraps: keeps those bits)
            if top >= 1 << 16:
                order = order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]
            return torch.from_numpy(order)
    return ids.sort(stable=True).indices


def embedding_bag(weight: Tensor, tokens: Tensor, mode: str = "mean", per_sample_weights: Tensor | None = None,
                  sparse: bool = False) -> Tensor:
    """``F.embedding_bag(tokens, weight, mode=mode, padding_idx=0, per_sample_weights=…)`` over a padded ``[B, L]``
    batch, whose ``weight`` gradient is one row per distinct word (sparse COO, coalesced, when ``sparse``).

    ``per_sample_weights`` must not need a gradient (they are fixed weights, e.g. IDF).
    """
    if per_sample_weights is not None and per_sample_weights.requires_grad:
        raise ValueError("embedding_bag: per_sample_weights must not require a gradient")
    if not (torch.is_grad_enabled() and weight.requires_grad):
        return padded_bags(weight, tokens, mode, per_sample_weights)
    return _EmbeddingBag.apply(weight, tokens, per_sample_weights, mode, sparse)


def padded_bags(weight: Tensor, tokens: Tensor, mode: str, per_sample_weights: Tensor | None = None,
                flat: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """``F.embedding_bag(tokens, weight, mode=mode, padding_idx=0, per_sample_weights=…)`` of a padded ``[B, L]``
    batch, bit for bit; without per-sample weights computed from its non-padding ids laid end to end, one offset
    per review.

    Why: with ``padding_idx`` torch's CPU kernel leaves its fast path; the flat form takes it and sums each bag's
    rows in the same order (measured on the dev machine, 2 threads, 300-d rows: a full-size MARD training batch,
    128 × 192 with 4,600 words after word dropout, 0.54 → 0.39 ms with the masking; a denser one, 13,700 words,
    1.38 → 0.26 ms). An empty review is a zero row either way. Weighted bags (``text.weighting=idf``) keep the
    padded call, whose products the fast kernel rounds differently, and so do other devices (the fast path is the
    CPU kernel's). ``flat``: the batch's :func:`flat_ids`, when the caller has them already.
    """
    if per_sample_weights is not None or tokens.device.type != "cpu":
        return F.embedding_bag(tokens, weight, mode=mode, padding_idx=PAD_ID, per_sample_weights=per_sample_weights)
    _, counts, words = flat if flat is not None else flat_ids(tokens)
    return F.embedding_bag(words, weight, counts.cumsum(0) - counts, mode=mode)
