"""Training values are logged only on the steps Lightning writes (and the epoch's last): the loggers receive the
very same rows as when every step logged, and the callbacks see the same values at the end."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")

from pathlib import Path

import pytest


def _fit(processed_dir: Path, out: Path, always: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from mte.models.module import EmbeddingModel
    from mte.train.datamodule import MardDataModule

    if always:
        monkeypatch.setattr(EmbeddingModel, "_logs_this_step", lambda self: True)
    pl.seed_everything(0, verbose=False)
    dm = MardDataModule(processed_dir, batch_size=16, sampler="random", seed=0)
    model = EmbeddingModel(text={"name": "bow", "sparse": True}, audio={"name": "mlp"}, model={},
                           loss={"name": "margin", "negatives": 3}, vocab_size=dm.data.vocabulary().size,
                           audio_dim=len(dm.data.feature_names))
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=3, logger=CSVLogger(out, name="csv", version=""),
                         limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1)
    trainer.fit(model, datamodule=dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return (out / "csv" / "metrics.csv").read_text(), metrics


@pytest.mark.slow
def test_logged_rows_equal_logging_every_step(processed_dir, tmp_path, monkeypatch):
    every_csv, every_metrics = _fit(processed_dir, tmp_path / "every", True, monkeypatch)
    monkeypatch.undo()
    ours_csv, ours_metrics = _fit(processed_dir, tmp_path / "ours", False, monkeypatch)
    assert "train/loss" in every_csv.splitlines()[0] and len(every_csv.splitlines()) > 2
    assert ours_csv == every_csv
    assert ours_metrics == every_metrics and "train/loss" in ours_metrics
