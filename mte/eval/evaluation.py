"""Evaluate a checkpoint: embed a split (or another MARD dir) and score it under a protocol → ``metrics.json``.

``python -m mte.evaluate ckpt_path=…`` (see :mod:`mte.evaluate`) calls :func:`evaluate_from_config`; everything it
does lives here so tests, notebooks and benchmarks run exactly the same code. The protocols, the query rule, album
pooling and the metrics are the evaluation core in :mod:`mte.eval.protocols`; this module only turns a checkpoint
and a processed dir into an :class:`~mte.eval.protocols.EvalSet` and writes the results
(:mod:`mte.eval.results`, ``kind: "evaluation"``).

What is evaluated
-----------------
The *evaluation set* is either a split of the checkpoint's own processed dir (``split=test`` by default; with
``data.split=paper`` test and val are the same albums), or — with ``raw_dir`` — every paired album of another
MARD-format dir, prepared with the checkpoint's vocabulary, feature set, feature statistics and text fields
(:func:`mte.data.prepare.prepare` with ``reference=``; all its paired albums form its ``test`` split), so a model
can be tested on data it never saw. Review queries follow the one rule, :func:`mte.eval.protocols.query_mask`
(non-empty tokens for bag-of-words / LSTM, non-blank text for transformers). Audio is embedded per track
(descriptor vector standardised with the training statistics).

Same numbers as training
------------------------
The training callback scores its embeddings with the same function (:func:`~mte.eval.protocols.evaluate_embeddings`,
album protocol, bootstrap seed 0), and reviews and tracks are embedded here in training's evaluation order and
batches (1024 consecutive reviews, stored token ids, padded by :class:`mte.models.contract.TokenMatrix`), so
evaluating a checkpoint on its own test split reproduces its ``metrics.json`` test numbers exactly, intervals
included (a test checks it; frozen-HF text is recomputed rather than read from the training feature cache, so
there equal up to float rounding).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from mte.data.names import SPLITS
from mte.eval.protocols import (
    DIRECTION_TITLES,
    DIRECTIONS,
    PROTOCOLS,
    EvalSet,
    EvaluationError,
    evaluate_embeddings,
    query_mask,
)
from mte.eval.results import (
    COLUMNS,
    check_results_dir,
    print_summary,
    run_dir_of_checkpoint,
    write_results,
    write_text_atomic,
)

if TYPE_CHECKING:
    import polars as pl

    from mte.data.processed import ProcessedData
    from mte.models.inference import LoadedModel



# --------------------------------------------------------------------------------------------------------------
# from a checkpoint and a processed dir to an EvalSet
# --------------------------------------------------------------------------------------------------------------


def title_labels(albums: pl.DataFrame) -> Tensor:
    """Per album row, an integer class of its title (the ``seed`` protocol's relevance).

    Titles are matched literally (no case folding: the published code compared the strings as they were); an
    album without a title (null or blank) is its own class, keyed by its amazon-id.
    """
    titles = albums.get_column("title").to_list()
    ids = albums.get_column("amazon_id").to_list()
    keys = [t if t is not None and t.strip() else f"\0{aid}" for t, aid in zip(titles, ids, strict=True)]
    _, inverse = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    return torch.from_numpy(inverse.astype(np.int64).reshape(-1))


def album_rows(albums: pl.DataFrame, amazon_ids: pl.Series) -> np.ndarray:
    """Row numbers in ``albums`` (unique ``amazon_id``) of each id; the label every protocol groups by."""
    import polars as pl

    table = albums.select("amazon_id").with_row_index("row")
    joined = amazon_ids.rename("amazon_id").to_frame().join(table, on="amazon_id", how="left", maintain_order="left")
    rows = joined.get_column("row")
    if rows.null_count():
        raise EvaluationError("some reviews or tracks name an album missing from albums.parquet")
    return np.array(rows.cast(pl.Int64).to_numpy(), dtype=np.int64)  # a writable copy for torch.from_numpy



def embed_split(model: LoadedModel, data: ProcessedData, split: str, batch_size: int = 1024) -> EvalSet:
    """Embed the query reviews (:func:`~mte.eval.protocols.query_mask`) and the tracks of ``split`` of ``data``.

    ``data`` is the checkpoint's own processed dir or one prepared with its input contract (both verified against
    the contract when loaded); reviews are embedded as training-time evaluation embeds them
    (:meth:`~mte.models.inference.LoadedModel.embed_reviews`). Queries
    (:func:`~mte.eval.protocols.query_mask`) are chosen before embedding, so the batches are the training callback's.
    """
    if split not in SPLITS:
        raise EvaluationError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    review_idx, track_idx = data.split_review_indices(split), data.split_track_indices(split)
    if len(review_idx) == 0 or len(track_idx) == 0:
        raise EvaluationError(f"{data.root}: the {split!r} split has {len(review_idx)} paired reviews and "
                              f"{len(track_idx)} tracks; nothing to evaluate")
    import polars as pl

    reviews = data.reviews[review_idx]
    model.batch_size = batch_size
    if model.reads_tokens:
        keep = query_mask(token_lengths=reviews.get_column("tokens").list.len().fill_null(0).to_numpy())
    else:
        keep = query_mask(texts=model.contract.review_texts(reviews))
    if not keep.any():
        raise EvaluationError(f"{data.root}: no review of the {split!r} split has text the model can read")
    text = model.embed_reviews(reviews.filter(pl.Series(keep)))
    audio = model.embed_raw_features(data.raw_features()[track_idx])
    review_album = album_rows(data.albums, reviews.get_column("amazon_id").filter(keep))
    track_album = album_rows(data.albums, data.tracks.get_column("amazon_id").gather(track_idx))
    return EvalSet(
        text=text,
        review_album=torch.from_numpy(review_album),
        audio=audio,
        track_album=torch.from_numpy(track_album),
        album_title=title_labels(data.albums),
        review_idx=review_idx[keep],
        track_idx=track_idx,
    )



# --------------------------------------------------------------------------------------------------------------
# output: where, and the markdown table
# --------------------------------------------------------------------------------------------------------------


def data_tag(raw_dir: Path | str) -> str:
    """A short, file-name-safe tag for another raw dir: its name plus a hash of its absolute path."""
    path = Path(raw_dir).expanduser().absolute()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name).strip("._") or "data"
    return f"{name[:40]}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def default_out_dir(ckpt_path: Path | str, split: str, protocol: str, tag: str | None = None) -> Path:
    """``<run>/eval/<split>-<protocol>[-<tag>]`` for ``<run>/checkpoints/x.ckpt`` (else beside the checkpoint), so
    evaluations of one run under different splits, protocols or data never overwrite each other."""
    return run_dir_of_checkpoint(ckpt_path) / "eval" / "-".join(p for p in (split, protocol, tag) if p)


def _cell(metrics: Mapping[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "—"
    low, high = metrics.get(f"{key}_lo"), metrics.get(f"{key}_hi")
    return f"{value:.2f}" if low is None or high is None else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def markdown_table(metrics: Mapping[str, float], stage: str, protocol: str, header: Mapping[str, Any]) -> str:
    """The results as a markdown document: what was evaluated, then one row per direction."""
    lines = [f"# Evaluation — {protocol} protocol, {stage}", ""]
    lines += [f"- {name}: {value}" for name, value in header.items() if value is not None]
    lines += ["- R@K and mAP@10 in %; MedR/MeanR in ranks; ties pessimistic; [95% bootstrap interval, resampling "
              "albums: all reviews of an album together]", ""]
    lines.append("| direction | queries | gallery | " + " | ".join(COLUMNS) + " |")
    lines.append("|---|---:|---:|" + "---:|" * len(COLUMNS))
    for direction in DIRECTIONS:
        prefix = f"{stage}/{direction}"
        if f"{prefix}/n_queries" not in metrics:
            continue
        queries = f"{int(metrics[f'{prefix}/n_queries']):,}"
        excluded = int(metrics.get(f"{prefix}/n_excluded", 0))
        if excluded:
            queries += f" (+{excluded:,} without a relevant item)"
        cells = [_cell(metrics, f"{prefix}/{c}") for c in COLUMNS]
        title = f"{direction} ({DIRECTION_TITLES.get(protocol, {}).get(direction, direction)})"
        lines.append(f"| {title} | {queries} | {int(metrics[f'{prefix}/n_gallery']):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# the whole thing
# --------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Metrics (flat, named ``{stage}/{direction}/{metric}``), the JSON payload, where it went, the printed table."""

    metrics: dict[str, float]
    payload: dict[str, Any]
    out_dir: Path
    table: str
    timings: dict[str, float] = field(default_factory=dict)


def evaluate(
    ckpt_path: str | Path,
    *,
    split: str = "test",
    protocol: str = "album",
    bootstrap: int = 1000,
    raw_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    processed_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    device: str = "cpu",
    batch_size: int = 1024,
    seed: int = 0,
    write: bool = True,
) -> EvaluationResult:
    """Evaluate ``ckpt_path`` under ``protocol`` and write ``metrics.json`` / ``metrics.md`` (see module docstring).

    ``raw_dir``: evaluate on every paired album of that MARD dir instead of the checkpoint's own split (prepared,
    and cached under ``cache_dir``, with the checkpoint's vocabulary and statistics; ``split`` must be ``test``).
    ``processed_dir`` overrides the processed dir recorded in the checkpoint (e.g. after moving the cache).
    ``out_dir`` defaults to :func:`default_out_dir`. Raises :class:`~mte.cli.UserError` subclasses (one line) for
    anything the user can fix.
    """
    from mte.models.inference import load_checkpoint

    if protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if split not in SPLITS:
        raise EvaluationError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if bootstrap < 0 or batch_size < 1:
        raise EvaluationError(f"need bootstrap >= 0 and batch_size >= 1, got {bootstrap} and {batch_size}")
    if raw_dir is not None and split != "test":
        raise EvaluationError(f"data.raw_dir={raw_dir}: every paired album of another dir is in its test split; "
                              f"use split=test (got {split!r})")
    if out_dir and write:  # before anything slow; the default dir (beside the checkpoint) is checked once known
        check_results_dir(Path(out_dir).expanduser(), "evaluation")
    t0, c0 = time.perf_counter(), time.process_time()
    model = load_checkpoint(ckpt_path, processed_dir=processed_dir, device=device)
    left_out: dict[str, Any] | None = None
    if raw_dir is not None:  # prepared with the checkpoint's contract: the checkpoint file alone is enough
        data, tag = model.prepare_raw_dir(raw_dir, cache_dir, workers), data_tag(raw_dir)
        data, left_out = leave_out_seen_albums(model.contract, data, raw_dir)
    else:  # the processed dir it was trained on, verified against its contract
        data, tag = model.data, None
    t1, c1 = time.perf_counter(), time.process_time()
    eval_set = embed_split(model, data, split, batch_size)
    t2, c2 = time.perf_counter(), time.process_time()
    metrics = evaluate_embeddings(eval_set, protocol, split, bootstrap, seed)
    t3, c3 = time.perf_counter(), time.process_time()
    # wall and CPU seconds per stage (CPU time, summed over threads, is the figure that survives a busy machine)
    timings = {"load_s": t1 - t0, "embed_s": t2 - t1, "metrics_s": t3 - t2,
               "load_cpu_s": c1 - c0, "embed_cpu_s": c2 - c1, "metrics_cpu_s": c3 - c2}
    target = Path(out_dir).expanduser() if out_dir else default_out_dir(model.checkpoint, split, protocol, tag)
    header = {
        "checkpoint": f"`{model.checkpoint}`",
        "data": f"`{data.root}`" + (f" (all paired albums of `{raw_dir}`{_left_out_words(left_out)})"
                                     if raw_dir is not None else ""),
        "bootstrap": f"{bootstrap} resamples, seed {seed}" if bootstrap else "off",
    }
    table = markdown_table(metrics, split, protocol, header)
    fields = {
        "protocol": protocol,
        "split": split,
        "checkpoint": str(model.checkpoint),
        "processed_dir": str(data.root),
        "raw_dir": str(raw_dir) if raw_dir is not None else None,
        "reference": data.manifest.get("reference"),
        "seen_albums_left_out": left_out,
        "bootstrap": bootstrap,
        "seed": seed,
        "text_queries": "non-empty tokens" if model.reads_tokens else "non-blank text",
        "elapsed_s": {k: round(v, 3) for k, v in timings.items()},
    }
    payload = {**fields, "kind": "evaluation", "metrics": metrics}
    if write:
        check_results_dir(target, "evaluation")
        write_results(target / "metrics.json", "evaluation", metrics, **fields)
        write_text_atomic(target / "metrics.md", table)
    return EvaluationResult(metrics, payload, target, table, timings)


def leave_out_seen_albums(contract: Any, data: ProcessedData, raw_dir: str | Path) -> tuple[ProcessedData, dict]:
    """``data`` (another dir, every paired album in ``test``) without the albums the checkpoint was trained or
    selected on, and what was left out: a test on "data it never saw" that holds training albums — the training
    dir itself, a copy of it, or a superset of it — measures memory, not transfer.

    The checkpoint records its train and val album ids (``source.seen_albums``); one from before that is matched by
    the raw dir's input fingerprint (same files, sizes and times: the training dir itself), else nothing is known.
    When every album was seen, the one-line error names the way to test the checkpoint on its own test split.
    """
    test = data.split_albums("test")
    recorded = contract.source.get("seen_albums")
    if isinstance(recorded, list):
        seen, how = set(recorded).intersection(test), "the checkpoint's train and val albums"
    elif contract.source.get("fingerprint") and contract.source.get("fingerprint") == data.manifest.get("fingerprint"):
        seen, how = set(test), "the same raw files as the checkpoint's training data"
    else:
        return data, {"albums": None, "of": len(test), "how": "unknown: the checkpoint records no album ids"}
    if test and len(seen) == len(test):
        raise EvaluationError(f"data.raw_dir={raw_dir}: all {len(test)} paired albums of it are {how}, so this "
                              f"would not test unseen data; to score the checkpoint on its own held-out albums, "
                              f"leave data.raw_dir out (split=test)")
    kept = [album for album in test if album not in seen]
    return replace(data, splits={**data.splits, "test": kept}), {"albums": len(seen), "of": len(test), "how": how}


def _left_out_words(left_out: dict[str, Any] | None) -> str:
    if not left_out or not left_out.get("albums"):
        return ""
    return f", without {left_out['albums']} of its {left_out['of']} albums ({left_out['how']})"


def evaluate_from_config(cfg: Any) -> EvaluationResult:
    """The Hydra entry point's body: ``conf/evaluate.yaml`` keys → :func:`evaluate`, then print the table."""
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise EvaluationError("ckpt_path is not set: python -m mte.evaluate ckpt_path=<run>/checkpoints/best.ckpt")
    data = cfg.get("data") or {}
    result = evaluate(
        str(cfg.ckpt_path),
        split=str(cfg.get("split", "test")),
        protocol=str(cfg.get("protocol", "album")),
        bootstrap=_integer(cfg, "bootstrap", 1000),
        raw_dir=data.get("raw_dir") or None,
        out_dir=cfg.get("out_dir") or None,
        processed_dir=cfg.get("processed_dir") or None,
        cache_dir=data.get("cache_dir") or None,
        workers=_integer(data, "workers", 0, "data.workers"),
        device=str(cfg.get("device", "cpu")),
        batch_size=_integer(cfg, "batch_size", 1024),
        seed=_integer(cfg, "seed", 0),
    )
    print_evaluation(result)
    return result


def _integer(group: Any, key: str, default: int, name: str | None = None) -> int:
    """``group[key]`` as an int (absent or null: ``default``); a value that is no integer is one-line error."""
    value = group.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise EvaluationError(f"{name or key}={value!r}: must be an integer")
    return value


def print_evaluation(result: EvaluationResult) -> None:
    """The shared summary table (:func:`mte.eval.results.print_summary`) for one evaluation, then its files."""
    payload = result.payload
    protocol, split = payload["protocol"], payload["split"]
    titles = DIRECTION_TITLES.get(protocol, {})
    data = payload["raw_dir"] or payload["processed_dir"]
    directions = ", ".join(f"{d} = {titles.get(d, d)}" for d in DIRECTIONS)
    print_summary(
        result.metrics,
        title=f"retrieval ({protocol} protocol, {split}; R@K and mAP in %)",
        footer=[directions, f"checkpoint: {payload['checkpoint']}",
                f"data: {data}{_left_out_words(payload.get('seen_albums_left_out'))}",
                f"wrote {result.out_dir / 'metrics.json'} and metrics.md"],
    )
