"""The frozen-encoder feature pass: tokenise once, run length-bucketed batches, pool — rows in input order.

Why this shape (the pass is the one slow step of ``text=minilm`` / ``text=distilbert``: ~30k long reviews through a
transformer on a CPU):

* **tokenise once, no padding**: the token counts decide the batching, and each review is tokenised exactly once;
* **bucketing**: reviews are run longest first in batches of similar token length, each padded only to its own
  longest review (never to ``max_length``). The attention mask makes padding irrelevant to the pooled features,
  so the result equals an unbucketed pass up to float rounding (tested at 1e-5, mean and CLS pooling);
* **inference mode** and the encoder in eval mode: no autograd bookkeeping, no dropout;
* ``max_length="auto"`` (:func:`choose_max_length`): the truncation length comes from the training reviews' token
  lengths instead of a fixed guess. With bucketing, max_length no longer costs padding; it only decides how much of
  the longest reviews is read.

Batches are fixed by (order, batch size) alone, so computing any subset of them — the chunks of a resumed pass —
gives exactly the floats of one uninterrupted pass.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from mte.models.text import HFEncoder, model_length_limit

# Precisions of the pass. "bf16" runs a bfloat16 copy of the encoder (the trained model keeps its fp32 weights):
# ~2x the reviews per CPU-second on CPUs with AMX/AVX512-BF16 (measured with MiniLM here), and the usual choice on
# GPUs. Features then differ from fp32 (cosine > 0.999), so the precision is part of the cache key.
PRECISIONS = ("fp32", "bf16")


def token_ids(encoder: HFEncoder, texts: Sequence[str]) -> list[np.ndarray]:
    """Each text's ids (special tokens included, truncated at ``encoder.max_length``), unpadded, as int32 arrays:
    ~6x less memory than Python lists of ints (~90k reviews × ~130 tokens: ~60 MB instead of ~400 MB)."""
    if not texts:
        return []
    enc = encoder.tokenizer(
        list(texts), truncation=True, max_length=encoder.max_length, padding=False, return_attention_mask=False
    )
    return [np.asarray(ids, dtype=np.int32) for ids in enc["input_ids"]]


def length_order(lengths: np.ndarray) -> np.ndarray:
    """Longest first (stable: ties keep input order). Longest first also means an out-of-memory batch fails at
    once rather than at the end."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def pad_batch(encoder: HFEncoder, ids: Sequence[np.ndarray], to_max_length: bool = False) -> dict[str, torch.Tensor]:
    """Pad id arrays with the tokenizer's pad token on its padding side, to the longest of them or to
    ``max_length`` — the ``input_ids``/``attention_mask`` the tokenizer itself would return with ``padding=True``
    (or ``"max_length"``)."""
    width = encoder.max_length if to_max_length else max((len(x) for x in ids), default=0)
    input_ids = np.full((len(ids), width), encoder.tokenizer.pad_token_id or 0, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    left = getattr(encoder.tokenizer, "padding_side", "right") == "left"
    for row, x in enumerate(ids):
        cols = slice(width - len(x), width) if left else slice(0, len(x))
        input_ids[row, cols] = x
        mask[row, cols] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


def batches(rows: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), batch_size):
        yield rows[start : start + batch_size]


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"text.feature_precision must be one of {PRECISIONS}, got {precision!r}")


def pass_encoder(encoder: HFEncoder, precision: str) -> HFEncoder:
    """The encoder the pass runs: itself in fp32, a bfloat16 copy in bf16. A copy, because casting the trained
    model's weights down and back up would lose their low bits (and change the cache key's weight hash).
    Measured here: a bf16 copy ran ~25% more reviews per CPU-second than fp32 weights under bf16 autocast."""
    check_precision(precision)
    if precision == "fp32":
        return encoder
    work = copy.deepcopy(encoder)
    work.model.to(torch.bfloat16)
    return work


def encode_rows(
    encoder: HFEncoder,
    ids: Sequence[np.ndarray],
    rows: np.ndarray,
    batch_size: int,
    bucketing: bool = True,
    precision: str = "fp32",
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Features [len(rows), out_dim] float32 of ``ids[rows]``, in the order of ``rows``.

    ``bucketing=False`` pads every batch to ``max_length`` (the naive pass, kept to measure against).
    ``precision`` only checks the value here: the caller passes :func:`pass_encoder`'s encoder.
    ``on_batch(n_reviews, n_tokens)`` is called after each batch (progress).
    """
    check_precision(precision)
    out = np.empty((len(rows), encoder.out_dim), dtype=np.float32)
    device = next(encoder.model.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            offset = 0
            for batch_rows in batches(rows, batch_size):
                batch = pad_batch(encoder, [ids[i] for i in batch_rows], to_max_length=not bucketing)
                mask = batch["attention_mask"]
                feats = encoder.encode(batch["input_ids"].to(device), mask.to(device))
                out[offset : offset + len(batch_rows)] = feats.float().cpu().numpy()
                offset += len(batch_rows)
                if on_batch is not None:
                    on_batch(len(batch_rows), int(mask.sum()))
    finally:
        encoder.train(was_training)
    return out


# ------------------------------------------------------------------------------------------------- max_length
AUTO = "auto"
DEFAULT_PERCENTILE = 99.0
LENGTH_SAMPLE = 2000  # reviews tokenised to estimate the percentile: ~1 s, stable to a few tokens at the 99th


def choose_max_length(
    encoder: HFEncoder,
    texts: Sequence[str],
    percentile: float = DEFAULT_PERCENTILE,
    sample: int = LENGTH_SAMPLE,
    seed: int = 0,
) -> tuple[int, str]:
    """``max_length="auto"``: the ``percentile``-th token length of (a fixed sample of) ``texts``, rounded up to a
    multiple of 8, capped by :func:`model_length_limit`. Returns the length and a one-line account of the choice.

    A sample, because this runs at every start of a transformer run (also when the features come from the cache)
    and tokenising ~30k long reviews costs ~15 s here; the sample is drawn with a fixed seed, so the same data
    always gives the same length (and the same feature cache key).
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"text.max_length_percentile must be in (0, 100], got {percentile}")
    limit, why = model_length_limit(encoder)
    if len(texts) == 0:
        return limit, f"max_length {limit} (no texts to measure; {why})"
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(texts), size=min(sample, len(texts)), replace=False)
    enc = encoder.tokenizer([texts[i] for i in np.sort(picked)], truncation=False, padding=False,
                            return_attention_mask=False, verbose=False)
    lengths = np.array([len(x) for x in enc["input_ids"]])
    wanted = int(math.ceil(np.percentile(lengths, percentile) / 8.0) * 8)
    chosen = max(8, min(wanted, limit))
    capped = f"; capped at {limit} by {why}" if wanted > limit else ""
    account = (
        f"max_length auto → {chosen}: the {percentile:g}th percentile of {len(lengths):,} training reviews' token "
        f"lengths is {np.percentile(lengths, percentile):.0f} (median {np.median(lengths):.0f}, longest "
        f"{lengths.max()}){capped}; {100 * (lengths > chosen).mean():.1f}% of reviews are cut"
    )
    return chosen, account


def fit_max_length(model: Any, texts: Sequence[str]) -> str | None:
    """Resolve ``max_length="auto"`` of ``model.text_backbone`` from ``texts`` (the training reviews) and record the
    length in the model's hyper-parameters, so a checkpoint rebuilds the encoder at the length it was trained with
    (evaluation and search then cut texts exactly as training did). Returns the one-line account, or None when
    the backbone has no automatic length."""
    backbone = model.text_backbone
    if not getattr(backbone, "max_length_auto", False):
        return None
    chosen, account = choose_max_length(backbone, texts, backbone.max_length_percentile)
    backbone.set_max_length(chosen)
    backbone.max_length_auto = False
    hparams = getattr(model, "hparams", None)
    if hparams is not None and isinstance(hparams.get("text"), dict):
        hparams["text"]["max_length"] = backbone.max_length
    return account
