"""Disk cache of frozen-encoder text features.

A frozen encoder maps each review to the same vector in every epoch, so running DistilBERT over ~85k reviews
200 times would waste hours of CPU; instead the features are computed once (batched, sorted by length so little
compute goes to padding) and memory-mapped on later runs.

The cache key is content-addressed: it hashes the model's class, config and *weights*, the tokenizer, the
pooling, the effective max_length, the caller's ``data_key`` and the number of texts. Hashing the weights costs
~0.1 s per 100 MB but means a copied model dir still hits, and a fine-tuned or re-initialised model with the same
name never silently reuses stale features (mtimes would get both of these wrong).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mte.models.text import HFEncoder
from mte.paths import atomic_write

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# Config fields that name or date the model rather than define it.
_CONFIG_NOISE = ("_name_or_path", "transformers_version", "name_or_path")


def _update_tensor(h: Any, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
    if t.numel():
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    """The full tokenizer definition (vocab, normaliser, special tokens) where the fast backend exposes it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return json.dumps(sorted(tokenizer.get_vocab().items()))
    spec = json.loads(backend.to_str())
    # Padding/truncation are per-call state the tokenizer remembers from its last call, not its definition.
    spec.pop("padding", None)
    spec.pop("truncation", None)
    return json.dumps(spec, sort_keys=True)


def encoder_fingerprint(encoder: HFEncoder) -> str:
    """Content hash of what determines the features: model class, config, weights, tokenizer, pooling, length."""
    h = hashlib.blake2b(digest_size=20)
    config = {k: v for k, v in encoder.model.config.to_dict().items() if k not in _CONFIG_NOISE}
    h.update(type(encoder.model).__name__.encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in encoder.model.state_dict().items():
        _update_tensor(h, name, tensor)
    h.update(_tokenizer_fingerprint(encoder.tokenizer).encode())
    h.update(f"|pooling={encoder.pooling}|max_length={encoder.max_length}".encode())
    return h.hexdigest()


def cache_key(encoder: HFEncoder, data_key: str, n_texts: int) -> str:
    """Key of the cache file for these texts; ``data_key`` must identify the texts (e.g. a processed-dir
    fingerprint plus the text fields), since the texts themselves are not hashed."""
    payload = json.dumps(
        {"format": CACHE_FORMAT, "encoder": encoder_fingerprint(encoder), "data": data_key, "n": n_texts},
        sort_keys=True,
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _compute(encoder: HFEncoder, texts: Sequence[str], batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    n = len(texts)
    out = np.empty((n, encoder.out_dim), dtype=np.float32)
    # Longest first: batches of similar length waste little on padding, and an out-of-memory batch fails at
    # once instead of at the end.
    order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
    device = next(encoder.model.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        desc = f"text features ({Path(encoder.name_or_path).name})"
        with torch.inference_mode(), tqdm(total=n, disable=not progress, desc=desc, unit="text") as bar:
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                enc = encoder.tokenize([texts[i] for i in idx])
                feats = encoder.encode(enc["input_ids"].to(device), enc["attention_mask"].to(device))
                out[idx] = feats.float().cpu().numpy()
                bar.update(len(idx))
    finally:
        encoder.train(was_training)
    return out


def _load(path: Path, n: int, dim: int) -> np.ndarray | None:
    """Memory-map a cache file; None (→ recompute) if it is unreadable or has the wrong shape."""
    try:
        # "c" = copy-on-write map: as fast as "r", but writable, so torch.from_numpy neither warns nor can
        # corrupt the file if a caller modifies the tensor in place.
        arr = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as err:
        log.warning("text feature cache %s unreadable (%s); recomputing", path, err)
        return None
    if arr.shape != (n, dim) or arr.dtype != np.float32:
        log.warning(
            "text feature cache %s has shape %s %s, expected (%d, %d); recomputing", path, arr.shape, arr.dtype, n, dim
        )
        return None
    return arr


def cached_text_features(
    encoder: HFEncoder,
    texts: Sequence[str],
    cache_dir: Path,
    data_key: str,
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """Features [N, out_dim] float32 of ``texts`` under a frozen ``encoder``, computed once and cached on disk.

    Row i belongs to texts[i]. The result is backed by a copy-on-write memory map of the cache file, so a hit
    costs milliseconds and no RAM until rows are read.
    """
    if len(texts) == 0:  # numpy cannot memory-map an empty array; nothing worth caching anyway
        return torch.empty(0, encoder.out_dim)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(encoder, data_key, len(texts))
    path = cache_dir / f"text-features-{key}.npy"
    if path.exists():
        arr = _load(path, len(texts), encoder.out_dim)
        if arr is not None:
            log.info("text feature cache hit: %s (%d × %d)", path, *arr.shape)
            return torch.from_numpy(arr)
    log.info("text feature cache miss: computing %d texts with %s → %s", len(texts), encoder.name_or_path, path)
    feats = _compute(encoder, texts, batch_size, progress)
    atomic_write(path, lambda f: np.save(f, feats))
    meta = {
        "model": encoder.name_or_path,
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        "data_key": data_key,
        "shape": list(feats.shape),
        "format": CACHE_FORMAT,
    }
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=1).encode()))
    arr = _load(path, len(texts), encoder.out_dim)
    return torch.from_numpy(arr if arr is not None else feats)
