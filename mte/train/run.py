"""One training run from a composed config: prepare (cached) → data module → model → fit → test → metrics.json.

``mte/train.py`` is only the Hydra entry point; everything it does lives here so that tests, notebooks and other
entry points can run the same thing with a config they built themselves.

Which checkpoint is tested (``selection`` in ``metrics.json``): the best epoch by ``val/t2a/R@10``, unless some
test album is also a validation album (``data.split=paper``: test == val) — then the last epoch, so the reported
set never chooses the model (:func:`mte.train.callbacks.apply_selection`).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf


def quiet_known_warnings() -> None:
    """Silence warnings that are expected in every run and say nothing about the user's experiment."""
    # Lightning 2.6 on torch ≥ 2.9 warns about torch.utils._pytree.LeafSpec on every run.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    # Batches are assembled vectorised in the main process; extra loader workers would only add IPC.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*hp_metric.*")


def build_datamodule(cfg: DictConfig, model: Any, data: Any):
    """The data module, fed with what the model's text backbone reads (tokens, HF inputs or cached features),
    through the model's input contract (its text fields and descriptor scaling)."""
    from mte.models.contract import InputContract
    from mte.train.datamodule import MardDataModule

    contract = getattr(model, "input_contract", None) or InputContract.from_processed(
        data, standardize=bool(cfg.data.get("standardize", True)))
    backbone = model.text_backbone
    kind = backbone.input_kind
    options: dict[str, Any] = {}
    if kind == "hf":
        options["tokenize"] = backbone.text_tokenizer  # picklable: loader workers get no model copy
    elif kind == "features":
        options["text_features"], options["feature_reviews"] = frozen_text_features(cfg, model, data)
    return MardDataModule(
        data,
        batch_size=cfg.data.batch_size,
        sampler=cfg.sampler.name,
        num_workers=cfg.data.num_workers,
        text_input=kind,
        seed=cfg.seed,
        contract=contract,
        **options,
    )


def frozen_text_features(cfg: DictConfig, model: Any, data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Features of every paired review from the frozen encoder: computed once, then read from the disk cache."""
    from mte.models.feature_cache import cached_text_features

    contract = model.input_contract
    paired = np.flatnonzero(data.reviews.get_column("paired").to_numpy())
    texts = contract.review_texts(data.reviews[paired])
    # keyed by the raw data's fingerprint and how reviews become text: a re-prepare in place cannot reuse stale rows
    key = f"{data.manifest['fingerprint']}|{contract.text_fields}|{len(paired)}"
    data_key = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache_dir = Path(cfg.data.cache_dir) / "text_features"
    batch_size = cfg.text.get("feature_batch_size", 64)
    features = cached_text_features(model.text_backbone, texts, cache_dir, data_key, batch_size=batch_size,
                                    precision=str(cfg.text.get("feature_precision", "fp32")),
                                    device=feature_device(cfg))
    return np.asarray(features, dtype=np.float32), paired


def feature_device(cfg: DictConfig) -> str | None:
    """Where the one-off feature pass runs: the GPU when the trainer will use one (the model is still on the CPU
    when the data module is built), else where the encoder is."""
    accelerator = str(cfg.get("trainer", {}).get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return None


def build_model(cfg: DictConfig, data: Any):
    """The network for ``cfg`` on ``data``, carrying the input contract of ``data`` (saved in its checkpoints)."""
    from mte.models.contract import InputContract
    from mte.models.module import EmbeddingModel

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg["processed_dir"] = str(data.root.resolve())  # for people reading hparams; the contract is what counts
    model = EmbeddingModel(
        text=cfg.text,
        audio=cfg.audio,
        model=cfg.model,
        loss=cfg.loss,
        vocab_size=data.vocabulary().size,
        audio_dim=len(data.feature_names),
        data=data_cfg,
    )
    hf = getattr(model.text_backbone, "pretrained", None)
    model.input_contract = InputContract.from_processed(data, standardize=bool(cfg.data.get("standardize", True)),
                                                        hf_tokenizer=str(hf) if hf is not None else None)
    fit_text_statistics(model.text_backbone, data)
    fit_text_length(model, data)
    return model


def fit_text_length(model: Any, data: Any) -> None:
    """``text.max_length=auto``: the transformer's truncation length from the training reviews' token lengths (the
    train split only, like the IDF weights), printed, and kept in the checkpoint's hyper-parameters."""
    if not getattr(model.text_backbone, "max_length_auto", False):
        return
    from mte.models.feature_pass import fit_max_length

    texts = model.input_contract.review_texts(data.reviews[data.split_review_indices("train")])
    print(f"text: {fit_max_length(model, texts)}", flush=True)


def fit_text_statistics(backbone: Any, data: Any) -> None:
    """What a text backbone learns from the training reviews before training (the IDF weights of text=tfidf):
    from the train split only, so held-out reviews never shape the model; saved with it as a buffer."""
    from mte.models.text import document_frequencies

    if getattr(backbone, "weighting", "none") != "idf":
        return
    rows = data.split_review_indices("train")
    tokens = data.reviews.get_column("tokens").gather(rows).to_list()
    vocab_size = backbone.embedding.num_embeddings
    backbone.set_document_frequencies(document_frequencies(tokens, vocab_size), len(tokens))


def build_callbacks(cfg: DictConfig | None) -> list[Any]:
    from hydra.utils import instantiate

    return [instantiate(spec) for spec in (cfg or {}).values() if spec is not None]


def _find(callbacks: list[Any], type_name: str) -> Any:
    return next((c for c in callbacks if type(c).__name__ == type_name), None)


def test_touches_val(data: Any) -> bool:
    """Whether some test album is also a validation album (``data.split=paper``): then selecting on validation
    would select on the reported set."""
    return bool(set(data.split_albums("test")) & set(data.split_albums("val")))


def run(cfg: DictConfig) -> dict[str, float]:
    """Train (and test) one configuration; returns the flat metrics also written to ``<run dir>/metrics.json``."""
    from mte.cli import imports_outside_gc
    from mte.train.checks import check_accelerator, check_train_config
    from mte.train.loggers import warm_up_wandb
    from mte.train.threads import apply_threads, denormals_flushed, resolve_threads

    check_train_config(cfg)  # one-line errors before anything slow (mte/train/checks.py)
    with imports_outside_gc():
        warm_up_wandb(cfg.get("logger"))  # the W&B SDK before torch (see there); its service starts meanwhile
        import torch  # noqa: F401
    check_accelerator(cfg.get("trainer") or {})
    apply_threads(resolve_threads(cfg.get("runtime")))  # before torch starts any parallel work
    with denormals_flushed():  # also before the worker threads start: they inherit the mode
        return _train_and_test(cfg)


def _train_and_test(cfg: DictConfig) -> dict[str, float]:
    """:func:`run` once the config is checked and the CPU is set up."""
    from mte.cli import imports_outside_gc

    quiet_known_warnings()
    with imports_outside_gc():
        import pytorch_lightning as pl
        from hydra.utils import instantiate

        from mte.data.prepare import prepare_from_config
        from mte.data.processed import ProcessedData
        from mte.eval.results import print_summary, write_results
        from mte.train.baselines import BASELINES, run_baseline
        from mte.train.callbacks import apply_selection
        from mte.train.checks import check_splits, splits_used
        from mte.train.loggers import build_loggers, finish_loggers, keep_csv_history

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data = ProcessedData.load(prepare_from_config(cfg.data))
    check_splits(data, splits_used(cfg))
    if cfg.model.get("name") in BASELINES:  # closed-form baselines (model=random|cca): no network, no trainer
        return run_baseline(cfg, data)
    model = build_model(cfg, data)
    datamodule = build_datamodule(cfg, model, data)
    callbacks = build_callbacks(cfg.get("callbacks"))
    selection = apply_selection(callbacks, test_touches_val(data))
    if not cfg.get("train", True):
        selection = "the given ckpt_path (no training)"
    loggers = build_loggers(cfg.get("logger"))
    if cfg.get("ckpt_path") and cfg.get("train", True):
        keep_csv_history(loggers)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    run_dir = Path(cfg.paths.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(resolved)
    try:
        if cfg.get("train", True):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        retrieval = _find(callbacks, "RetrievalMetrics")
        checkpoint = _find(callbacks, "ModelCheckpoint")
        best_path = checkpoint.best_model_path if checkpoint is not None else ""
        # the run's selection, taken now: trainer.test(ckpt_path=…) restores the callback's state from that file
        val_best = dict(retrieval.best) if retrieval is not None else {}
        selected_epoch = retrieval.best_epoch if retrieval is not None else None
        if cfg.get("test", True) and not trainer.fast_dev_run:
            trainer.test(model, datamodule=datamodule, ckpt_path=best_path or cfg.get("ckpt_path"), verbose=False)
        metrics: dict[str, float] = {}
        if retrieval is not None:
            for stage_metrics in retrieval.last.values():
                metrics.update(stage_metrics)
            metrics.update(val_best)
    finally:
        finish_loggers(loggers)
    if trainer.is_global_zero:
        write_results(
            run_dir / "metrics.json",
            "run",
            metrics,
            best_checkpoint=best_path,
            last_checkpoint=str(Path(checkpoint.dirpath) / "last.ckpt") if checkpoint else "",
            epochs=trainer.current_epoch,
            processed_dir=str(data.root),
            tags=list(cfg.get("tags") or []),
            selection=selection,
            selected_epoch=selected_epoch,
        )
        epoch = f" (epoch {selected_epoch}; val_best/* are its metrics)" if selected_epoch is not None else ""
        tested = cfg.get("test", True) and not trainer.fast_dev_run
        skipped = "a fast dev run" if trainer.fast_dev_run else "test=false"
        print_summary({k: v for k, v in metrics.items() if not k.startswith("val/")}, footer=[
            f"tested checkpoint: {selection}{epoch}" if tested
            else f"no test ({skipped}); selected: {selection}{epoch}",
            f"run dir: {run_dir}  (metrics.json, checkpoints/, .hydra/config.yaml, logger files)",
        ])
    return metrics
