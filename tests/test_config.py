"""Hydra composition: every option of every group composes, and the settings the README promises are there."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["data", "text", "audio", "model", "loss", "sampler", "trainer", "logger", "callbacks", "debug", "experiment"]


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def _options(group: str) -> list[str]:
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(group, option):
    cfg = _compose(f"{group}={option}")
    assert cfg.seed == 0 and "trainer" in cfg


def test_defaults_are_the_best_recipe():
    """Plain `python -m mte.train` runs experiment=best (tests/test_experiments.py checks its settings)."""
    cfg = _compose()
    assert list(cfg.tags) == ["best"] and cfg.optimized_metric == "val_best/t2a/R@10"
    assert cfg.text.name == "bow" and cfg.audio.name == "mlp" and cfg.loss.name == "margin"
    assert (cfg.data.features, cfg.data.standardize) == ("lowlevel_all", True)
    assert cfg.model.scheduler.name == "cosine" and cfg.audio.dropout > 0 and cfg.model.text_dropout > 0


def test_paper_config_is_the_published_model():
    """The published model's settings now live in experiment=paper/<row> (all rows share these)."""
    cfg = _compose("experiment=paper/nonlinear_bidirectional")
    assert cfg.text.name == "bow" and cfg.audio.name == "mlp" and cfg.sampler.name == "random"
    assert (cfg.model.embed_dim, cfg.model.hidden_dim) == (128, 256)
    loss = cfg.loss
    assert (loss.name, loss.margin, loss.negatives, loss.bidirectional, loss.distance) == (
        "margin",
        0.05,
        10,
        True,
        "euclidean",
    )
    assert cfg.model.optimizer.lr == pytest.approx(1e-3) and cfg.data.batch_size == 128
    assert (cfg.data.features, cfg.data.standardize) == ("seed169", False)


def test_readme_command_overrides():
    cfg = _compose("text=distilbert", "loss.bidirectional=false")
    assert cfg.text.name == "hf" and cfg.text.pretrained == "distilbert-base-uncased" and cfg.text.freeze
    assert cfg.loss.bidirectional is False
    assert _compose("text=minilm").text.pretrained == "minilm"


def test_experiment_neighborhood_switches_sampler_and_loss_terms():
    cfg = _compose("experiment=neighborhood")
    assert cfg.sampler.name == "neighborhood" and cfg.loss.neighborhood and list(cfg.loss.weights) == [1, 1, 1, 1]


def test_logger_many_and_lists():
    assert set(_compose("logger=many").logger) == {"wandb", "tensorboard", "csv"}
    assert set(_compose("logger=[tensorboard,csv]").logger) == {"tensorboard", "csv"}
    assert not _compose("logger=none").get("logger")


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_launcher_plugins_compose(launcher):
    cfg = _compose(f"hydra/launcher={launcher}", hydra=True)
    assert "launcher" in cfg.hydra.launcher._target_.lower()


def test_optuna_search_space():
    cfg = _compose("hparams_search=optuna", hydra=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert set(params) == {"loss.margin", "model.embed_dim", "model.optimizer.lr"}
    assert cfg.hydra.sweeper.direction == "maximize"
