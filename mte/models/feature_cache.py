"""Disk cache of frozen-encoder text features.

A frozen encoder maps each review to the same vector in every epoch, so running DistilBERT over ~85k reviews
200 times would waste hours of CPU; instead the features are computed once (the length-bucketed pass of
:mod:`mte.models.feature_pass`) and memory-mapped on later runs. That one pass still takes many minutes on a CPU, so
it prints its progress (reviews/s, ETA) and saves its work in chunks as it goes: an interrupted pass resumes where
it stopped, and ends with exactly the array an uninterrupted one would have written.

The cache key is content-addressed: it hashes the model's class, config and *weights*, the tokenizer, the
pooling, the effective max_length, the caller's ``data_key`` and the number of texts. Hashing the weights costs
~0.1 s per 100 MB but means a copied model dir still hits, and a fine-tuned or re-initialised model with the same
name never silently reuses stale features (mtimes would get both of these wrong).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mte.models.feature_pass import check_precision, encode_rows, length_order, pass_encoder, token_ids
from mte.models.progress import Progress
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


def cache_key(encoder: HFEncoder, data_key: str, n_texts: int, precision: str = "fp32") -> str:
    """Key of the cache file for these texts; ``data_key`` must identify the texts (e.g. a processed-dir
    fingerprint plus the text fields), since the final cache does not hash the texts themselves (the partial
    chunks of an interrupted pass do, see :func:`_plan`). fp32 keys are those of earlier versions (caches stay
    valid); another precision is part of the key."""
    fields: dict[str, Any] = {"format": CACHE_FORMAT, "encoder": encoder_fingerprint(encoder), "data": data_key,
                              "n": n_texts}
    if precision != "fp32":
        fields["precision"] = precision
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


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


# ------------------------------------------------------------------------------------------- partial passes
# An interrupted pass keeps its finished chunks in ``text-features-<key>.parts/``: the dir is named by the same key
# as the final cache (so another model, tokenizer, pooling, max_length, precision or data never shares it), and its
# plan.json also pins the texts' own digest, the chunking and the batching (so chunks are only ever combined with
# chunks of the very same pass). Each chunk is written atomically; the final file is assembled from them.
PLAN = "plan.json"
DEFAULT_CHUNK = 256  # reviews per chunk: what an interruption can lose (~10 s of MiniLM on 2 idle cores; ~0.4 MB)


def texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _plan(key: str, texts: Sequence[str], order: np.ndarray, chunk: int, batch_size: int, bucketing: bool) -> dict:
    return {
        "key": key,
        "format": CACHE_FORMAT,
        "n": len(texts),
        "texts": texts_digest(texts),
        "order": hashlib.blake2b(np.ascontiguousarray(order, dtype=np.int64).tobytes(), digest_size=16).hexdigest(),
        "chunk": chunk,
        "batch_size": batch_size,
        "bucketing": bucketing,
    }


def _chunk_path(parts: Path, index: int) -> Path:
    return parts / f"chunk-{index:05d}.npy"


def _open_parts(parts: Path, plan: dict, n_chunks: int, sizes: Sequence[int], dim: int) -> set[int]:
    """Chunks already computed for exactly this ``plan``; a dir of another plan is emptied first (never mixed)."""
    plan_file = parts / PLAN
    if parts.exists():
        try:
            same = json.loads(plan_file.read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            log.warning("text feature cache: discarding partial results in %s (made by another pass)", parts)
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not plan_file.exists():
        atomic_write(plan_file, lambda f: f.write(json.dumps(plan, indent=1, sort_keys=True).encode()))
    for stale in parts.glob(".*.tmp"):  # a write killed before its rename (SIGKILL skips the cleanup)
        stale.unlink(missing_ok=True)
    done = set()
    for index in range(n_chunks):
        path = _chunk_path(parts, index)
        if not path.exists():
            continue
        try:
            arr = np.load(path, mmap_mode="r")
            ok = arr.shape == (sizes[index], dim) and arr.dtype == np.float32
        except (OSError, ValueError):
            ok = False
        if ok:
            done.add(index)
        else:
            log.warning("text feature cache: chunk %s unreadable; recomputing it", path)
            path.unlink(missing_ok=True)
    return done


def _compute_chunked(
    encoder: HFEncoder,
    texts: Sequence[str],
    key: str,
    parts: Path,
    batch_size: int,
    chunk: int,
    bucketing: bool,
    precision: str,
    progress: bool,
) -> tuple[np.ndarray, dict[str, Any]]:
    """All features, chunk by chunk, each chunk saved as soon as it is done; resumes from saved chunks."""
    t0 = time.perf_counter()
    desc = f"text features ({Path(encoder.pretrained).name}, max_length {encoder.max_length})"
    if progress:
        print(f"{desc}: tokenising {len(texts):,} reviews", file=sys.stderr, flush=True)
    ids = token_ids(encoder, texts)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    tokenise_s = time.perf_counter() - t0
    order = length_order(lengths) if bucketing else np.arange(len(texts))
    chunk = max(batch_size, chunk // batch_size * batch_size)  # chunk borders on batch borders: same batches
    row_chunks = [order[i : i + chunk] for i in range(0, len(order), chunk)]
    dim = encoder.out_dim
    plan = _plan(key, texts, order, chunk, batch_size, bucketing)
    done = _open_parts(parts, plan, len(row_chunks), [len(r) for r in row_chunks], dim)
    work = pass_encoder(encoder, precision) if len(done) < len(row_chunks) else encoder

    meter = Progress(len(texts), total_work=float(lengths.sum()), desc=desc, unit="reviews", enabled=progress)
    for index in sorted(done):
        meter.skip(len(row_chunks[index]), float(lengths[row_chunks[index]].sum()))
    if done:
        log.info("text feature cache: resuming, %d of %d chunks already computed", len(done), len(row_chunks))
    try:
        for index, rows in enumerate(row_chunks):
            if index in done:
                continue
            feats = encode_rows(work, ids, rows, batch_size, bucketing=bucketing, precision=precision,
                                on_batch=lambda n, tokens: meter.update(n, tokens))
            atomic_write(_chunk_path(parts, index), lambda f, a=feats: np.save(f, a))
            done.add(index)
    except BaseException:  # Ctrl-C, a crash: say what is kept (the exception itself goes on unchanged)
        if progress:
            meter.close(f"{desc}: interrupted; {len(done)} of {len(row_chunks)} chunks are saved in {parts} — "
                        "the same command resumes from them")
        raise

    out = np.empty((len(texts), dim), dtype=np.float32)
    for index, rows in enumerate(row_chunks):
        out[rows] = np.load(_chunk_path(parts, index))
    computed = meter.done - meter.skipped
    rate = meter.rate()
    stats = {
        "reviews": len(texts),
        "computed": computed,
        "resumed": meter.skipped,
        "seconds": round(meter.elapsed, 2),
        "tokenise_seconds": round(tokenise_s, 2),
        "reviews_per_s": round(rate, 2),
        "max_length": encoder.max_length,
        "mean_tokens": round(float(lengths.mean()), 1) if len(lengths) else 0.0,
        "batch_size": batch_size,
        "bucketing": bucketing,
        "precision": precision,
        "threads": torch.get_num_threads(),
    }
    resumed = f"; {meter.skipped:,} resumed from an interrupted pass" if meter.skipped else ""
    summary = (f"{desc}: {computed:,} reviews in {meter.elapsed:.1f} s = {rate:.1f} reviews/s "
               f"(mean {stats['mean_tokens']:g} tokens, batch {batch_size}, {precision}{resumed})")
    meter.close(summary)
    log.info(summary)  # also in the run's log file (the progress line goes to stderr)
    return out, stats


def cached_text_features(
    encoder: HFEncoder,
    texts: Sequence[str],
    cache_dir: Path,
    data_key: str,
    batch_size: int = 64,
    progress: bool = True,
    *,
    chunk: int = DEFAULT_CHUNK,
    bucketing: bool = True,
    precision: str = "fp32",
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Features [N, out_dim] float32 of ``texts`` under a frozen ``encoder``, computed once and cached on disk.

    Row i belongs to texts[i]. The result is backed by a copy-on-write memory map of the cache file, so a hit
    costs milliseconds and no RAM until rows are read. A miss runs the pass of :mod:`mte.models.feature_pass`
    with a progress line (reviews/s, ETA) on stderr when ``progress``; it saves every ``chunk`` reviews, so an
    interrupted pass (Ctrl-C, a killed job) resumes where it stopped and ends with the same array.
    ``device`` runs the pass there (e.g. "cuda") and moves the encoder back afterwards.
    """
    check_precision(precision)
    if len(texts) == 0:  # numpy cannot memory-map an empty array; nothing worth caching anyway
        return torch.empty(0, encoder.out_dim)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(encoder, data_key, len(texts), precision)
    path = cache_dir / f"text-features-{key}.npy"
    if path.exists():
        arr = _load(path, len(texts), encoder.out_dim)
        if arr is not None:
            log.info("text feature cache hit: %s (%d × %d)", path, *arr.shape)
            return torch.from_numpy(arr)
    log.info("text feature cache miss: computing %d texts with %s → %s", len(texts), encoder.name_or_path, path)
    parts = path.with_suffix(".parts")
    home = next(encoder.model.parameters()).device
    if device is not None:
        encoder.to(device)
    try:
        feats, stats = _compute_chunked(encoder, texts, key, parts, batch_size, chunk, bucketing, precision, progress)
    except FileNotFoundError:
        # Another process (a parallel sweep job on the same data) finished the same pass and removed the partial
        # dir under us: its result is ours.
        arr = _load(path, len(texts), encoder.out_dim) if path.exists() else None
        if arr is None:
            raise
        log.info("text feature cache: another process finished the same pass first; using %s", path)
        return torch.from_numpy(arr)
    finally:
        if device is not None:
            encoder.to(home)
    atomic_write(path, lambda f: np.save(f, feats))
    meta = {
        "model": encoder.name_or_path,
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        "data_key": data_key,
        "shape": list(feats.shape),
        "format": CACHE_FORMAT,
        "precision": precision,
        "pass": stats,
    }
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=1).encode()))
    shutil.rmtree(parts, ignore_errors=True)  # only after the final file is in place
    arr = _load(path, len(texts), encoder.out_dim)
    return torch.from_numpy(arr if arr is not None else feats)
