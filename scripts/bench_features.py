#!/usr/bin/env python
"""Benchmark the frozen-encoder feature pass (``text=minilm`` / ``text=distilbert``) and print reviews/s.

    .venv/bin/python scripts/bench_features.py [--raw-dir DIR | --albums 300] [--reviews N] [--model minilm]
        [--max-length auto|N] [--batch-size 64] [--modes before,after] [--no-bucketing] [--bf16]

The reviews are those a training run featurises: the paired reviews of a prepared MARD-format dir (a synthetic
one is generated under ``--work`` when ``--raw-dir`` is not given), joined text fields as in training, optionally a
seeded sample of ``--reviews``. Every mode runs on the same reviews at the same ``max_length`` (``auto`` resolves
from the training split as a training run does, and the account is printed):

* ``before`` — the pass as it was (commit 7c077a0): reviews sorted by *character* length, each batch tokenised
  on its own and padded to its longest review, ``torch.inference_mode``, everything in memory until the end;
* ``naive`` (``--no-bucketing``) — the current pass without bucketing: input order, every batch padded to
  ``max_length`` (what a plain DataLoader-style loop does);
* ``after`` — the current pass (:func:`mte.models.feature_cache.cached_text_features`, into a temp cache): tokenised
  once, token-length buckets, chunks saved as it goes;
* ``bf16`` (``--bf16``) — the current pass with ``text.feature_precision=bf16``.

The machine is shared: each mode prints the load average before and after it, the wall time and the process CPU
time (reviews per CPU-second is the figure least moved by other jobs). Modes agree on the features: the largest
difference to ``after`` is printed. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5-min {five:.2f})"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def reviews_of(raw_dir: Path, cache_dir: Path, n: int | None, seed: int) -> tuple[list[str], list[str]]:
    """(texts to featurise, the training split's texts) exactly as a training run builds them."""
    import numpy as np

    from mte.data.prepare import prepare
    from mte.data.processed import ProcessedData
    from mte.models.contract import InputContract

    data = ProcessedData.load(prepare(raw_dir, cache_dir=cache_dir, verbose=True))
    contract = InputContract.from_processed(data)
    paired = np.flatnonzero(data.reviews.get_column("paired").to_numpy())
    texts = contract.review_texts(data.reviews[paired])
    train = contract.review_texts(data.reviews[data.split_review_indices("train")])
    if n is not None and n < len(texts):
        pick = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
        texts = [texts[i] for i in pick]
    return texts, train


def before_pass(encoder, texts: Sequence[str], batch_size: int):
    """The pass of commit 7c077a0 (mte/models/feature_cache.py ``_compute``), verbatim but for the progress bar."""
    import numpy as np
    import torch

    n = len(texts)
    out = np.empty((n, encoder.out_dim), dtype=np.float32)
    order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
    device = next(encoder.model.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                enc = encoder.tokenize([texts[i] for i in idx])
                feats = encoder.encode(enc["input_ids"].to(device), enc["attention_mask"].to(device))
                out[idx] = feats.float().cpu().numpy()
    finally:
        encoder.train(was_training)
    return out


def timed(label: str, fn: Callable[[], object], n: int) -> tuple[object, tuple[float, float]]:
    print(f"  {label:<8} start ({load()})", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"  {label:<8} {n:,} reviews in {wall:.1f} s wall / {cpu:.1f} s CPU → {n / wall:.1f} reviews/s "
          f"({n / cpu:.1f} per CPU-second) ({load()})", flush=True)
    return result, (n / wall, n / cpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw-dir", type=Path, help="a MARD-format raw dir (default: a synthetic one under --work)")
    parser.add_argument("--albums", type=int, default=300, help="synthetic albums when --raw-dir is not given")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mte-bench-features")
    parser.add_argument("--reviews", type=int, help="a seeded sample of this many paired reviews (default: all)")
    parser.add_argument("--model", default="minilm", help="text.pretrained: minilm (default) or a local model dir")
    parser.add_argument("--max-length", default="auto", help="auto (default) or a number of tokens")
    parser.add_argument("--percentile", type=float, default=99.0, help="for --max-length auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--modes", default="before,after", help="comma list of before, naive, after, bf16")
    parser.add_argument("--no-bucketing", action="store_true", help="also run the unbucketed pass (mode naive)")
    parser.add_argument("--bf16", action="store_true", help="also run the bf16 pass (mode bf16)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    modes += [m for m, on in (("naive", args.no_bucketing), ("bf16", args.bf16)) if on and m not in modes]
    unknown = set(modes) - {"before", "naive", "after", "bf16"}
    if unknown:
        parser.error(f"unknown mode(s) {sorted(unknown)}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import numpy as np
    import torch

    from mte.models.feature_cache import cached_text_features
    from mte.models.feature_pass import choose_max_length
    from mte.models.text import HFEncoder

    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    raw = args.raw_dir
    if raw is None:
        raw = args.work / f"synth-{args.albums}-seed{args.seed}"
        if not raw.exists():
            from mte.data.synth import generate

            generate(raw, albums=args.albums, seed=args.seed, tracks_per_album=1, quirks=True)
    texts, train = reviews_of(raw, args.work / "cache", args.reviews, args.seed)

    encoder = HFEncoder(args.model, freeze=True, pooling="mean",
                        max_length=args.max_length if args.max_length == "auto" else int(args.max_length))
    if encoder.max_length_auto:
        chosen, account = choose_max_length(encoder, train, args.percentile)
        encoder.set_max_length(chosen)
        print(f"{account} (text.max_length=auto, percentile {args.percentile:g})")
    else:
        print(f"max_length {encoder.max_length} (explicit)")
    lengths = np.array([len(x) for x in encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)[
        "input_ids"]])
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
          f"thread(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"model: {encoder.name_or_path} ({type(encoder.model).__name__}, hidden {encoder.out_dim}); "
          f"{len(texts):,} reviews, mean {lengths.mean():.1f} tokens after truncation, batch {args.batch_size}")
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))

    results: dict[str, np.ndarray] = {}
    rates: dict[str, tuple[float, float]] = {}
    for mode in modes:
        if mode == "before":
            def fn() -> object:
                return before_pass(encoder, texts, args.batch_size)
        else:
            def fn(mode: str = mode) -> object:
                with tempfile.TemporaryDirectory(dir=args.work) as cache:
                    feats = cached_text_features(
                        encoder, texts, Path(cache), f"bench-{mode}", batch_size=args.batch_size, progress=True,
                        bucketing=mode != "naive", precision="bf16" if mode == "bf16" else "fp32")
                    return feats.numpy().copy()
        feats, rate = timed(mode, fn, len(texts))
        results[mode], rates[mode] = np.asarray(feats), rate

    print("summary (reviews/s wall | per CPU-second; on a shared machine the second is the comparable one):")
    base = rates.get("before")
    for mode, (wall, cpu) in rates.items():
        speedup = f"  ({wall / base[0]:.2f}× | {cpu / base[1]:.2f}× before)" if base and mode != "before" else ""
        print(f"  {mode:<8} {wall:7.1f} | {cpu:6.1f}{speedup}")
    if "after" in results:
        for mode, feats in results.items():
            if mode != "after":
                diff = float(np.abs(feats - results["after"]).max())
                cos = float((np.sum(feats * results["after"], 1) / np.linalg.norm(feats, axis=1)
                             / np.linalg.norm(results["after"], axis=1)).min())
                print(f"  {mode} vs after: max |Δ| {diff:.2e}, min cosine {cos:.6f}")
    print(f"done ({load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
